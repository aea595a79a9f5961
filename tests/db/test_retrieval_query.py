"""Selections against the demo archive, checked with independent SQL."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, text

from tests.conftest import Archive
from vo_archive.access import ANONYMOUS, Caller, caller_connection
from vo_archive.retrieval import query
from vo_archive.retrieval.params import ObjectSearch, parse_selection
from vo_archive.vo.dali.errors import NotFoundFault, UsageFault
from vo_archive.vo.dali.params import ParamSet

ADMIN = Caller("cli", frozenset({"admin"}))


@pytest.fixture
def anon(demo_archive: Archive) -> Iterator[Connection]:
    with caller_connection(demo_archive.engine, ANONYMOUS) as conn:
        yield conn


@pytest.fixture
def admin(demo_archive: Archive) -> Iterator[Connection]:
    with caller_connection(demo_archive.engine, ADMIN) as conn:
        yield conn


def pairs(rows: list[query.ProductFile]) -> set[tuple[int, int]]:
    return {(r.product_id, r.version_no) for r in rows}


def sql_pairs(conn: Connection, where: str, **bind: object) -> set[tuple[int, int]]:
    """The expected (product, version) pairs: archive tables, public rule by hand."""
    rows = conn.execute(text(
        "SELECT p.product_id, v.version_no FROM archive.product p "
        "JOIN archive.version v ON v.product_id = p.product_id "
        "LEFT JOIN archive.run r ON r.run_id = p.run_id "
        f"WHERE {where}"), bind).all()
    return {(a, b) for a, b in rows}


PUBLIC = "p.release_date <= now()"


def busiest_run(conn: Connection) -> str:
    return str(conn.execute(text(
        "SELECT r.name FROM archive.run r JOIN archive.product p USING (run_id) "
        "JOIN archive.version v USING (product_id) WHERE v.version_no = 2 "
        "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar_one())


CASES = [
    ({}, "v.is_current"),
    ({"level": "final"}, "v.is_current AND p.level = 'final'"),
    ({"level": "intermediate"}, "v.is_current AND p.level = 'intermediate'"),
    ({"category": "calib"}, "v.is_current AND p.category = 'calib'"),
    ({"category": "science", "level": "final", "mode": "spectroscopy"},
     "v.is_current AND p.category = 'science' AND p.level = 'final' "
     "AND p.mode = 'spectroscopy'"),
    ({"mode": "imaging"}, "v.is_current AND p.mode = 'imaging'"),
    ({"instrument": "SOFI"}, "v.is_current AND p.instrument = 'SOFI'"),
    ({"type": "fluxcal_1d,telluric_corrected_1d"},
     "v.is_current AND p.product_type IN ('fluxcal_1d', 'telluric_corrected_1d')"),
    ({"version": "all"}, "true"),
    ({"version": "2"}, "v.version_no = 2"),
    ({"version": "1", "level": "final"}, "v.version_no = 1 AND p.level = 'final'"),
]


@pytest.mark.parametrize(("params", "where"), CASES)
@pytest.mark.parametrize("who", ["anon", "admin"])
def test_run_selection_matches_sql(params: dict[str, str], where: str, who: str,
                                   request: pytest.FixtureRequest) -> None:
    conn: Connection = request.getfixturevalue(who)
    name = busiest_run(conn)
    run = query.find_run(conn, name)
    got = pairs(query.run_files(conn, run, parse_selection(
        ParamSet.from_mapping(params))))
    rule = PUBLIC if who == "anon" else "true"
    expected = sql_pairs(conn, f"r.name = :run AND {rule} AND {where}", run=name)
    assert got == expected
    if params in ({}, {"version": "all"}) and who == "admin":
        assert len(expected) > 50  # the case is not vacuous


def test_anonymous_sees_only_public(anon: Connection, admin: Connection) -> None:
    name = busiest_run(anon)
    a = query.run_files(anon, query.find_run(anon, name), parse_selection(ParamSet([])))
    b = query.run_files(admin, query.find_run(admin, name),
                        parse_selection(ParamSet([])))
    assert all(f.public for f in a)
    assert any(not f.public for f in b)
    assert pairs(a) < pairs(b)


def test_night_and_explicit_products(admin: Connection) -> None:
    name = busiest_run(admin)
    run = query.find_run(admin, name)
    night = run.first_night
    got = query.run_files(admin, run, parse_selection(ParamSet.from_mapping(
        {"night": night.strftime("%Y%m%d")})))
    assert pairs(got) == sql_pairs(admin, "r.name = :run AND v.is_current AND "
                                   "p.night = :n", run=name, n=night)
    pid, old = admin.execute(text(
        "SELECT p.product_id, 1 FROM archive.product p JOIN archive.run r "
        "USING (run_id) JOIN archive.version v USING (product_id) "
        "WHERE r.name = :run AND v.version_no = 2 LIMIT 1"), {"run": name}).one()
    other = next(f for f in got if f.product_id != pid)
    chosen = query.run_files(admin, run, parse_selection(ParamSet.from_mapping(
        {"product": [f"{pid}:{old}", str(other.product_id)]})))
    assert pairs(chosen) == {(pid, 1), (other.product_id, other.version_no)}
    foreign = admin.execute(text(
        "SELECT product_id FROM archive.product p JOIN archive.run r USING (run_id) "
        "WHERE r.name <> :run LIMIT 1"), {"run": name}).scalar_one()
    with pytest.raises(UsageFault, match=f"not in run {name}.*{foreign}"):
        query.run_files(admin, run, parse_selection(ParamSet.from_mapping(
            {"product": str(foreign)})))


def test_private_product_cannot_be_named_by_anonymous(anon: Connection) -> None:
    row = anon.execute(text(
        "SELECT p.product_id, r.name FROM archive.product p JOIN archive.run r "
        "USING (run_id) WHERE p.release_date IS NULL LIMIT 1")).one()
    run = query.find_run(anon, row.name)
    with pytest.raises(UsageFault, match="not visible"):
        query.run_files(anon, run, parse_selection(ParamSet.from_mapping(
            {"product": str(row.product_id)})))


def test_unknown_run(anon: Connection) -> None:
    with pytest.raises(NotFoundFault, match="no observing run"):
        query.find_run(anon, "jan99_d01to02_efosc")


@pytest.mark.parametrize("spelling", ["SN2014pol", "sn 2014-pol", "SN_2014_POL"])
def test_object_by_name_and_alias(anon: Connection, spelling: str) -> None:
    target = query.find_target(anon, spelling)
    assert target.name == "SN2014pol"
    got = query.object_files(anon, target, ObjectSearch(spelling, 0.0),
                             parse_selection(ParamSet([])))
    expected = sql_pairs(anon, f"{PUBLIC} AND v.is_current AND p.target_id = :t",
                         t=target.target_id)
    assert pairs(got) == expected and expected


def test_object_unknown(anon: Connection) -> None:
    with pytest.raises(NotFoundFault, match="no object"):
        query.find_target(anon, "SN1987A")


def separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = (math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


@pytest.mark.parametrize(("name", "radius"), [("AT2018zro", 3.0), ("SN2014pol", 60.0),
                                              ("AT2018zro", 1800.0)])
def test_object_by_position(admin: Connection, name: str, radius: float) -> None:
    """Products near the target (across RA=0 and near the pole) by exact distance."""
    target = query.find_target(admin, name)
    assert target.ra is not None and target.dec is not None
    got = query.object_files(admin, target, ObjectSearch(name, radius),
                             parse_selection(ParamSet.from_mapping({"version": "all"})))
    rows = admin.execute(text(
        "SELECT p.product_id, v.version_no, p.target_id, v.ra, v.dec "
        "FROM archive.product p JOIN archive.version v USING (product_id)")).all()
    expected = {(r.product_id, r.version_no) for r in rows
                if r.target_id == target.target_id or (
                    r.ra is not None and separation_deg(target.ra, target.dec, r.ra,
                                                        r.dec) <= radius / 3600.0)}
    assert pairs(got) == expected
    by_name = {(r.product_id, r.version_no) for r in rows
               if r.target_id == target.target_id}
    if radius >= 1800:
        assert expected > by_name  # the position search adds products


def test_run_counts_match_sql(anon: Connection) -> None:
    runs = {r["name"]: r for r in query.list_runs(anon)}
    rows = anon.execute(text(
        "SELECT r.name, count(p.product_id), count(*) FILTER (WHERE p.level = 'final'),"
        " coalesce(sum(p.file_size), 0) FROM pessto.runs r "
        "LEFT JOIN pessto.products p ON p.run_id = r.run_id GROUP BY 1")).all()
    assert len(rows) == len(runs) > 0
    for name, n, final, size in rows:
        assert (runs[name]["products"], runs[name]["final"], runs[name]["bytes"]) == \
            (n, final if n else 0, size)


def test_versions_of_a_product(anon: Connection) -> None:
    pid = anon.execute(text("SELECT product_id FROM pessto.versions "
                            "WHERE version_no = 2 LIMIT 1")).scalar_one()
    product, versions = query.product_versions(anon, pid)
    assert product["product_id"] == pid
    assert [v["version_no"] for v in versions] == [1, 2]
    assert [v["is_current"] for v in versions] == [False, True]
    hidden = anon.execute(text("SELECT product_id FROM archive.product "
                               "WHERE release_date IS NULL LIMIT 1")).scalar_one()
    with pytest.raises(NotFoundFault):
        query.product_versions(anon, hidden)
