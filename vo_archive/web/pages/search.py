"""The search box: an object name or alias, a position with a radius, or a run.

``parse_search`` turns the box's text into a :class:`Search` (no Flask, no
database); ``targets_near`` finds the objects around a position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from vo_archive.vo.dali.errors import UsageFault

#: Default and largest radius of a position search (arcsec).
DEFAULT_RADIUS_ARCSEC = 10.0
MAX_RADIUS_ARCSEC = 3600.0

_NUM = r"[+-]?\d+(?:\.\d*)?"
_SEX = re.compile(
    rf"(\d{{1,2}})[:h ]\s*(\d{{1,2}})[:m ]\s*(\d{{1,2}}(?:\.\d*)?)s?\s*[, ]\s*"
    rf"([+-]?)(\d{{1,2}})[:d° ]\s*(\d{{1,2}})[:m' ]\s*(\d{{1,2}}(?:\.\d*)?)[s\"]?"
    rf"(?:\s*[, ]\s*({_NUM})\s*(?:\"|arcsec)?)?\Z")
_DEG = re.compile(rf"({_NUM})\s*[, ]\s*({_NUM})(?:\s*[, ]\s*({_NUM})\s*"
                  rf"(?:\"|arcsec)?)?\Z")


@dataclass(frozen=True, slots=True)
class Search:
    """What the box asked for: a position (with radius) or a name."""

    text: str
    ra: float | None = None
    dec: float | None = None
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC

    @property
    def is_position(self) -> bool:
        """Whether this is a position search."""
        return self.ra is not None


def _radius(raw: str | None, given: str | None) -> float:
    text_ = raw or given
    if text_ is None or not text_.strip():
        return DEFAULT_RADIUS_ARCSEC
    try:
        value = float(text_)
    except ValueError:
        raise UsageFault(f"radius {text_!r} is not a number of arcsec",
                         "RADIUS") from None
    if not 0 < value <= MAX_RADIUS_ARCSEC:
        raise UsageFault(f"radius must be above 0 and at most "
                         f"{MAX_RADIUS_ARCSEC:g} arcsec", "RADIUS")
    return value


def parse_search(q: str, radius: str | None = None) -> Search:
    """Read the search box.

    ``10:30:00.5 -20:15:03 30`` and ``157.502 -20.251 30`` are positions
    (sexagesimal or degrees) with an optional radius in arcsec (or the
    ``radius`` field); anything else is a name, alias or run.

    Raises
    ------
    UsageFault
        If the text is empty, or a position is out of range.
    """
    s = q.strip()
    if not s:
        raise UsageFault("the search box is empty: give an object name, a position "
                         "or a run", "Q")
    m = _SEX.match(s)
    if m:
        h, mi, se, sign, d, dm, ds, r = m.groups()
        ra = 15.0 * (int(h) + int(mi) / 60.0 + float(se) / 3600.0)
        dec = int(d) + int(dm) / 60.0 + float(ds) / 3600.0
        dec = -dec if sign == "-" else dec
    else:
        m = _DEG.match(s)
        if not m:
            return Search(s)
        ra, dec, r = float(m.group(1)), float(m.group(2)), m.group(3)
    if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
        raise UsageFault(f"position {s!r} is out of range (RA 0-360°, Dec ±90°)",
                         "Q")
    return Search(s, ra, dec, _radius(r, radius))


def targets_near(conn: Connection, ra: float, dec: float, radius_arcsec: float,
                 limit: int = 200) -> list[dict[str, Any]]:
    """Return the objects within the radius that have a product the caller sees.

    ``conn`` must be scoped to the caller (the access rule of the products).
    """
    rows = conn.execute(text(
        "SELECT t.name, t.ra, t.dec, t.classification, count(p.product_id) AS "
        "products, min(p.night) AS first_night, max(p.night) AS last_night, "
        "degrees(spoint(radians(t.ra), radians(t.dec)) <-> "
        "spoint(radians(:ra), radians(:dec))) * 3600 AS distance "
        "FROM archive.target t JOIN archive.product p USING (target_id) "
        "WHERE archive.visible(p.release_date) AND t.ra IS NOT NULL "
        "AND spoint(radians(t.ra), radians(t.dec)) <-> "
        "spoint(radians(:ra), radians(:dec)) <= radians(:r / 3600.0) "
        "GROUP BY t.target_id ORDER BY distance LIMIT :limit"),
        {"ra": ra, "dec": dec, "r": radius_arcsec, "limit": limit}).mappings()
    out = []
    for r in rows:
        d = dict(r)
        for k in ("first_night", "last_night"):
            d[k] = d[k].isoformat() if d[k] else None
        out.append(d)
    return out
