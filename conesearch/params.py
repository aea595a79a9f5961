"""SCS 1.03 request parameters: wire names to a :class:`ConeQuery`."""

from __future__ import annotations

from dataclasses import dataclass

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import ParamSet, parse_float, parse_int, parse_maxrec

#: Largest search radius (degrees); 180 means the whole sky (SCS 1.03 §3).
MAX_SR = 180.0


@dataclass(frozen=True, slots=True)
class ConeQuery:
    """A parsed cone search."""

    ra: float
    dec: float
    sr: float
    verb: int
    maxrec: int


def _coordinate(params: ParamSet, name: str, lo: float, hi: float) -> float:
    value = parse_float(params.required(name), name)
    if not lo <= value <= hi:
        raise UsageFault(f"parameter {name}={value:g} is outside [{lo:g}, {hi:g}]",
                         name)
    return value


def parse_cone(params: ParamSet, maxrec_default: int, maxrec_hard: int) -> ConeQuery:
    """Parse RA, DEC, SR, VERB and MAXREC (SCS 1.03 §2; MAXREC from the 1.1 draft).

    Raises
    ------
    UsageFault
        Naming the parameter that is missing, malformed or out of range.
    """
    ra = _coordinate(params, "RA", 0.0, 360.0)
    dec = _coordinate(params, "DEC", -90.0, 90.0)
    sr = _coordinate(params, "SR", 0.0, MAX_SR)
    raw_verb = params.single("VERB")
    verb = 2
    if raw_verb is not None and raw_verb.strip():
        verb = parse_int(raw_verb, "VERB")
        if verb not in (1, 2, 3):
            raise UsageFault(f"parameter VERB={verb} is not 1, 2 or 3", "VERB")
    return ConeQuery(ra % 360.0, dec, sr, verb,
                     parse_maxrec(params, maxrec_default, maxrec_hard))
