"""The HEALPix positional search: the B-tree index is used, and the results equal a
brute-force scan, on random cones, at the poles, across RA = 0/360, for radii from
1 arcsec to 10 degrees."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import BigInteger, Column, Connection, Float, MetaData, Table, select

from tests.conftest import Archive, cone_extension_or_skip
from vo_archive.vo import statements
from vo_archive.vo.positional import (
    Circle,
    Polygon,
    Region,
    bind_region,
    range_join,
    region_values,
    set_cover_in_server,
)
from vo_archive.vo.sky import Box, angular_distance, covering_ranges, healpix29

ROWS = 200_000
points = Table(
    "sky_points",
    MetaData(),
    Column("id", BigInteger),
    Column("ra", Float),
    Column("dec", Float),
    Column("healpix29", BigInteger),
    schema="public",
)


def _sky(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    # crowd the edge cases: both poles and the RA = 0/360 seam
    k = n // 10
    ra[:k] = rng.uniform(0, 360, k)
    dec[:k] = rng.choice([-1.0, 1.0], k) * rng.uniform(89.0, 90.0, k)
    ra[k:2 * k] = rng.uniform(-0.5, 0.5, k) % 360.0
    dec[k:2 * k] = rng.uniform(-3, 3, k)
    return ra, dec


@pytest.fixture(scope="module")
def sky(make_archive: Callable[..., Archive]) -> Iterator[tuple[Archive, np.ndarray,
                                                                 np.ndarray]]:
    """A 200,000-row table of positions, clustered on a HEALPix B-tree."""
    archive = make_archive()
    rng = np.random.default_rng(7)
    ra, dec = _sky(rng, ROWS)
    hpx = healpix29(ra, dec)
    buf = io.StringIO(
        "".join(
            f"{i}\t{a!r}\t{d!r}\t{h}\n"
            for i, (a, d, h) in enumerate(
                zip(ra.tolist(), dec.tolist(), hpx.tolist(), strict=True)
            )
        )
    )
    raw = archive.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("CREATE TABLE public.sky_points (id bigint PRIMARY KEY, "
                        "ra double precision, dec double precision, healpix29 bigint)")
            cur.copy_from(buf, "sky_points", columns=("id", "ra", "dec", "healpix29"))
            cur.execute("CREATE INDEX sky_points_hpx ON public.sky_points (healpix29)")
            cur.execute("CLUSTER public.sky_points USING sky_points_hpx")
            cur.execute("ANALYZE public.sky_points")
        raw.commit()
    finally:
        raw.close()
    yield archive, ra, dec


@pytest.fixture(autouse=True, params=["server", "client"])
def cover(request: pytest.FixtureRequest, sky: tuple[Archive, np.ndarray, np.ndarray]
          ) -> Iterator[str]:
    """Every test twice: ranges made by the database's extension, and here."""
    archive, _, _ = sky
    if request.param == "server":
        cone_extension_or_skip(archive)
    set_cover_in_server(request.param == "server")
    yield request.param
    set_cover_in_server(None)


def _indexed(region: Region) -> statements.ShapedQuery:
    bound, values = bind_region(region, "r")

    def build() -> Any:
        return (select(points.c.id)
                .select_from(range_join(points, points.c.healpix29, None))
                .where(bound.contains(points.c.ra, points.c.dec)))

    def resolve(scalar: Any) -> dict[str, Any]:
        return {**values, **region_values(scalar, [region], rows=ROWS)}

    return statements.ShapedQuery(("test-points", bound), build, resolve,
                                  from_ranges=True)


def _cone(conn: Connection, c: Region) -> set[int]:
    q = _indexed(c)
    return {r[0] for r in conn.execute(q.build(), dict(q.resolve(lambda _: None)))}


def _brute(conn: Connection, c: Region) -> set[int]:
    bound, values = bind_region(c, "r")
    conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    rows = conn.execute(select(points.c.id)
                        .where(bound.contains(points.c.ra, points.c.dec)), values).all()
    conn.exec_driver_sql("SET LOCAL enable_indexscan = on")
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = on")
    return {r[0] for r in rows}


def _cones() -> list[Circle]:
    rng = np.random.default_rng(11)
    radii = [1 / 3600, 10 / 3600, 1 / 60, 10 / 60, 1.0, 3.0, 10.0]
    cones = []
    for r in radii:
        for _ in range(4):
            cones.append(Circle(float(rng.uniform(0, 360)),
                                float(np.degrees(np.arcsin(rng.uniform(-1, 1)))), r))
        cones += [Circle(float(rng.uniform(0, 360)), 90.0 - r / 3, r),
                  Circle(float(rng.uniform(0, 360)), -90.0, r),
                  Circle(0.0, 0.5, r), Circle(359.9999, -1.0, r),
                  Circle(0.0001, 1.0, r)]
    return cones


def test_cones_equal_brute_force(sky: tuple[Archive, np.ndarray, np.ndarray]) -> None:
    archive, ra, dec = sky
    seen = 0
    with archive.engine.begin() as conn:
        for c in _cones():
            # make the tiny cones non-trivial: centre some on an actual row
            indexed, brute = _cone(conn, c), _brute(conn, c)
            assert indexed == brute, c
            # and both agree with numpy, away from the boundary's rounding
            d = angular_distance(c.ra, c.dec, ra, dec)
            sure = set(np.nonzero(d < c.radius * (1 - 1e-9))[0].tolist())
            maybe = set(np.nonzero(d <= c.radius * (1 + 1e-9))[0].tolist())
            assert sure <= indexed <= maybe, c
            seen += len(indexed)
    assert seen > 1000  # the cones are not all empty


