"""Cross-match of targets with the Marshall (migration 0013, vo_archive.marshall)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import Archive, create_database
from tests.unit.test_marshall_names import NAME_KEYS
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.marshall.match import match_all

ROOT = Path(__file__).resolve().parents[2]
MARSHALL_SQL = (ROOT / "schema" / "marshall" / "001_marshall.sql").read_text()


@pytest.fixture
def archive(make_archive: Callable[..., Archive]) -> Archive:
    """An empty archive with the Marshall's schema in its own database."""
    a = make_archive()
    conn = psycopg2.connect(a.settings.dsn)
    with conn, conn.cursor() as cur:
        cur.execute(MARSHALL_SQL.replace("%", "%%"))
    conn.close()
    return a


@pytest.fixture
def db(archive: Archive) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the archive."""
    conn = psycopg2.connect(archive.settings.dsn)
    yield conn
    conn.close()


def run(conn: psycopg2.extensions.connection, sql: str, params: tuple = ()) -> list:
    """Execute and commit; return the rows, if any."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
    conn.commit()
    return rows


def target(conn: psycopg2.extensions.connection, name: str, ra: float | None,
           dec: float | None, *aliases: str) -> int:
    """Insert an archive target (and aliases); return its id."""
    tid = run(conn, "INSERT INTO archive.target (name, ra, dec) VALUES (%s,%s,%s) "
                    "RETURNING target_id", (name, ra, dec))[0][0]
    for alias in aliases:
        run(conn, "INSERT INTO archive.target_alias VALUES (%s, %s)", (alias, tid))
    return int(tid)


def transient(conn: psycopg2.extensions.connection, name: str, ra: float,
              dec: float) -> int:
    """Insert a Marshall transient; return its id."""
    return int(run(conn, "INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                         "VALUES (%s,%s,%s) RETURNING transient_id",
                   (name, ra, dec))[0][0])


def marshall_id(conn: psycopg2.extensions.connection, tid: int) -> int | None:
    """The target's marshall_id."""
    return run(conn, "SELECT marshall_id FROM archive.target WHERE target_id = %s",
               (tid,))[0][0]


def test_database_keys_names_as_python_does(db: psycopg2.extensions.connection) -> None:
    names = [n for n, _ in NAME_KEYS]
    got = run(db, "SELECT archive.marshall_name_key(n) FROM unnest(%s::text[]) "
                  "WITH ORDINALITY AS u(n, i) ORDER BY i", (names,))
    assert [g[0] for g in got] == [k for _, k in NAME_KEYS]


ARCSEC = 1 / 3600


def test_match_by_name_alias_and_position(db: psycopg2.extensions.connection) -> None:
    by_name = target(db, "SN2018abc", 150.0, 20.0)
    by_alias = target(db, "PESSTO-17", 10.0, -30.0, "psnj08364391+1631497")
    by_pos = target(db, "host of a transient", 200.0, 45.0)
    far_name = target(db, "ATLAS18xyz", 300.0, 0.0)     # pointing 1' off: still by name
    nothing = target(db, "NGC 1234", 50.0, 50.0)
    no_pos = target(db, "AT 2019zzz", None, None)
    a = transient(db, "SN 2018abc", 150.0 + 0.5 * ARCSEC, 20.0)
    b = transient(db, "PSN J08364391+1631497", 129.18, 16.53)
    c = transient(db, "ZTF19aaaaaaa", 200.0, 45.0 + 2 * ARCSEC)
    d = transient(db, "ATLAS 18xyz", 300.0, 1 / 60)
    e = transient(db, "2019zzz", 0.0, 0.0)
    transient(db, "ZTF19bbbbbbb", 200.0, 45.0 + 4 * ARCSEC)   # beyond 3″
    report = match_all(db)
    assert (report.matched, report.ambiguous, report.unmatched) == (5, 0, 1)
    assert report.transients == 6
    assert [marshall_id(db, t) for t in (by_name, by_alias, by_pos, far_name, nothing,
                                         no_pos)] == [a, b, c, d, None, e]
    methods = dict(run(db, "SELECT target_id, method FROM archive.marshall_match"))
    assert methods[by_name] == "name+position" and methods[by_pos] == "position"
    assert methods[far_name] == "name" and methods[by_alias] == "name"
    sep = run(db, "SELECT separation_arcsec FROM archive.marshall_match "
                  "WHERE target_id = %s", (by_pos,))[0][0]
    assert sep == pytest.approx(2.0, abs=1e-6)


