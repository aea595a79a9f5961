"""TAP queries on a real archive: role, read-only, timeouts, index use, access."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
from sqlalchemy import text

from tap.adql.translate import Translation, translate
from tap.published import SCHEMAS
from tap.query import READER_ROLE, Limits, execute
from tap.uploads import load_votable
from tests.conftest import Archive
from vo_archive.access import ANONYMOUS, Caller
from vo_archive.db.outage import database_unavailable
from vo_archive.vo.dali.errors import TransientFault, UsageFault

MEMBER = Caller("alice", frozenset({"member"}))


def run(archive: Archive, adql: str, caller: Caller = ANONYMOUS, maxrec: int = 10000,
        timeout: float = 30, uploads: list | None = None) -> list[tuple]:
    tables = uploads or []
    t = translate(adql, {u.name for u in tables})
    rs = execute(archive.engine, caller, t, tables, Limits(timeout, maxrec),
                 lambda p: "http://x" + p)
    return list(rs.rows())


def raw(archive: Archive, sql: str) -> list[tuple]:
    """Run SQL that skipped the ADQL checks, as if they had been fooled."""
    rs = execute(archive.engine, ANONYMOUS, Translation(sql, ()), [],
                 Limits(30, 100), lambda p: p)
    return list(rs.rows())


@pytest.mark.parametrize("sql", [
    "SELECT * FROM archive.product",
    "SELECT * FROM archive_meta.setting",
    "SELECT * FROM uws.job",
    "SELECT * FROM procrastinate.procrastinate_jobs",
])
def test_reader_role_cannot_read_internal_tables(demo_archive: Archive, sql: str
                                                 ) -> None:
    with pytest.raises(UsageFault, match="permission denied"):
        raw(demo_archive, sql)


@pytest.mark.parametrize("sql", [
    "CREATE TABLE pessto.evil (x int)",
    "UPDATE pessto.runs SET name = 'x'",
    "WITH d AS (DELETE FROM pessto.runs RETURNING 1) SELECT * FROM d",
    "SELECT 1; DROP TABLE archive.product",
])
def test_statements_that_change_things_fail(demo_archive: Archive, sql: str) -> None:
    """Even SQL that got past the ADQL checks cannot change anything."""
    with demo_archive.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM archive.run")).scalar_one()
    with pytest.raises(UsageFault):
        raw(demo_archive, sql)
    with demo_archive.engine.connect() as conn:
        assert conn.execute(text(
            "SELECT to_regclass('pessto.evil')")).scalar_one() is None
        assert conn.execute(text("SELECT count(*) FROM archive.run")
                            ).scalar_one() == before
        assert conn.execute(text("SELECT to_regclass('archive.product')")
                            ).scalar_one() is not None


def test_scope_setting_does_not_outlive_the_query(demo_archive: Archive) -> None:
    raw(demo_archive, "SELECT set_config('vo_archive.proprietary', 'on', false)")
    assert run(demo_archive, "SELECT COUNT(*) FROM ivoa.ObsCore") < run(
        demo_archive, "SELECT COUNT(*) FROM ivoa.ObsCore", MEMBER)


def test_statement_timeout(demo_archive: Archive) -> None:
    adql = ("SELECT COUNT(*) FROM ivoa.ObsCore AS a, ivoa.ObsCore AS b, "
            "ivoa.ObsCore AS c, ivoa.ObsCore AS d")
    with pytest.raises(TransientFault, match=r"longer than 0\.5 s"):
        run(demo_archive, adql, timeout=0.5)


def test_reader_role_holds_only_published_schemas(demo_archive: Archive) -> None:
    with demo_archive.engine.connect() as conn:
        schemas = set(conn.execute(text(
            "SELECT DISTINCT table_schema FROM information_schema.role_table_grants "
            "WHERE grantee = :r"), {"r": READER_ROLE}).scalars())
    assert schemas <= {"ivoa", "pessto", "tap_schema"}


@pytest.mark.parametrize(("adql", "index"), [
    ("SELECT obs_id FROM ivoa.ObsCore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec),"
     " CIRCLE('ICRS', 308.2, -11.7, 0.5))", "version_sky_point"),
    ("SELECT obs_id FROM ivoa.ObsCore WHERE DISTANCE(POINT(s_ra, s_dec), "
     "POINT(308.2, -11.7)) < 0.5", "version_sky_point"),
    # INTERSECTS(s_region, ...) is not in the list: pgSphere's polygon tests
    # have an error path, so they are not LEAKPROOF and the row-level policies
    # keep them out of the footprint index (schema/versions/0009_row_security.py)
    ("SELECT name FROM pessto.targets WHERE 1 = CONTAINS(POINT(ra, \"dec\"), "
     "CIRCLE(308.2, -11.7, 0.5))", "target_sky_point"),
])
def test_spatial_predicates_use_an_index(demo_archive: Archive, adql: str,
                                         index: str) -> None:
    sql = translate(adql).sql
    with demo_archive.engine.begin() as conn:
        conn.execute(text("SET LOCAL search_path = tap_adql, public"))
        # A small table may be scanned anyway; forbid that to show the index
        # can serve the predicate.
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(text("EXPLAIN " + sql)).scalars())
    assert index in plan, plan


def _reader_plan(archive: Archive, adql: str, proprietary: bool = False) -> str:
    """Return the plan of ``adql`` as TAP runs it: the reader role, a scope."""
    sql = translate(adql).sql
    with archive.engine.begin() as conn:
        conn.execute(text("SELECT set_config('vo_archive.proprietary', :v, true)"),
                     {"v": "on" if proprietary else "off"})
        conn.execute(text("SET LOCAL search_path = tap_adql, public"))
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text(f"SET LOCAL ROLE {READER_ROLE}"))
        return "\n".join(conn.execute(text("EXPLAIN " + sql)).scalars())


@pytest.mark.parametrize("proprietary", [False, True])
@pytest.mark.parametrize(("adql", "index"), [
    ("SELECT TOP 100 obs_publisher_did FROM ivoa.ObsCore WHERE CONTAINS("
     "POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 308.2, -11.7, 0.5)) = 1",
     "version_sky_point"),
    ("SELECT obs_id FROM ivoa.ObsCore WHERE DISTANCE(POINT(s_ra, s_dec), "
     "POINT(308.2, -11.7)) < 0.5", "version_sky_point"),
    ("SELECT product_id FROM pessto.products WHERE 1 = CONTAINS(POINT(ra, "
     "\"dec\"), CIRCLE(308.2, -11.7, 0.5))", "version_sky_point"),
    ("SELECT name FROM pessto.targets WHERE 1 = CONTAINS(POINT(ra, \"dec\"), "
     "CIRCLE(308.2, -11.7, 0.5))", "target_sky_point"),
    ("SELECT product_id FROM pessto.products WHERE healpix29 BETWEEN "
     "1000000000000 AND 2000000000000", "version_healpix"),
    ("SELECT o.obs_id, p.filename FROM ivoa.ObsCore AS o JOIN pessto.products AS p "
     "ON p.product_id = o.pessto_product_id WHERE CONTAINS(POINT(o.s_ra, o.s_dec), "
     "CIRCLE(308.2, -11.7, 0.5)) = 1", "version_sky_point"),
])
def test_indexes_serve_cones_under_row_security(demo_archive: Archive, adql: str,
                                                index: str, proprietary: bool
                                                ) -> None:
    """The row-level policies leave the GiST and HEALPix indexes usable (#13).

    A condition is used in an index under the policies only if LEAKPROOF; the
    cluster of the tests is run by a superuser, which marks it so.
    """
    plan = _reader_plan(demo_archive, adql, proprietary)
    assert f"Index Scan using {index}" in plan or \
        f"Bitmap Index Scan on {index}" in plan, plan
    assert "release_date" in plan, "the policy is in the plan"


@pytest.mark.parametrize("on", [
    "1 = CONTAINS(POINT(o.s_ra, o.s_dec), CIRCLE(u.ra, u.dec, 0.01))",
    "DISTANCE(POINT(o.s_ra, o.s_dec), POINT(u.ra, u.dec)) < 0.01",
])
def test_upload_crossmatch_uses_the_index_under_row_security(
        demo_archive: Archive, on: str) -> None:
    """A TAP_UPLOAD crossmatch looks each uploaded position up in the GiST index
    (a nested loop of index scans), not a scan per uploaded row (#13)."""
    sql = translate("SELECT u.a, o.obs_id FROM TAP_UPLOAD.t1 AS u JOIN "
                    f"ivoa.ObsCore AS o ON {on}", {"t1"}).sql
    with demo_archive.engine.begin() as conn:
        conn.execute(text("SELECT set_config('vo_archive.proprietary', 'off', true)"))
        conn.execute(text(
            "CREATE TEMP TABLE t1 ON COMMIT DROP AS SELECT ra + 0.001 AS ra, dec, "
            "version_id AS a FROM archive.version ORDER BY version_id LIMIT 1"))
        conn.execute(text(f"GRANT SELECT ON pg_temp.t1 TO {READER_ROLE}"))
        conn.execute(text("ANALYZE pg_temp.t1"))
        conn.execute(text("SET LOCAL search_path = tap_adql, public"))
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_material = off"))
        conn.execute(text(f"SET LOCAL ROLE {READER_ROLE}"))
        plan = "\n".join(conn.execute(text("EXPLAIN " + sql)).scalars())
    assert "Index Scan using version_sky_point" in plan, plan


def test_circles_around_columns_never_fail(demo_archive: Archive) -> None:
    """sky_circle is LEAKPROOF: a radius pgSphere refuses gives no circle."""
    with demo_archive.engine.connect() as conn:
        got = conn.execute(text(
            "SELECT tap_adql.sky_circle(spoint(0, 0), 2), "
            "tap_adql.sky_circle(spoint(0, 0), -1), "
            "tap_adql.sky_circle(spoint(0, 0), 'NaN'), "
            "tap_adql.sky_circle(spoint(0, 0), 0.1) IS NOT NULL, "
            "tap_adql.sky_point(5e-324, 1e-310) = spoint(0, 0), "
            "(SELECT bool_and(proleakproof) FROM pg_proc WHERE proname IN "
            "('sky_point', 'sky_circle', 'spoint_contained_by_circle'))")).one()
    assert tuple(got) == (None, None, None, True, True, True)


def test_policy_runs_before_the_callers_expression(demo_archive: Archive) -> None:
    """A caller's failing expression is filtered after the policy's test (#13)."""
    plan = _reader_plan(demo_archive, "SELECT COUNT(*) FROM ivoa.ObsCore "
                        "WHERE 1 / (pessto_product_id - 6) > -1000000")
    line = next(x for x in plan.splitlines() if "product_id - 6" in x)
    assert line.index("release_date") < line.index("product_id - 6"), plan


def test_anonymous_sees_public_rows_only(demo_archive: Archive) -> None:
    for adql in ("SELECT COUNT(*) FROM ivoa.ObsCore",
                 "SELECT COUNT(*) FROM pessto.products AS p JOIN pessto.runs AS r "
                 "ON r.run_id = p.run_id",
                 "SELECT COUNT(*) FROM pessto.versions"):
        public = run(demo_archive, adql)[0][0]
        member = run(demo_archive, adql, MEMBER)[0][0]
        assert 0 < public < member, adql
    future = run(demo_archive, "SELECT COUNT(*) FROM ivoa.ObsCore WHERE "
                 "data_rights = 'proprietary'")[0][0]
    assert future == 0


def test_uploads_join_with_access_rule(demo_archive: Archive) -> None:
    with demo_archive.engine.connect() as conn:
        dids = list(conn.execute(text(
            "SELECT archive.publisher_did(product_id, version_no), "
            "archive.visible(p.release_date) FROM archive.version v JOIN "
            "archive.product p USING (product_id) WHERE v.is_current")).all())
    hidden = [d for d, vis in dids if not vis]
    shown = [d for d, vis in dids if vis]
    assert hidden and shown
    rows = "".join(f"<TR><TD>{d}</TD></TR>" for d in hidden[:3] + shown[:2])
    vot = ('<?xml version="1.0"?><VOTABLE version="1.3" xmlns="http://www.ivoa.net/'
           'xml/VOTable/v1.3"><RESOURCE><TABLE><FIELD name="DID" datatype="char" '
           f'arraysize="*"/><DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE>'
           "</RESOURCE></VOTABLE>").encode()
    up = load_votable("mine", vot)
    adql = ("SELECT u.did, o.obs_id FROM TAP_UPLOAD.mine AS u JOIN ivoa.ObsCore AS o"
            " ON o.obs_publisher_did = u.did")
    assert len(run(demo_archive, adql, uploads=[up])) == 2
    assert len(run(demo_archive, adql, MEMBER, uploads=[up])) == 5


def test_tap_schema_matches_the_description(demo_archive: Archive) -> None:
    with demo_archive.engine.connect() as conn:
        tables = set(conn.execute(text("SELECT table_name FROM tap_schema.tables"))
                     .scalars())
        ncols = conn.execute(text("SELECT count(*) FROM tap_schema.columns")
                             ).scalar_one()
        db_cols = {(r[0], r[1]) for r in conn.execute(text(
            "SELECT table_schema || '.' || table_name, column_name FROM "
            "information_schema.columns WHERE table_schema IN "
            "('ivoa', 'pessto', 'tap_schema')"))}
        comment = conn.execute(text(
            "SELECT col_description('ivoa.obscore'::regclass, 3)")).scalar_one()
    described = [(t, c) for s in SCHEMAS for t in s.tables for c in t.columns]
    assert tables == {t.name for s in SCHEMAS for t in s.tables}
    assert ncols == len(described)
    for t, c in described:  # every described column exists in the database
        assert (t.sql_name, c.name.strip('"').lower()) in db_cols, (t.name, c.name)
    assert comment.startswith("Calibration level")


def test_upgrade_is_repeatable(demo_archive: Archive) -> None:
    from vo_archive.db import migrate

    heads = migrate.upgrade(demo_archive.engine)
    # the TAP branch, past the row security and classification migrations
    assert "0014_classification_security" in heads
    assert migrate.upgrade(demo_archive.engine) == heads


def test_stale_tap_schema_is_resynchronised(make_archive) -> None:
    from tap import tap_schema

    archive = make_archive()
    with archive.engine.begin() as conn:
        conn.execute(text("DELETE FROM tap_schema.columns"))
        conn.execute(text("UPDATE archive_meta.setting SET value = 'old' "
                          "WHERE name = :n"), {"n": tap_schema.DIGEST_SETTING})
    tap_schema._checked.clear()
    tap_schema.ensure_tap_schema(archive.engine)
    with archive.engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM tap_schema.columns")).scalar_one()
    assert n == sum(len(t.columns) for s in SCHEMAS for t in s.tables)


def test_a_connection_lost_mid_query_is_no_usage_fault(demo_archive: Archive) -> None:
    """The server ending the query's connection (a restart) is not the query's
    fault: it is not a UsageFault (400) but an error the app answers with 503."""
    adql = ("SELECT COUNT(*) FROM ivoa.ObsCore AS a, ivoa.ObsCore AS b, "
            "ivoa.ObsCore AS c, ivoa.ObsCore AS d")
    assert demo_archive.settings.dsn
    admin = psycopg2.connect(demo_archive.settings.dsn)
    admin.autocommit = True

    def terminate_soon(pid: int) -> None:
        def later() -> None:
            time.sleep(0.5)
            with admin.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))

        threading.Thread(target=later, daemon=True).start()

    t = translate(adql, set())
    try:
        with pytest.raises(psycopg2.Error) as caught:
            rs = execute(demo_archive.engine, ANONYMOUS, t, [], Limits(30, 10),
                         lambda p: p, on_backend=terminate_soon)
            list(rs.rows())
        assert database_unavailable(caught.value)
    finally:
        admin.close()
    assert run(demo_archive, "SELECT COUNT(*) FROM ivoa.ObsCore")[0][0] > 0


