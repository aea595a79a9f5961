"""SSA 1.1 request parameters (SSA 1.1 §4.1, §8.7): wire names to typed queries."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from vo_archive.ingest.facts import mjd_of
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import (
    Interval,
    ParamSet,
    parse_float,
    parse_maxrec,
    parse_timestamp,
)

#: SIZE (diameter, degrees) when POS comes without it (SSA 1.1 §4.1.1.2: S default).
DEFAULT_SIZE = 0.1
FRAMES = ("ICRS", "FK5", "J2000")


class Request(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """The SSA operations served."""

    QUERY = "queryData"
    GET = "getData"


class SpectrumFormat(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """Formats a spectrum is delivered in."""

    FITS = "application/fits"
    VOTABLE = "application/x-votable+xml"


#: FORMAT keywords and MIME types (SSA 1.1 §4.1.1.5) -> formats served.
_FORMAT_WORDS: dict[str, frozenset[SpectrumFormat]] = {
    "all": frozenset(SpectrumFormat),
    "compliant": frozenset({SpectrumFormat.VOTABLE}),
    "votable": frozenset({SpectrumFormat.VOTABLE}),
    "xml": frozenset({SpectrumFormat.VOTABLE}),
    "application/x-votable+xml": frozenset({SpectrumFormat.VOTABLE}),
    "text/xml": frozenset({SpectrumFormat.VOTABLE}),
    "native": frozenset({SpectrumFormat.FITS}),
    "fits": frozenset({SpectrumFormat.FITS}),
    "application/fits": frozenset({SpectrumFormat.FITS}),
    "image/fits": frozenset({SpectrumFormat.FITS}),
    "graphic": frozenset(),
}
_MIME = re.compile(r"[a-z0-9.+-]+/[a-z0-9.+;=-]+\Z")


@dataclass(frozen=True, slots=True)
class SSAQuery:
    """A parsed queryData request; None or empty tuples do not constrain."""

    ra: float | None = None
    dec: float | None = None
    size: float = DEFAULT_SIZE
    band: tuple[Interval, ...] = ()
    time: tuple[Interval, ...] = ()
    formats: frozenset[SpectrumFormat] = frozenset(SpectrumFormat)
    metadata: bool = False
    target: str | None = None
    target_class: str | None = None
    pubdid: tuple[str, ...] = ()
    collection: tuple[str, ...] = ()
    specrp: float | None = None
    snr: float | None = None
    redshift: Interval | None = None
    maxrec: int = 1000


@dataclass(frozen=True, slots=True)
class GetData:
    """A parsed getData request."""

    pubdid: str
    format: SpectrumFormat


def parse_request(params: ParamSet) -> Request:
    """Return REQUEST; missing means queryData (SSA 1.1 §8.8.2: S lenient)."""
    value = (params.single("REQUEST") or "queryData").strip()
    for r in Request:
        if value.lower() == r.value.lower():
            return r
    raise UsageFault(f"parameter REQUEST={value!r} is not queryData or getData",
                     "REQUEST")


def parse_formats(params: ParamSet) -> tuple[frozenset[SpectrumFormat], bool]:
    """Return the formats asked for and whether FORMAT=METADATA."""
    values = [v.strip().lower() for raw in params.all("FORMAT") for v in raw.split(",")
              if v.strip()]
    if not values:
        return frozenset(SpectrumFormat), False
    if "metadata" in values:
        return frozenset(), True
    out: set[SpectrumFormat] = set()
    for v in values:
        if v in _FORMAT_WORDS:
            out |= _FORMAT_WORDS[v]
        elif v.startswith("application/x-votable+xml"):
            out.add(SpectrumFormat.VOTABLE)
        elif not _MIME.match(v):
            raise UsageFault(f"parameter FORMAT: {v!r} is neither a format keyword "
                             "nor a MIME type", "FORMAT")
    return frozenset(out), False


def _strip_frame(text: str, name: str, frames: tuple[str, ...]) -> str:
    value, _, frame = text.partition(";")
    if frame and frame.strip().upper() not in frames:
        raise UsageFault(f"parameter {name}: frame {frame.strip()!r} is not one of "
                         f"{', '.join(frames)}", name)
    return value


def parse_pos(text: str) -> tuple[float, float]:
    """Parse ``ra,dec[;frame]`` (SSA 1.1 §4.1.1.1)."""
    value = _strip_frame(text, "POS", FRAMES)
    parts = value.split(",")
    if len(parts) != 2:
        raise UsageFault(f"parameter POS: {text!r} is not 'ra,dec'", "POS")
    ra, dec = parse_float(parts[0], "POS"), parse_float(parts[1], "POS")
    if not 0.0 <= ra <= 360.0 or not -90.0 <= dec <= 90.0:
        raise UsageFault(f"parameter POS: ({ra:g}, {dec:g}) is not a position on the "
                         "sky", "POS")
    return ra % 360.0, dec


def _range_list(text: str, name: str, parse_one: type[float] | None = None,
                qualifiers: tuple[str, ...] = ()) -> tuple[Interval, ...]:
    """Parse an SSA range list ``a/b,c/,/d,e`` into closed intervals."""
    value = _strip_frame(text, name, qualifiers) if qualifiers else text
    out = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        if "/" in item:
            lo_s, _, hi_s = item.partition("/")
            lo = parse_float(lo_s, name) if lo_s.strip() else -math.inf
            hi = parse_float(hi_s, name) if hi_s.strip() else math.inf
        else:
            lo = hi = parse_float(item, name)
        if lo > hi:
            raise UsageFault(f"parameter {name}: {item!r} has its lower end above its "
                             "upper end", name)
        out.append(Interval(lo, hi))
    if not out:
        raise UsageFault(f"parameter {name}: {text!r} holds no range", name)
    return tuple(out)


def parse_band(text: str) -> tuple[Interval, ...]:
    """Parse BAND: wavelengths in metres, ``lo/hi`` lists (SSA 1.1 §4.1.1.3)."""
    if re.search(r"[A-Za-z]", text.split(";")[0].replace("e", "").replace("E", "")):
        raise UsageFault(f"parameter BAND: {text!r} is not a wavelength range in "
                         "metres (band names are not supported)", "BAND")
    bands = _range_list(text, "BAND", qualifiers=("SOURCE", "OBSERVER"))
    for iv in bands:
        if (math.isfinite(iv.lo) and iv.lo <= 0) or iv.hi <= 0:
            raise UsageFault("parameter BAND: wavelengths must be positive metres",
                             "BAND")
    return bands


def parse_time(text: str) -> tuple[Interval, ...]:
    """Parse TIME: ISO 8601 ranges ``start/end`` in UTC, as MJD intervals (§4.1.1.4)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        lo_s, sep, hi_s = item.partition("/")
        lo = mjd_of(parse_timestamp(lo_s, "TIME")) if lo_s.strip() else -math.inf
        if sep:
            hi = mjd_of(parse_timestamp(hi_s, "TIME")) if hi_s.strip() else math.inf
        else:  # a date alone is that whole day (or month, or year)
            hi = lo + {4: 365.0, 7: 28.0, 10: 1.0}.get(len(lo_s.strip()), 0.0)
        if lo > hi:
            raise UsageFault(f"parameter TIME: {item!r} ends before it starts", "TIME")
        out.append(Interval(lo, hi))
    if not out:
        raise UsageFault(f"parameter TIME: {text!r} holds no range", "TIME")
    return tuple(out)


