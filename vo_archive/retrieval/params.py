"""Selection parameters of run and object downloads: wire -> frozen dataclass.

Every parameter may be repeated (``LEVEL=final&LEVEL=intermediate``) or carry a
comma-separated list (``LEVEL=final,intermediate``); values of one parameter are
OR-ed, different parameters AND-ed. Names are case-insensitive (DALI 1.1 §3.1),
and so are the values of closed vocabularies. Nothing here knows Flask: routes
and the CLI hand in a :class:`~vo_archive.vo.dali.params.ParamSet`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum

from vo_archive.ingest.classify import (
    PRODUCT_TYPES,
    RULES,
    Category,
    Instrument,
    Level,
    Mode,
)
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import ParamSet, parse_float, parse_int

#: Product types the classifier can give (FILETYPE digits 4-5 and file-name rules).
KNOWN_PRODUCT_TYPES: frozenset[str] = frozenset(
    [name for name, _ in PRODUCT_TYPES.values()]
    + [r.product_type for r in RULES if r.product_type]
)

#: Most products one explicit PRODUCT list may name.
MAX_EXPLICIT = 10_000
#: Default and largest search radius around an object's position (arcsec).
DEFAULT_RADIUS_ARCSEC = 10.0
MAX_RADIUS_ARCSEC = 3600.0

_PRODUCT_ITEM = re.compile(r"(\d{1,18})(?:[:/]v?(\d{1,9}))?\Z")


class ArchiveFormat(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """Container of a bulk download."""

    TAR = "tar"
    ZIP = "zip"


class VersionChoice(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """Which versions of each selected product to deliver."""

    CURRENT = "current"
    ALL = "all"
    NUMBER = "number"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which products (and versions) of a run or an object to deliver.

    Empty tuples mean "no restriction". ``products`` pairs a product id with a
    version number (None: the version ``version`` chooses).
    """

    levels: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    product_types: tuple[str, ...] = ()
    nights: tuple[date, ...] = ()
    runs: tuple[str, ...] = ()
    products: tuple[tuple[int, int | None], ...] = ()
    version: VersionChoice = VersionChoice.CURRENT
    version_no: int | None = None

    def query_items(self) -> list[tuple[str, str]]:
        """Return the selection as URL parameters (the inverse of parsing)."""
        items: list[tuple[str, str]] = []
        for name, values in (("level", self.levels), ("category", self.categories),
                             ("instrument", self.instruments), ("mode", self.modes),
                             ("type", self.product_types), ("run", self.runs)):
            items += [(name, v) for v in values]
        items += [("night", n.isoformat()) for n in self.nights]
        items += [("product", f"{p}:{v}" if v else str(p)) for p, v in self.products]
        if self.version is VersionChoice.ALL:
            items.append(("version", "all"))
        elif self.version is VersionChoice.NUMBER:
            items.append(("version", str(self.version_no)))
        return items


@dataclass(frozen=True, slots=True)
class ObjectSearch:
    """How to find an object's products: by name/alias and within a radius."""

    name: str
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC


@dataclass(frozen=True, slots=True)
class DownloadOptions:
    """The container of a bulk download."""

    format: ArchiveFormat = ArchiveFormat.TAR
    selection: Selection = field(default_factory=Selection)


def _values(params: ParamSet, *names: str) -> list[str]:
    out: list[str] = []
    for name in names:
        for raw in params.all(name):
            out += [v.strip() for v in raw.split(",") if v.strip()]
    return out


def _enum_values(params: ParamSet, name: str, enum: type[Enum],
                 aliases: tuple[str, ...] = ()) -> tuple[str, ...]:
    allowed = {str(m.value).lower(): str(m.value) for m in enum}
    out: list[str] = []
    for v in _values(params, name, *aliases):
        key = v.lower()
        if key not in allowed:
            raise UsageFault(
                f"parameter {name}: {v!r} is not one of {', '.join(allowed.values())}",
                name,
            )
        if allowed[key] not in out:
            out.append(allowed[key])
    return tuple(out)


def parse_night(text: str, name: str = "NIGHT") -> date:
    """Parse a night as ``YYYY-MM-DD`` or the pipeline's ``YYYYMMDD``."""
    s = text.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    raise UsageFault(f"parameter {name}: {text!r} is not a night (YYYY-MM-DD or "
                     "YYYYMMDD)", name)