# -- ADQL 2.1 optional features (#16) ---------------------------------------------


def test_set_operators_give_set_results(demo_archive: Archive) -> None:
    runs = {r[0] for r in run(demo_archive, "SELECT run_id FROM pessto.runs")}
    used = {r[0] for r in run(demo_archive, "SELECT run_id FROM pessto.products "
                                            "WHERE mode = 'imaging'")}
    got = [r[0] for r in run(demo_archive, "SELECT run_id FROM pessto.runs EXCEPT "
                             "SELECT run_id FROM pessto.products WHERE mode = "
                             "'imaging'")]
    assert sorted(got) == sorted(runs - used)
    got = [r[0] for r in run(demo_archive, "SELECT run_id FROM pessto.runs INTERSECT "
                             "SELECT run_id FROM pessto.products WHERE mode = "
                             "'imaging'")]
    assert sorted(got) == sorted(runs & used) and got


def test_cast_in_unit_and_with(demo_archive: Archive) -> None:
    rows = run(demo_archive, "SELECT TOP 20 em_min, IN_UNIT(em_min, 'nm'), "
               "CAST(em_min * 1e10 AS INTEGER), CAST(obs_id AS CHAR(4)) "
               "FROM ivoa.ObsCore WHERE em_min IS NOT NULL ORDER BY obs_id")
    assert rows
    for em_min, nm, angstrom, short in rows:
        assert nm == pytest.approx(em_min * 1e9, rel=1e-12)
        assert isinstance(angstrom, int) and abs(angstrom - em_min * 1e10) <= 0.5
        assert len(short) == 4
    with_rows = run(demo_archive, "WITH r AS (SELECT run_id, name FROM pessto.runs), "
                    "n AS (SELECT run_id, COUNT(*) AS k FROM pessto.products "
                    "GROUP BY run_id) SELECT r.name, n.k FROM r JOIN n "
                    "ON n.run_id = r.run_id ORDER BY r.name")
    join_rows = run(demo_archive, "SELECT r.name, COUNT(*) FROM pessto.runs AS r "
                    "JOIN pessto.products AS p ON p.run_id = r.run_id "
                    "GROUP BY r.name ORDER BY r.name")
    assert with_rows == join_rows and with_rows


