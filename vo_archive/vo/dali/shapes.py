"""DALI 1.1 §3.3.5–3.3.7 shapes and the SIA 2.0 ``POS`` forms, parsed to sky regions.

``CIRCLE ra dec radius``, ``RANGE ra1 ra2 dec1 dec2`` (``±Inf`` allowed) and
``POLYGON ra1 dec1 ra2 dec2 ...`` (SIA 2.0 §2.1.1), and the bare DALI arrays
(``circle``: 3 numbers, ``polygon``: 6 or more), all in ICRS degrees.
"""

from __future__ import annotations

import math

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import parse_floats
from vo_archive.vo.sky import Box, Circle, Polygon, Region


def _check_point(ra: float, dec: float, name: str) -> None:
    if not 0.0 <= ra <= 360.0:
        raise UsageFault(
            f"parameter {name}: longitude {ra:g} is outside [0, 360]", name
        )
    if not -90.0 <= dec <= 90.0:
        raise UsageFault(f"parameter {name}: latitude {dec:g} is outside [-90, 90]",
                         name)


def circle_of(values: list[float], name: str) -> Circle:
    """Return the circle of a DALI ``circle`` array (radius 0 allowed: a point)."""
    if len(values) != 3:
        raise UsageFault(f"parameter {name}: a circle is 'ra dec radius'", name)
    ra, dec, radius = values
    _check_point(ra, dec, name)
    if not 0.0 <= radius <= 180.0:
        raise UsageFault(f"parameter {name}: radius {radius:g} is outside [0, 180]",
                         name)
    return Circle(ra % 360.0, dec, radius)


def polygon_of(values: list[float], name: str) -> Polygon:
    """Return the polygon of a DALI ``polygon`` array (at least 3 vertices)."""
    if len(values) < 6 or len(values) % 2:
        raise UsageFault(
            f"parameter {name}: a polygon is at least 3 'ra dec' vertex pairs", name)
    for i in range(0, len(values), 2):
        _check_point(values[i], values[i + 1], name)
    vertices = tuple(
        (values[i] % 360.0, values[i + 1]) for i in range(0, len(values), 2)
    )
    distinct = {(round(a, 12), round(d, 12)) for a, d in vertices}
    if len(distinct) < 3:
        raise UsageFault(f"parameter {name}: a polygon needs 3 distinct vertices", name)
    return Polygon(vertices)


def box_of(values: list[float], name: str) -> Box:
    """Return the box of ``ra1 ra2 dec1 dec2`` (infinite ends: no limit)."""
    if len(values) != 4 or any(math.isnan(v) for v in values):
        raise UsageFault(f"parameter {name}: a range is 'ra1 ra2 dec1 dec2'", name)
    ra1, ra2, dec1, dec2 = values
    ra1 = 0.0 if ra1 == -math.inf else ra1
    ra2 = 360.0 if ra2 == math.inf else ra2
    dec1 = max(dec1, -90.0) if dec1 == -math.inf else dec1
    dec2 = 90.0 if dec2 == math.inf else dec2
    for v, what in ((ra1, "ra1"), (ra2, "ra2")):
        if not 0.0 <= v <= 360.0:
            raise UsageFault(f"parameter {name}: {what}={v:g} is outside [0, 360]",
                             name)
    for v, what in ((dec1, "dec1"), (dec2, "dec2")):
        if not -90.0 <= v <= 90.0:
            raise UsageFault(f"parameter {name}: {what}={v:g} is outside [-90, 90]",
                             name)
    if dec1 > dec2:
        raise UsageFault(f"parameter {name}: dec1={dec1:g} is above dec2={dec2:g}",
                         name)
    if ra1 > ra2:
        raise UsageFault(f"parameter {name}: ra1={ra1:g} is above ra2={ra2:g}", name)
    return Box(ra1, ra2, dec1, dec2)


def parse_sia_pos(text: str, name: str = "POS") -> Region:
    """Parse one SIA 2.0 ``POS`` value (SIA 2.0 §2.1.1).

    Raises
    ------
    UsageFault
        Naming ``name`` when the shape is unknown or its numbers are bad.
    """
    parts = text.split(None, 1)
    shape = parts[0].upper() if parts else ""
    numbers = parse_floats(parts[1], name, allow_special=shape == "RANGE") \
        if len(parts) > 1 else []
    if shape == "CIRCLE":
        return circle_of(numbers, name)
    if shape == "RANGE":
        return box_of(numbers, name)
    if shape == "POLYGON":
        return polygon_of(numbers, name)
    raise UsageFault(
        f"parameter {name}: {text[:60]!r} is not CIRCLE, RANGE or POLYGON", name)