def _positive(params: ParamSet, name: str) -> float | None:
    raw = params.single(name)
    if raw is None or not raw.strip():
        return None
    value = parse_float(raw, name)
    if value < 0:
        raise UsageFault(f"parameter {name} must not be negative", name)
    return value


def parse_query(params: ParamSet, maxrec_default: int, maxrec_hard: int) -> SSAQuery:
    """Parse a queryData request.

    Raises
    ------
    UsageFault
        Naming the parameter whose value is malformed or out of range.
    """
    formats, metadata = parse_formats(params)
    if metadata:  # FORMAT=METADATA ignores every other parameter (SSA 1.1 §6)
        return SSAQuery(metadata=True, formats=formats)
    pos = params.single("POS")
    ra = dec = None
    if pos is not None and pos.strip():
        ra, dec = parse_pos(pos)
    size = _positive(params, "SIZE")
    if size is not None and size > 360.0:
        raise UsageFault(f"parameter SIZE={size:g} is above 360 degrees", "SIZE")
    band = parse_band(params.single("BAND") or "") if (params.single("BAND") or
                                                      "").strip() else ()
    time = parse_time(params.single("TIME") or "") if (params.single("TIME") or
                                                      "").strip() else ()
    redshift_raw = params.single("REDSHIFT")
    redshift = _range_list(redshift_raw, "REDSHIFT")[0] \
        if redshift_raw and redshift_raw.strip() else None
    return SSAQuery(
        ra=ra, dec=dec, size=DEFAULT_SIZE if size is None else size, band=band,
        time=time, formats=formats, target=(params.single("TARGETNAME") or "").strip()
        or None, target_class=(params.single("TARGETCLASS") or "").strip() or None,
        pubdid=tuple(v.strip() for v in params.all("PUBDID") if v.strip()),
        collection=tuple(v.strip() for v in params.all("COLLECTION") if v.strip()),
        specrp=_positive(params, "SPECRP"), snr=_positive(params, "SNR"),
        redshift=redshift, maxrec=parse_maxrec(params, maxrec_default, maxrec_hard),
    )


def parse_getdata(params: ParamSet) -> GetData:
    """Parse a getData request: PUBDID and FORMAT (SSA 1.1 §7)."""
    pubdid = params.required("PUBDID").strip()
    formats, metadata = parse_formats(params)
    if metadata or len(formats) != 1:
        fmt = SpectrumFormat.VOTABLE if SpectrumFormat.VOTABLE in formats else None
        if fmt is None:
            raise UsageFault("parameter FORMAT: getData delivers "
                             "application/x-votable+xml or application/fits", "FORMAT")
        return GetData(pubdid, fmt)
    return GetData(pubdid, next(iter(formats)))
