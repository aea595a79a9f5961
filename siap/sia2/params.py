"""SIA 2.0 query parameters (SIA 2.0 §2.1): wire names to an :class:`SIA2Query`.

Every parameter may be repeated; the values of one parameter are ORed, different
parameters are ANDed (§2.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import (
    Interval,
    ParamSet,
    parse_int,
    parse_interval,
    parse_maxrec,
)
from vo_archive.vo.dali.responseformat import parse_response_format, require_votable
from vo_archive.vo.dali.shapes import parse_sia_pos
from vo_archive.vo.sky import Region

__all__ = ["SIA2Query", "parse_response_format", "parse_sia2", "require_votable"]

#: Range parameters and the ObsCore column each constrains (§2.1.2–2.1.9).
RANGE_PARAMS = ("BAND", "TIME", "FOV", "SPATRES", "EXPTIME", "TIMERES", "SPECRP")
#: String parameters matched exactly (§2.1.10–2.1.17).
STRING_PARAMS = ("ID", "COLLECTION", "FACILITY", "INSTRUMENT", "DPTYPE", "TARGET",
                 "FORMAT", "POL")
POL_STATES = ("I", "Q", "U", "V", "RR", "LL", "RL", "LR", "XX", "YY", "XY", "YX",
              "POLI", "POLA")


@dataclass(frozen=True, slots=True)
class SIA2Query:
    """A parsed SIA 2.0 query; empty tuples do not constrain."""

    pos: tuple[Region, ...] = ()
    ranges: tuple[tuple[str, tuple[Interval, ...]], ...] = ()
    strings: tuple[tuple[str, tuple[str, ...]], ...] = ()
    calib: tuple[int, ...] = ()
    maxrec: int = 1000

    def range(self, name: str) -> tuple[Interval, ...]:
        """Return the intervals of a range parameter."""
        return dict(self.ranges).get(name, ())

    def string(self, name: str) -> tuple[str, ...]:
        """Return the values of a string parameter."""
        return dict(self.strings).get(name, ())


def parse_sia2(params: ParamSet, maxrec_default: int, maxrec_hard: int) -> SIA2Query:
    """Parse every SIA 2.0 query parameter.

    Raises
    ------
    UsageFault
        Naming the parameter whose value is malformed.
    """
    pos = tuple(parse_sia_pos(v) for v in params.all("POS") if v.strip())
    ranges = []
    for name in RANGE_PARAMS:
        values = tuple(parse_interval(v, name) for v in params.all(name) if v.strip())
        if values:
            ranges.append((name, values))
    strings = []
    for name in STRING_PARAMS:
        words = tuple(v.strip() for v in params.all(name) if v.strip())
        if name == "POL":
            for word in words:
                if word not in POL_STATES:
                    raise UsageFault(f"parameter POL: {word!r} is not one of "
                                     f"{' '.join(POL_STATES)}", "POL")
        if words:
            strings.append((name, words))
    calib = []
    for v in params.all("CALIB"):
        if v.strip():
            level = parse_int(v, "CALIB")
            if not 0 <= level <= 4:
                raise UsageFault(f"parameter CALIB={level} is outside 0..4", "CALIB")
            calib.append(level)
    return SIA2Query(pos, tuple(ranges), tuple(strings), tuple(calib),
                     parse_maxrec(params, maxrec_default, maxrec_hard))