def test_tiny_cones_around_rows_find_them(sky: tuple[Archive, np.ndarray, np.ndarray]
                                          ) -> None:
    archive, ra, dec = sky
    rng = np.random.default_rng(3)
    with archive.engine.begin() as conn:
        for i in [*rng.choice(ROWS, 40, replace=False).tolist(), 0, 1, ROWS // 10 + 1]:
            c = Circle(float(ra[i]), float(dec[i]), 1 / 3600)
            found = _cone(conn, c)
            assert i in found
            assert found == _brute(conn, c)


@pytest.mark.parametrize("radius", [1 / 3600, 1 / 60, 1.0, 10.0])
def test_explain_uses_the_healpix_btree(sky: tuple[Archive, np.ndarray, np.ndarray],
                                        radius: float) -> None:
    archive, _, _ = sky
    q = _indexed(Circle(123.4, -45.6, radius))
    compiled = q.build().compile(archive.engine)
    with archive.engine.begin() as conn:
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            "EXPLAIN " + str(compiled), dict(q.resolve(lambda _: None))))
    assert "sky_points_hpx" in plan, plan
    assert "Seq Scan on sky_points" not in plan, plan


@pytest.mark.parametrize("radius", [1 / 3600, 1.0, 10.0])
def test_prepared_generic_plan_uses_the_healpix_btree(
        sky: tuple[Archive, np.ndarray, np.ndarray], radius: float, cover: str) -> None:
    """The statement the services prepare, with its generic plan (the values
    unknown to the planner), starts from the ranges and gives the brute-force
    rows."""
    archive, _, _ = sky
    c = Circle(200.0, 30.0, radius)
    q = _indexed(c)
    shape = statements.compile_shape(q, archive.engine.dialect)
    with archive.engine.begin() as conn:
        expected = _brute(conn, c)
    for _ in range(2):  # prepared on the first run, reused on the second
        assert {r[0] for r in statements.run(archive.engine, q, False)} == expected
    raw = archive.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute(shape.prepare_sql.replace(f"PREPARE {shape.name}",
                                                  "PREPARE plan_check"))
            cur.execute("SET plan_cache_mode = force_generic_plan; "
                        "SET enable_hashjoin = off; SET enable_mergejoin = off")
            cur.execute(
                "EXPLAIN " + shape.execute_sql.replace(shape.name, "plan_check"),
                {**shape.constants, **q.resolve(lambda _: None)},
            )
            plan = "\n".join(r[0] for r in cur.fetchall())
            cur.execute("DEALLOCATE plan_check")
        raw.rollback()
    finally:
        raw.close()
    # a generic plan: the centre is a parameter
    assert re.search(r"spoint\(\$\d+, \$\d+\)", plan), plan
    assert "sky_points_hpx" in plan, plan
    assert "Seq Scan on sky_points" not in plan, plan
    made_by = ("Function Scan on healpix_cone_ranges hpx" if cover == "server"
               else "Function Scan on hpx")
    assert made_by in plan, plan


def test_region_footprints_equal_brute_force(sky: tuple[Archive, np.ndarray,
                                                        np.ndarray]) -> None:
    """Polygons and coordinate ranges, through their bounding cones."""
    archive, _, _ = sky
    regions = [Polygon(((10.0, 20.0), (12.0, 20.0), (12.0, 23.0), (10.0, 22.0))),
               Polygon(((359.0, -1.0), (1.0, -1.0), (1.0, 1.0), (359.0, 1.0))),
               Box(350.0, 360.0, -2.0, 2.0), Box(0.0, 360.0, 89.5, 90.0),
               Box(100.0, 110.0, -90.0, -88.0)]
    with archive.engine.begin() as conn:
        for region in regions:
            indexed = _cone(conn, region)
            brute = _brute(conn, region)
            assert indexed == brute, region
            assert brute, region


def test_ranges_cover_the_cone_exactly_enough() -> None:
    """Covering ranges hold every point of random cones (pure healpy check)."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        r = float(10 ** rng.uniform(-3.5, 1))
        c = Circle(float(rng.uniform(0, 360)), float(rng.uniform(-90, 90)), r)
        ranges = covering_ranges(c, rows=10_000_000)
        assert len(ranges) <= 48
        # points on and inside the circle's rim
        bearings = rng.uniform(0, 2 * math.pi, 200)
        dist = np.radians(r) * np.sqrt(rng.uniform(0, 1, 200))
        d0, a0 = math.radians(c.dec), math.radians(c.ra)
        lat = np.arcsin(
            np.sin(d0) * np.cos(dist) + np.cos(d0) * np.sin(dist) * np.cos(bearings)
        )
        lon = a0 + np.arctan2(np.sin(bearings) * np.sin(dist) * np.cos(d0),
                              np.cos(dist) - np.sin(d0) * np.sin(lat))
        hp = healpix29(np.degrees(lon) % 360, np.degrees(lat))
        lo = np.array([a for a, _ in ranges])
        hi = np.array([b for _, b in ranges])
        inside = ((hp[:, None] >= lo) & (hp[:, None] < hi)).any(axis=1)
        assert inside.all(), c


def test_prepared_run_survives_dropped_connections(
        sky: tuple[Archive, np.ndarray, np.ndarray]) -> None:
    """A connection the server ended is found by the statement and replaced:
    the request still gets its rows (no pre-ping round trip is needed)."""
    from vo_archive.db.engine import get_engine

    archive, _, _ = sky
    engine = get_engine(archive.settings, pre_ping=False)
    c = Circle(10.0, 20.0, 0.5)
    q = _indexed(c)
    first = statements.run(engine, q, False)
    assert first
    with archive.engine.connect() as admin:
        ended = admin.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalar_one()
    assert ended >= 1
    assert statements.run(engine, q, False) == first