def test_with_sees_only_visible_rows(demo_archive: Archive) -> None:
    adql = ("WITH p AS (SELECT product_id FROM pessto.products) "
            "SELECT COUNT(*) FROM p")
    assert run(demo_archive, adql)[0][0] == run(
        demo_archive, "SELECT COUNT(*) FROM pessto.products")[0][0]
    assert run(demo_archive, adql)[0][0] < run(demo_archive, adql, MEMBER)[0][0]


def test_udfs_and_centroid(demo_archive: Archive) -> None:
    import healpy
    import numpy as np

    rows = run(demo_archive, "SELECT ra, \"dec\", ivo_healpix_index(0, ra, \"dec\"), "
               "ivo_healpix_index(8, ra, \"dec\"), ivo_healpix_index(29, ra, \"dec\") "
               "FROM pessto.products WHERE ra IS NOT NULL", MEMBER)
    assert len(rows) > 50
    ra = np.array([r[0] for r in rows])
    dec = np.array([r[1] for r in rows])
    for col, order in ((2, 0), (3, 8), (4, 29)):
        want = healpy.ang2pix(1 << order, ra, dec, nest=True, lonlat=True)
        assert [r[col] for r in rows] == [int(x) for x in want], order
    rng = np.random.default_rng(7)
    pts = [(0.0, 90.0), (0.0, -90.0), (359.999999, 0.0), (360.0, 12.0),
           (45.0, 41.8103), (180.0, -41.8103)]
    pts += [(float(a), float(b)) for a, b in zip(rng.uniform(0, 360, 40),
                                                 np.degrees(np.arcsin(
                                                     rng.uniform(-1, 1, 40))),
                                                 strict=True)]
    for a, b in pts:
        got = run(demo_archive, f"SELECT TOP 1 ivo_healpix_index(12, {a!r}, {b!r}) "
                  "FROM pessto.runs")[0][0]
        assert got == int(healpy.ang2pix(4096, a % 360.0, b, nest=True,
                                         lonlat=True)), (a, b)
    words = run(demo_archive, "SELECT TOP 1 ivo_hasword('SN 2018abc, a type Ia', "
                "'type ia'), ivo_hasword('SN 2018abc', 'abc'), "
                "ivo_hasword('Gaia17bzc', 'gaia17BZC') FROM pessto.runs")[0]
    assert words == (1, 0, 1)
    names = sorted(r[0] for r in run(demo_archive, "SELECT name FROM pessto.runs"))
    agg = run(demo_archive, "SELECT ivo_string_agg(name, '|') FROM pessto.runs")[0][0]
    assert sorted(agg.split("|")) == names
    c = run(demo_archive, "SELECT TOP 1 CENTROID(CIRCLE('ICRS', 10, 20, 1)), "
            "CENTROID(POLYGON('ICRS', 10, 10, 12, 10, 12, 12, 10, 12)) "
            "FROM pessto.runs")[0]
    assert c[0] == pytest.approx([10.0, 20.0])
    assert c[1][0] == pytest.approx(11.0) and 10.9 < c[1][1] < 11.1
