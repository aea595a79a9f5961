"""SODA 1.0 {sync} parameters (SODA 1.0 §3): wire names to a :class:`CutoutRequest`.

One ID and at most one value of each filtering parameter per request: SODA 1.0
§3.1 lets a service refuse several with ``MultiValuedParamNotSupported``, which
is what this one does (except POL, which is multi-valued by definition, §3.3.6).
"""

from __future__ import annotations

from dataclasses import dataclass

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import Interval, ParamSet, parse_floats, parse_interval
from vo_archive.vo.dali.shapes import circle_of, parse_sia_pos, polygon_of
from vo_archive.vo.sky import Region

#: Polarisation states SODA 1.0 §3.3.6 takes from ObsCore's pol_states.
POL_STATES = frozenset({"I", "Q", "U", "V", "RR", "LL", "RL", "LR", "XX", "YY",
                        "XY", "YX", "POLI", "POLA"})
#: Response formats of a cutout: the FITS file.
FITS_FORMATS = frozenset({"fits", "application/fits", "image/fits"})


class MultiValuedParamNotSupported(UsageFault):
    """A parameter given more than once where one value is served (SODA 1.0 §5.2)."""

    name = "MultiValuedParamNotSupported"


@dataclass(frozen=True, slots=True)
class CutoutRequest:
    """A parsed SODA request: one dataset and the filters to apply to it."""

    did: str
    region: Region | None = None
    band: Interval | None = None
    time: Interval | None = None
    pol: frozenset[str] = frozenset()

    @property
    def filters(self) -> bool:
        """Whether any filtering parameter was given."""
        return bool(self.region or self.band or self.time or self.pol)


def _one(params: ParamSet, name: str) -> str | None:
    values = [v for v in params.all(name) if v.strip()]
    if len(values) > 1:
        raise MultiValuedParamNotSupported(
            f"parameter {name}: this service takes one value per request "
            f"(send one request per {name})", name)
    return values[0] if values else None


def _region(params: ParamSet) -> Region | None:
    given: list[Region] = []
    raw = _one(params, "CIRCLE")
    if raw is not None:
        given.append(circle_of(parse_floats(raw, "CIRCLE"), "CIRCLE"))
    raw = _one(params, "POLYGON")
    if raw is not None:
        given.append(polygon_of(parse_floats(raw, "POLYGON"), "POLYGON"))
    raw = _one(params, "POS")
    if raw is not None:
        given.append(parse_sia_pos(raw, "POS"))
    if len(given) > 1:
        raise UsageFault("give one of CIRCLE, POLYGON and POS, not several")
    return given[0] if given else None


def _interval(params: ParamSet, name: str) -> Interval | None:
    raw = _one(params, name)
    return None if raw is None else parse_interval(raw, name)


def parse_cutout(params: ParamSet) -> CutoutRequest:
    """Return the request a SODA {sync} call makes (SODA 1.0 §3).

    Raises
    ------
    UsageFault
        If ID is missing, a value is malformed or several regions are given.
    MultiValuedParamNotSupported
        If ID or a filtering parameter other than POL is given more than once.
    """
    did = _one(params, "ID")
    if did is None:
        raise UsageFault("parameter ID is required", "ID")
    fmt = _one(params, "RESPONSEFORMAT")
    if fmt is not None and fmt.strip().lower() not in FITS_FORMATS:
        raise UsageFault(f"parameter RESPONSEFORMAT: {fmt[:60]!r} is not offered; "
                         "cutouts are FITS files (application/fits)", "RESPONSEFORMAT")
    pol = frozenset(v.strip().upper() for v in params.all("POL") if v.strip())
    unknown = sorted(pol - POL_STATES)
    if unknown:
        raise UsageFault(f"parameter POL: {unknown[0][:20]!r} is not a polarisation "
                         f"state ({', '.join(sorted(POL_STATES))})", "POL")
    band = _interval(params, "BAND")
    if band is not None and band.hi <= 0:
        raise UsageFault("parameter BAND: wavelengths (metres) are positive", "BAND")
    return CutoutRequest(did.strip(), _region(params), band, _interval(params, "TIME"),
                         pol)