@pytest.mark.parametrize(("t_pos", "m_pos", "match"), [
    ((0.0, 90.0), (123.0, 90.0 - 2 * ARCSEC), True),         # north pole
    ((271.0, -90.0), (12.0, -90.0 + 2.5 * ARCSEC), True),    # south pole
    ((10.0, 89.9995), (190.0, 89.9995), False),              # across the pole: 3.6″
    ((359.9997, 0.0), (0.0003, 0.0), True),                  # RA 0/360: 2.16″
    ((0.0001, -45.0), (359.9999, -45.0), True),
    ((359.999, 0.0), (0.001, 0.0), False),                   # 7.2″
])
def test_position_at_poles_and_across_ra_zero(
        db: psycopg2.extensions.connection, t_pos: tuple[float, float],
        m_pos: tuple[float, float], match: bool) -> None:
    tid = target(db, "some field", *t_pos)
    mid = transient(db, "ZTF20abcdefg", *m_pos)
    match_all(db)
    assert marshall_id(db, tid) == (mid if match else None)


def test_ambiguous_cases_are_listed_not_guessed(
        db: psycopg2.extensions.connection) -> None:
    two_in_radius = target(db, "field A", 30.0, 10.0)
    p = transient(db, "ZTF18aaaaaaa", 30.0, 10.0 + ARCSEC)
    q = transient(db, "ZTF18bbbbbbb", 30.0, 10.0 - ARCSEC)
    disagree = target(db, "SN 2017xyz", 60.0, -20.0)
    named = transient(db, "AT2017xyz", 240.0, 20.0)
    here = transient(db, "Gaia17aaa", 60.0, -20.0 + ARCSEC)
    # two targets for one transient
    t1 = target(db, "PS1-14abc", 90.0, 5.0)
    t2 = target(db, "PS1 field", 90.0, 5.0 + ARCSEC)
    shared = transient(db, "PS1 14abc", 90.0, 5.0)
    report = match_all(db)
    assert (report.matched, report.ambiguous, report.unmatched) == (0, 4, 0)
    cases = {c.target_id: c for c in report.cases}
    assert cases[two_in_radius].reason == "2 transients within the radius"
    assert {i for i, _ in cases[two_in_radius].candidates} == {p, q}
    assert cases[disagree].reason == "name and position disagree"
    assert dict(cases[disagree].candidates) == {named: "AT2017xyz", here: "Gaia17aaa"}
    assert cases[t1].reason == f"transient {shared} also matches target(s) {t2}"
    assert cases[t2].reason == f"transient {shared} also matches target(s) {t1}"
    assert all(marshall_id(db, t) is None for t in (two_in_radius, disagree, t1, t2))
    # the Marshall resolves one case: the second transient goes
    run(db, "DELETE FROM marshall.transients WHERE transient_id = %s", (q,))
    assert marshall_id(db, two_in_radius) == p


def test_dry_run_changes_nothing(db: psycopg2.extensions.connection) -> None:
    transient(db, "SN 2018abc", 150.0, 20.0)
    tid = target(db, "SN2018abc", 150.0, 20.0)       # (no ingest: not matched yet)
    report = match_all(db, dry_run=True)
    assert report.matched == 1
    assert marshall_id(db, tid) is None
    assert run(db, "SELECT count(*) FROM archive.marshall_match")[0][0] == 0


def test_marshall_changes_refresh_the_match(db: psycopg2.extensions.connection) -> None:
    tid = target(db, "SN2021xyz", 45.0, -45.0)
    match_all(db)                                   # installs the refresh triggers
    assert marshall_id(db, tid) is None
    mid = transient(db, "AT 2021xyz", 100.0, 10.0)  # by name
    assert marshall_id(db, tid) == mid
    run(db, "UPDATE marshall.transients SET name = 'SN 2021abc' "
            "WHERE transient_id = %s", (mid,))      # renamed away
    assert marshall_id(db, tid) is None
    run(db, "UPDATE marshall.transients SET ra_deg = 45.0, dec_deg = -45.0 + 1/3600.0 "
            "WHERE transient_id = %s", (mid,))      # moved onto it
    assert marshall_id(db, tid) == mid
    run(db, "DELETE FROM marshall.transients WHERE transient_id = %s", (mid,))
    assert marshall_id(db, tid) is None
    assert run(db, "SELECT status FROM archive.marshall_match WHERE target_id = %s",
               (tid,)) == [("unmatched",)]


def test_radius_is_configurable(db: psycopg2.extensions.connection) -> None:
    tid = target(db, "field", 10.0, 10.0)
    mid = transient(db, "ZTF18ccccccc", 10.0, 10.0 + 5 * ARCSEC)
    assert match_all(db).matched == 0
    assert match_all(db, radius_arcsec=6.0).matched == 1
    assert marshall_id(db, tid) == mid


