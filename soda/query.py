"""What the archive's tables say a product version covers (for the cutter)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from soda.cutout import Coverage
from vo_archive.access import visible
from vo_archive.vo.published import product, version


def coverage_of(conn: Connection, product_id: int, version_no: int
                ) -> Coverage | None:
    """Return the coverage of a visible product version, or None."""
    p, v = product.c, version.c
    row = conn.execute(
        select(v.filename, p.mode, p.product_type, v.ra, v.dec, v.em_min, v.em_max,
               v.mjd_obs, v.mjd_end)
        .select_from(version.join(product, p.product_id == v.product_id))
        .where(v.product_id == product_id, v.version_no == version_no,
               visible(p.release_date))).first()
    return None if row is None else Coverage(*row)
