"""The archive's PostgreSQL extension vo_archive_cone against the Python cover."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tests.conftest import Archive, cone_extension_or_skip
from tests.unit.test_conecover import _cones
from vo_archive.vo.sky import Circle, covering_ranges


def test_server_ranges_equal_the_archive_ranges(
        make_archive: Callable[..., Archive]) -> None:
    """The extension's ranges are the Python cover's, range for range: cones of
    every kind (poles, belt edges, RA 0/360, quarter boundaries), radii from
    1 mas to 80°, tables of 1 to 10^10 rows, and the edge values."""
    archive = make_archive()
    cone_extension_or_skip(archive)
    rng = np.random.default_rng(17)
    cases = [(ra, dec, r, float(10 ** rng.uniform(0, 10)))
             for seed in (1, 2, 3, 4) for ra, dec, r, _ in _cones(seed, 500)]
    cases += [(ra, dec, r, rows) for ra in (0.0, 360.0, -1e-12, 90.0, 725.3)
              for dec in (90.0, -90.0, 41.8103148957786, 0.0, 95.0)
              for r in (0.0, 1e-9, 1 / 3600, 1.0, 45.0, 89.9999999, 90.0, 120.0)
              for rows in (1.0, 2e4, 1e10)]
    raw = archive.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for ra, dec, r, rows in cases:
                cur.execute("SELECT lo, hi FROM archive.healpix_cone_ranges(%s, %s, "
                            "%s, %s)", (ra, dec, r, rows))
                made = [tuple(x) for x in cur.fetchall()]
                assert made == covering_ranges(Circle(ra, dec, r), rows=rows), (
                    ra, dec, r, rows)
            with pytest.raises(Exception, match="radius at least 0"):
                cur.execute("SELECT * FROM archive.healpix_cone_ranges(1, 2, -1, 10)")
        raw.rollback()
    finally:
        raw.close()


def test_a_role_that_may_not_create_it_goes_on_without(
        make_archive: Callable[..., Archive]) -> None:
    """Without the privilege to create a C extension, db init goes on: the
    extension is left out (the archive then makes the ranges itself) and the
    transaction stays usable."""
    import secrets

    from sqlalchemy import create_engine

    from vo_archive.db.migrate import optional_extensions

    archive = make_archive()
    cone_extension_or_skip(archive)
    name = f"cone_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    admin = archive.engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {name}")
    engine = create_engine(archive.engine.url.set(username=name, password=password,
                                                  database=name))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA archive")
            assert optional_extensions(conn) is False
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_extension WHERE "
                                        "extname = 'vo_archive_cone'").scalar_one() == 0
            conn.exec_driver_sql("CREATE TABLE archive.still_usable (x int)")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
            conn.exec_driver_sql(f"DROP ROLE {name}")
