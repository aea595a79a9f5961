"""SIA 1.0 query parameters (SIA 1.0 §4.1): wire names to an :class:`SIA1Query`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import ParamSet, parse_float, parse_maxrec
from vo_archive.vo.sky import Circle, Polygon, Region, counter_clockwise

#: SIZE when the client sends none (TOPCAT omits a blank one): 0.1 degree.
DEFAULT_SIZE = 0.1


class Intersect(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """How an image must relate to the query region (SIA 1.0 §4.1)."""

    COVERS = "COVERS"
    ENCLOSED = "ENCLOSED"
    CENTER = "CENTER"
    OVERLAPS = "OVERLAPS"


class Rendering(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """What a result row points to."""

    FITS = "image/fits"
    PNG = "image/png"
    DATALINK = "application/x-votable+xml;content=datalink"


@dataclass(frozen=True, slots=True)
class SIA1Query:
    """A parsed SIA 1.0 query."""

    ra: float
    dec: float
    width: float
    height: float
    intersect: Intersect
    renderings: tuple[Rendering, ...]
    metadata: bool
    maxrec: int

    @property
    def region(self) -> Region | None:
        """The query region: a box on the tangent plane, or None for a point."""
        if self.width == 0.0 and self.height == 0.0:
            return None
        if max(self.width, self.height) > 60.0:
            return Circle(self.ra, self.dec,
                          min(180.0, math.hypot(self.width, self.height) / 2.0))
        return Polygon(tangent_box(self.ra, self.dec, self.width, self.height))


def tangent_box(ra: float, dec: float, width: float, height: float
                ) -> tuple[tuple[float, float], ...]:
    """Return the corners of a ``width`` x ``height`` degree box centred on (ra, dec).

    The box is drawn on the tangent plane (gnomonic projection) and its corners
    projected back to the sky, counter-clockwise.
    """
    a0, d0 = math.radians(ra), math.radians(dec)
    hw, hh = math.radians(width) / 2.0, math.radians(height) / 2.0
    out = []
    for x, y in ((-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)):
        x = -x  # RA increases to the east (left on the sky)
        rho = math.hypot(x, y)
        c = math.atan(rho)
        if rho == 0.0:
            out.append((ra % 360.0, dec))
            continue
        dec_c = math.asin(
            math.cos(c) * math.sin(d0) + y * math.sin(c) * math.cos(d0) / rho
        )
        ra_c = a0 + math.atan2(
            x * math.sin(c),
            rho * math.cos(d0) * math.cos(c) - y * math.sin(d0) * math.sin(c),
        )
        out.append((math.degrees(ra_c) % 360.0, math.degrees(dec_c)))
    flat = counter_clockwise([x for corner in out for x in corner])
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


_MIME = re.compile(r"[a-z0-9.+-]+/[a-z0-9.+;=-]+\Z")


def parse_format(params: ParamSet) -> tuple[tuple[Rendering, ...], bool]:
    """Return the renderings FORMAT asks for and whether it is METADATA.

    FORMAT is a comma list, possibly repeated (pyvo #621): ``ALL`` (default),
    ``GRAPHIC``, ``GRAPHIC-ALL``, ``METADATA`` or MIME types (SIA 1.0 §4.1).
    """
    values = [v.strip() for raw in params.all("FORMAT") for v in raw.split(",")
              if v.strip()]
    if not values:
        return (Rendering.FITS, Rendering.PNG), False
    if any(v.upper() == "METADATA" for v in values):
        return (), True
    out: list[Rendering] = []
    for v in values:
        low = v.lower().replace(" ", "")
        if low == "all":
            picked = [Rendering.FITS, Rendering.PNG]
        elif low in ("graphic", "graphic-all", "image/png"):
            picked = [Rendering.PNG]
        elif low in ("image/fits", "application/fits"):
            picked = [Rendering.FITS]
        elif low.startswith("application/x-votable+xml;content=datalink"):
            picked = [Rendering.DATALINK]
        elif _MIME.match(low):
            picked = []  # a format we do not hold: no rows of it
        else:
            raise UsageFault(f"parameter FORMAT: {v!r} is not ALL, GRAPHIC, "
                             "GRAPHIC-ALL, METADATA or a MIME type", "FORMAT")
        out.extend(r for r in picked if r not in out)
    return tuple(out), False


def parse_sia1(params: ParamSet, maxrec_default: int, maxrec_hard: int) -> SIA1Query:
    """Parse POS, SIZE, INTERSECT, FORMAT and MAXREC.

    Raises
    ------
    UsageFault
        Naming the parameter that is missing, malformed or out of range.
    """
    renderings, metadata = parse_format(params)
    maxrec = parse_maxrec(params, maxrec_default, maxrec_hard)
    if metadata:
        return SIA1Query(0.0, 0.0, 0.0, 0.0, Intersect.OVERLAPS, (), True, maxrec)
    pos = params.required("POS").split(",")
    if len(pos) != 2:
        raise UsageFault("parameter POS must be 'ra,dec' in degrees", "POS")
    ra, dec = parse_float(pos[0], "POS"), parse_float(pos[1], "POS")
    if not 0.0 <= ra <= 360.0 or not -90.0 <= dec <= 90.0:
        raise UsageFault(f"parameter POS: ({ra:g}, {dec:g}) is not on the sky", "POS")
    size_raw = params.single("SIZE")
    sizes = [DEFAULT_SIZE] if size_raw is None or not size_raw.strip() else \
        [parse_float(s, "SIZE") for s in size_raw.split(",")]
    if len(sizes) not in (1, 2) or any(not 0.0 <= s <= 360.0 for s in sizes):
        raise UsageFault("parameter SIZE must be one or two angles in [0, 360] degrees",
                         "SIZE")
    width, height = sizes[0], sizes[-1]
    raw = (params.single("INTERSECT") or "OVERLAPS").strip().upper()
    try:
        intersect = Intersect(raw)
    except ValueError:
        raise UsageFault(f"parameter INTERSECT={raw!r} is not COVERS, ENCLOSED, "
                         "CENTER or OVERLAPS", "INTERSECT") from None
    return SIA1Query(ra % 360.0, dec, width, min(height, 180.0), intersect, renderings,
                     False, maxrec)