def test_marshall_in_another_database(
        db: psycopg2.extensions.connection, pg_cluster: EmbeddedCluster) -> None:
    other = create_database(pg_cluster, "marshall_elsewhere_" + str(id(db)))
    conn = psycopg2.connect(other)
    with conn, conn.cursor() as cur:
        cur.execute(MARSHALL_SQL.replace("%", "%%"))
        cur.execute("INSERT INTO marshall.transients (transient_id, name, ra_deg, "
                    "dec_deg) VALUES (41, 'MASTER OT J032814.9-321956.7', 52.06, "
                    "-32.33), (42, 'SN 2016\tx', 1.0, 1.0)")
    conn.close()
    tid = target(db, "MASTER J032814.9-321956.7", 52.0621, -32.3324)
    report = match_all(db, marshall_dsn=other)
    assert (report.matched, report.transients) == (1, 2)
    assert marshall_id(db, tid) == 41


def cli(archive: Archive, *args: str,
        config: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``vo-archive marshall ...`` on the archive, as an operator would."""
    home = archive.settings.home
    (home / "archive.toml").write_text(config)
    env = dict(os.environ, VO_ARCHIVE_HOME=str(home),
               VO_ARCHIVE_DSN=str(archive.settings.dsn), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "vo_archive", "marshall", *args],
                          capture_output=True, text=True, env=env, check=False,
                          timeout=120)


def test_command_reports_counts_and_ambiguous_cases(
        archive: Archive, db: psycopg2.extensions.connection) -> None:
    m = transient(db, "SN 2018abc", 150.0, 20.0)
    transient(db, "ZTF18aaaaaaa", 30.0, 10.0 + ARCSEC)
    transient(db, "ZTF18bbbbbbb", 30.0, 10.0 + 2.5 * ARCSEC)
    # targets made after the transients, not by an ingest: not matched yet
    matched = target(db, "SN2018abc", 150.0, 20.0)
    target(db, "field A", 30.0, 10.0)
    target(db, "NGC 1234", 50.0, 50.0)
    dry = cli(archive, "match", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would match against 3 Marshall transients: matched 1, unmatched 1, " \
           "ambiguous 1" in dry.stdout
    assert marshall_id(db, matched) is None
    assert "ambiguous: field A" in dry.stdout
    assert "ZTF18aaaaaaa" in dry.stdout and "ZTF18bbbbbbb" in dry.stdout
    # a smaller radius from the configuration: no longer ambiguous
    out = cli(archive, "match", "--json", config="[marshall]\nradius_arcsec = 2.0\n")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["matched"], doc["unmatched"], doc["ambiguous"]) == (2, 1, 0)
    assert marshall_id(db, matched) == m


@pytest.mark.parametrize(("args", "config", "message"), [
    (("match", "--radius", "-1"), "", "the radius must be positive"),
    (("match",), "[marshall]\nradius_arcsec = 'x'\n", "radius_arcsec must be a number"),
    (("match",), "[marshall]\ndsn = 'postgresql://nobody@127.0.0.1:1/none'\n",
     "cannot reach the Marshall"),
])
def test_command_errors_are_one_line(archive: Archive, args: tuple[str, ...],
                                     config: str, message: str) -> None:
    out = cli(archive, *args, config=config)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_command_without_a_marshall(make_archive: Callable[..., Archive]) -> None:
    archive = make_archive()
    conn = psycopg2.connect(archive.settings.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA marshall CASCADE")
    conn.close()
    out = cli(archive, "match")
    assert out.returncode == 2
    assert "no marshall.transients" in out.stderr and "Traceback" not in out.stderr


def test_ingest_matches_the_targets_it_creates(
        archive: Archive, db: psycopg2.extensions.connection,
        demo_files: list[Path]) -> None:
    from astropy.io import fits

    files = demo_files[:60]
    names = set()
    for path in files:
        obj = str(fits.getheader(path).get("OBJECT", ""))
        if re.fullmatch(r"(SN|AT)20\d\d[a-z]{3}", obj):
            names.add(obj)
    assert names, "the demo files have IAU-named targets"
    expected = {}
    for i, name in enumerate(sorted(names)):
        # the Marshall writes them "AT 20xxabc", a degree away: a match by name
        expected[name] = transient(db, "AT " + name[2:], float(i), 0.0)
    match_all(db)
    archive.ingest(files)
    got = dict(run(db, "SELECT name, marshall_id FROM archive.target "
                       "WHERE name = ANY(%s)", (sorted(names),)))
    assert got == expected


def test_view_members_only_with_disagreement_flag(
        archive: Archive, db: psycopg2.extensions.connection) -> None:
    from sqlalchemy import text

    from vo_archive.access import ANONYMOUS, Caller, caller_connection

    agree = target(db, "SN2019aaa", 10.0, 10.0)
    differ = target(db, "SN2019bbb", 20.0, 20.0)
    bare = target(db, "SN2019ccc", 30.0, 30.0)
    a = transient(db, "SN 2019aaa", 10.0, 10.0)
    b = transient(db, "SN 2019bbb", 20.0, 20.0)
    transient(db, "SN 2019ccc", 30.0, 30.0)
    run(db, "UPDATE archive.target SET classification = 'Ia' WHERE target_id = %s",
        (agree,))
    run(db, "UPDATE archive.target SET classification = 'II' WHERE target_id = %s",
        (differ,))
    run(db, "INSERT INTO marshall.classifications (transient_id, sn_type, redshift, "
            "phase_days, classified_by, classified_at) VALUES "
            "(%s, 'SN II', 0.01, -3, 'ann', '2019-01-01'), "
            "(%s, 'SN Ia-91T', 0.05, 2, 'bob', '2019-02-01'), "
            "(%s, 'SN Ic', 0.02, 5, 'cyd', '2019-03-01')", (a, a, b))
    run(db, "INSERT INTO marshall.atel_refs VALUES (12345, %s, 't', '2019-01-02'), "
            "(12001, %s, 't', '2019-01-01')", (a, a))
    run(db, "INSERT INTO marshall.priorities VALUES (%s, 1, 'ann')", (a,))
    run(db, "UPDATE marshall.transients SET status = 'classified' "
            "WHERE transient_id = %s", (a,))
    match_all(db)
    query = text("SELECT target_id, marshall_id, sn_type, redshift, classified_by, "
                 "n_classifications, atels, priority, status, archive_type, "
                 "types_disagree FROM pessto.marshall_classifications "
                 "ORDER BY target_id")
    with caller_connection(archive.engine, ANONYMOUS) as conn:
        assert conn.execute(query).all() == []
    with caller_connection(archive.engine, Caller("x", frozenset())) as conn:
        assert conn.execute(query).all() == []
    member = Caller("ann", frozenset({"member"}))
    with caller_connection(archive.engine, member) as conn:
        rows = [tuple(r) for r in conn.execute(query).all()]
    assert rows[0] == (agree, a, "SN Ia-91T", 0.05, "bob", 2,
                       "ATel #12001, ATel #12345", 1, "classified", "Ia", False)
    assert rows[1][:3] == (differ, b, "SN Ic") and rows[1][-2:] == ("II", True)
    assert rows[2][0] == bare and rows[2][2] is None and rows[2][-1] is None


@pytest.mark.parametrize(("a", "b", "agree"), [
    ("SN Ia", "Ia", True), ("SN Ia-91T", "Ia", True), ("SN IIP", "II", True),
    ("SN II", "IIn", True), ("SN Ic", "II", False), ("TDE", "Ia", False),
    ("SN Ib/c", "Ib", True), ("SN Ia", "Ic", False),
])
def test_types_agree(db: psycopg2.extensions.connection, a: str, b: str,
                     agree: bool) -> None:
    assert run(db, "SELECT archive.sn_types_agree(%s, %s)", (a, b))[0][0] is agree


def test_replicated_change_by_a_least_privileged_role(
        archive: Archive, db: psycopg2.extensions.connection) -> None:
    """The replicator applies Marshall rows as a role with rights on the Marshall
    only (and USAGE on the archive's schema, to call the refresh), under
    ``session_replication_role = replica``: the replica trigger still matches,
    writing the archive's tables as their owner."""
    import uuid

    role, password = "repl_" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    tid = target(db, "SN2022qqq", 80.0, -60.0)
    run(db, f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (password,))
    try:
        run(db, f'GRANT USAGE ON SCHEMA marshall, archive TO "{role}"')
        run(db, f'GRANT SELECT, INSERT ON marshall.transients TO "{role}"')
        run(db, f'GRANT SET ON PARAMETER session_replication_role TO "{role}"')
        params = psycopg2.extensions.parse_dsn(str(archive.settings.dsn))
        params.update(user=role, password=password,
                      options="-c session_replication_role=replica")
        conn = psycopg2.connect(**params)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO marshall.transients (transient_id, name, "
                        "ra_deg, dec_deg) VALUES (7001, 'AT 2022qqq', 80, -60)")
        conn.close()
        assert marshall_id(db, tid) == 7001
        assert run(db, "SELECT name FROM archive.marshall_index "
                       "WHERE transient_id = 7001") == [("AT 2022qqq",)]
    finally:
        run(db, f'REVOKE SET ON PARAMETER session_replication_role FROM "{role}"')
        run(db, f'DROP OWNED BY "{role}"')
        run(db, f'DROP ROLE "{role}"')
