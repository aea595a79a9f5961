"""Classification request parameters: from the wire to a frozen request (no Flask).

Parameters follow DALI 1.1 §3 (names case-insensitive, numbers as VOTable
numbers, a repeated single-valued parameter is an error). The spectrum is
named by ``ID`` (a product id or publisher DID) or uploaded; the options map
onto :class:`classify.core.ClassifyOptions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from classify.core import ZMAX_LIMIT, ClassifyOptions
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import ParamSet, parse_float, parse_int
from vo_archive.vo.dali.responseformat import parse_response_format

#: Most matches a caller may ask for.
MAX_TOP = 100
#: Redshifts the classifier accepts.
Z_LIMITS = (-0.01, ZMAX_LIMIT)
_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.+\-]{0,19}\Z")


class ResponseFormat(Enum):
    """How a classification is written."""

    VOTABLE = "application/x-votable+xml"
    JSON = "application/json"


JSON_FORMATS = frozenset({"json", "application/json"})


@dataclass(frozen=True, slots=True)
class ClassifyRequest:
    """A parsed classification request."""

    ident: str | None
    """Product id or publisher DID of an archived spectrum (None: uploaded)."""
    options: ClassifyOptions
    response: ResponseFormat


def _float(params: ParamSet, name: str) -> float | None:
    raw = params.single(name)
    if raw is None or raw.strip() == "":
        return None
    return parse_float(raw, name)


def _redshift(params: ParamSet, name: str) -> float | None:
    z = _float(params, name)
    if z is not None and not Z_LIMITS[0] <= z <= Z_LIMITS[1]:
        raise UsageFault(f"parameter {name}: {z} is outside {Z_LIMITS[0]} to "
                         f"{Z_LIMITS[1]}", name)
    return z


def parse_types(raw: str | None) -> tuple[str, ...] | None:
    """Parse TYPES: names separated by commas or spaces (``Ia,Ib,Ic``)."""
    if raw is None or raw.strip() == "":
        return None
    names = [t for t in re.split(r"[\s,]+", raw.strip()) if t]
    for t in names:
        if not _TYPE_NAME.match(t):
            raise UsageFault(f"parameter TYPES: {t!r} is not a type name", "TYPES")
    return tuple(dict.fromkeys(names))


def parse_options(params: ParamSet) -> ClassifyOptions:
    """Return the classifier options of a request.

    Raises
    ------
    UsageFault
        For a value that is not a number, out of range, or ranges upside down.
    """
    defaults = ClassifyOptions()
    zmin = _redshift(params, "ZMIN")
    zmax = _redshift(params, "ZMAX")
    z = _redshift(params, "Z")
    zmin = defaults.zmin if zmin is None else zmin
    zmax = defaults.zmax if zmax is None else zmax
    if zmin >= zmax:
        raise UsageFault(f"ZMIN={zmin} is not below ZMAX={zmax}", "ZMIN")
    agemin, agemax = _float(params, "AGEMIN"), _float(params, "AGEMAX")
    if agemin is not None and agemax is not None and agemin > agemax:
        raise UsageFault(f"AGEMIN={agemin} is above AGEMAX={agemax}", "AGEMIN")
    wmin, wmax = _float(params, "WMIN"), _float(params, "WMAX")
    for name, w in (("WMIN", wmin), ("WMAX", wmax)):
        if w is not None and not 1000.0 <= w <= 30000.0:
            raise UsageFault(f"parameter {name}: {w} Å is not an optical or "
                             "near-infrared wavelength (1000-30000 Å)", name)
    if wmin is not None and wmax is not None and wmin >= wmax:
        raise UsageFault(f"WMIN={wmin} is not below WMAX={wmax}", "WMIN")
    rlap = _float(params, "RLAPMIN")
    if rlap is not None and not 0.0 <= rlap <= 100.0:
        raise UsageFault(f"parameter RLAPMIN: {rlap} is outside 0 to 100", "RLAPMIN")
    raw_top = params.single("TOP")
    top = defaults.top if raw_top is None or not raw_top.strip() else \
        parse_int(raw_top, "TOP")
    if not 1 <= top <= MAX_TOP:
        raise UsageFault(f"parameter TOP: {top} is outside 1 to {MAX_TOP}", "TOP")
    try:
        return ClassifyOptions(
            zmin=zmin, zmax=zmax, z=z, agemin=agemin, agemax=agemax,
            types=parse_types(params.single("TYPES")), wmin=wmin, wmax=wmax,
            rlap_min=defaults.rlap_min if rlap is None else rlap, top=top)
    except ValueError as exc:  # the classifier's own checks of the options
        raise UsageFault(f"options: {exc}") from exc


def parse_format(params: ParamSet) -> ResponseFormat:
    """Return RESPONSEFORMAT: a VOTable (default) or JSON."""
    fmt = parse_response_format(params)
    if fmt == "votable":
        return ResponseFormat.VOTABLE
    if fmt.strip().lower() in JSON_FORMATS:
        return ResponseFormat.JSON
    raise UsageFault(f"parameter RESPONSEFORMAT={fmt!r} is not supported; use "
                     "votable or json", "RESPONSEFORMAT")


def parse_classify(params: ParamSet, uploaded: bool) -> ClassifyRequest:
    """Return the request: which spectrum, the options, the response format.

    Parameters
    ----------
    params
        The request's parameters.
    uploaded
        Whether the request carries a spectrum of its own.

    Raises
    ------
    UsageFault
        With neither or both of an ID and an upload, or a bad option.
    """
    ident = params.single("ID")
    ident = ident.strip() if ident is not None and ident.strip() else None
    response = parse_format(params)
    if ident is None and not uploaded:
        raise UsageFault("give a spectrum: ID (a product id or dataset identifier) "
                         "or an uploaded file", "ID")
    if ident is not None and uploaded:
        raise UsageFault("give either ID or an uploaded spectrum, not both", "ID")
    return ClassifyRequest(ident, parse_options(params), response)