def parse_selection(params: ParamSet) -> Selection:
    """Read the product selection from request parameters.

    Parameters: ``LEVEL`` (raw, intermediate, final), ``CATEGORY`` (calib,
    science), ``INSTRUMENT`` (EFOSC, SOFI), ``MODE`` (imaging, spectroscopy),
    ``TYPE`` or ``PRODUCT_TYPE``, ``NIGHT``, ``RUN``, ``PRODUCT`` (``ID`` or
    ``ID:VERSION``) and ``VERSION`` (``current``, ``all`` or a number).

    Raises
    ------
    UsageFault
        If a value is not allowed; the message names the parameter.
    """
    types: list[str] = []
    for v in _values(params, "TYPE", "PRODUCT_TYPE"):
        t = v.lower()
        if t not in KNOWN_PRODUCT_TYPES:
            raise UsageFault(
                f"parameter TYPE: {v!r} is not a product type; known types: "
                + ", ".join(sorted(KNOWN_PRODUCT_TYPES)), "TYPE")
        if t not in types:
            types.append(t)
    nights = tuple(dict.fromkeys(parse_night(v) for v in _values(params, "NIGHT")))
    products: list[tuple[int, int | None]] = []
    for v in _values(params, "PRODUCT", "ID"):
        m = _PRODUCT_ITEM.match(v)
        if not m:
            raise UsageFault(f"parameter PRODUCT: {v!r} is not a product id "
                             "(ID or ID:VERSION)", "PRODUCT")
        item = (int(m.group(1)), int(m.group(2)) if m.group(2) else None)
        if item[1] == 0:
            raise UsageFault(f"parameter PRODUCT: {v!r}: versions count from 1",
                             "PRODUCT")
        if item not in products:
            products.append(item)
    if len(products) > MAX_EXPLICIT:
        raise UsageFault(f"parameter PRODUCT: at most {MAX_EXPLICIT} products per "
                         "request", "PRODUCT")
    version, version_no = VersionChoice.CURRENT, None
    raw_version = params.single("VERSION")
    if raw_version is not None and raw_version.strip():
        low = raw_version.strip().lower()
        if low in ("current", "all"):
            version = VersionChoice(low)
        else:
            version_no = parse_int(raw_version, "VERSION")
            if version_no < 1:
                raise UsageFault("parameter VERSION: versions count from 1", "VERSION")
            version = VersionChoice.NUMBER
    runs = tuple(dict.fromkeys(_values(params, "RUN")))
    return Selection(
        levels=_enum_values(params, "LEVEL", Level),
        categories=_enum_values(params, "CATEGORY", Category),
        instruments=_enum_values(params, "INSTRUMENT", Instrument),
        modes=_enum_values(params, "MODE", Mode),
        product_types=tuple(types),
        nights=nights,
        runs=runs,
        products=tuple(products),
        version=version,
        version_no=version_no,
    )


def parse_format(params: ParamSet) -> ArchiveFormat:
    """Read the container format (``FORMAT=tar`` or ``zip``; tar by default)."""
    raw = params.single("FORMAT")
    if raw is None or not raw.strip():
        return ArchiveFormat.TAR
    low = raw.strip().lower()
    if low in ("tar", "application/x-tar"):
        return ArchiveFormat.TAR
    if low in ("zip", "application/zip"):
        return ArchiveFormat.ZIP
    raise UsageFault(f"parameter FORMAT: {raw!r} is not tar or zip", "FORMAT")


def parse_radius(params: ParamSet) -> float:
    """Read the search radius in arcsec (``RADIUS``; 0 disables the position search)."""
    raw = params.single("RADIUS")
    if raw is None or not raw.strip():
        return DEFAULT_RADIUS_ARCSEC
    value = parse_float(raw, "RADIUS")
    if value < 0 or value > MAX_RADIUS_ARCSEC:
        raise UsageFault(f"parameter RADIUS: {raw!r} must be between 0 and "
                         f"{MAX_RADIUS_ARCSEC:g} arcsec", "RADIUS")
    return value


def check_known(params: ParamSet, allowed: frozenset[str]) -> None:
    """Reject parameters this resource does not know (a typo should not select all).

    Raises
    ------
    UsageFault
        Naming the first unknown parameter.
    """
    for name in params.names():
        if name not in allowed:
            raise UsageFault(f"unknown parameter {name}; known: "
                             + ", ".join(sorted(allowed)), name)


SELECTION_PARAMS = frozenset({"LEVEL", "CATEGORY", "INSTRUMENT", "MODE", "TYPE",
                              "PRODUCT_TYPE", "NIGHT", "RUN", "PRODUCT", "ID",
                              "VERSION"})
