"""Request parameters as DALI 1.1 defines them.

Names are case-insensitive and values keep their case (DALI §3.1); GET and POST
(urlencoded or multipart) are the same (§2.2); a repeated single-valued
parameter is an error (§3.2); numbers parse as VOTable numbers (``1e-05``,
``+1``, ``NaN``, ``Inf``) (§3.3.1). Parsers never see Flask: the routes hand
them a :class:`ParamSet`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from vo_archive.vo.dali.errors import UsageFault

#: Longest parameter value accepted (a polygon of many vertices fits easily).
MAX_VALUE_LENGTH = 100_000
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")
_SPECIAL = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
            "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}


class ParamSet:
    """Case-insensitive, multi-valued request parameters."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in items:
            if len(value) > MAX_VALUE_LENGTH:
                raise UsageFault(
                    f"parameter {name} is longer than {MAX_VALUE_LENGTH} characters",
                    name,
                )
            if "\x00" in value:
                raise UsageFault(f"parameter {name} contains a NUL character", name)
            self._values.setdefault(name.upper(), []).append(value)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str | list[str]]) -> ParamSet:
        """Build from a plain mapping (tests, internal calls)."""
        items: list[tuple[str, str]] = []
        for k, v in mapping.items():
            items.extend((k, x) for x in ([v] if isinstance(v, str) else v))
        return cls(items)

    def __contains__(self, name: str) -> bool:
        """Return whether parameter ``name`` (in any case) is present."""
        return name.upper() in self._values

    def names(self) -> list[str]:
        """Return the (upper-cased) names present."""
        return list(self._values)

    def all(self, name: str) -> list[str]:
        """Return every value of a parameter (possibly none)."""
        return list(self._values.get(name.upper(), []))

    def single(self, name: str, default: str | None = None) -> str | None:
        """Return the one value of a single-valued parameter.

        Raises
        ------
        UsageFault
            If the parameter is given more than once.
        """
        values = self._values.get(name.upper())
        if not values:
            return default
        if len(values) > 1:
            raise UsageFault(f"parameter {name} may be given only once", name)
        return values[0]

    def required(self, name: str) -> str:
        """Return the value of a mandatory single-valued parameter."""
        value = self.single(name)
        if value is None or value.strip() == "":
            raise UsageFault(f"parameter {name} is required", name)
        return value

    def items(self) -> list[tuple[str, str]]:
        """Return every (name, value) pair, names upper-cased."""
        return [(k, v) for k, vs in self._values.items() for v in vs]


def parse_float(text: str, name: str, allow_special: bool = False) -> float:
    """Parse a VOTable/DALI floating-point number.

    Raises
    ------
    UsageFault
        If ``text`` is not a number (or is NaN/Inf where they are not allowed).
    """
    s = text.strip()
    low = s.lower()
    if low in _SPECIAL:
        if allow_special:
            return _SPECIAL[low]
        raise UsageFault(f"parameter {name}: {text!r} is not a finite number", name)
    if not _FLOAT.match(s):
        raise UsageFault(f"parameter {name}: {text!r} is not a number", name)
    value = float(s)
    if not math.isfinite(value):
        raise UsageFault(f"parameter {name}: {text!r} is out of range", name)
    return value


def parse_int(text: str, name: str) -> int:
    """Parse an integer parameter value."""
    s = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,18}", s):
        raise UsageFault(f"parameter {name}: {text!r} is not an integer", name)
    return int(s)


def parse_bool(text: str, name: str) -> bool:
    """Parse a DALI boolean (``true``/``false``/``1``/``0``)."""
    low = text.strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise UsageFault(f"parameter {name}: {text!r} is not a boolean", name)


def parse_floats(text: str, name: str, allow_special: bool = False,
                 sep: str | None = None) -> list[float]:
    """Parse a list of numbers separated by white space (or ``sep``)."""
    parts = text.split(sep) if sep else text.split()
    return [parse_float(p, name, allow_special) for p in parts if p.strip() != ""]


def parse_timestamp(text: str, name: str) -> datetime:
    """Parse a DALI timestamp ``YYYY-MM-DD['T'hh:mm:ss[.SSS]]`` (DALI §3.3.3)."""
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1]
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
                "%Y-%m-%d", "%Y-%m", "%Y"):
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            continue
    raise UsageFault(f"parameter {name}: {text!r} is not an ISO 8601 timestamp", name)


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval; infinite ends are unbounded (DALI §3.3.4 interval)."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        """Refuse an interval whose lower end is above its upper end."""
        if self.lo > self.hi:
            raise UsageFault(f"interval {self.lo} {self.hi} has its lower end above "
                             "its upper end")


def parse_interval(text: str, name: str) -> Interval:
    """Parse ``lo hi`` (``-Inf``/``+Inf`` allowed) or a single value as an interval."""
    values = parse_floats(text, name, allow_special=True)
    if len(values) == 1 and math.isfinite(values[0]):
        return Interval(values[0], values[0])
    if len(values) != 2 or any(math.isnan(v) for v in values):
        raise UsageFault(f"parameter {name}: {text!r} is not an interval 'lo hi'", name)
    if values[0] > values[1]:
        raise UsageFault(
            f"parameter {name}: lower end {values[0]} is above upper end {values[1]}",
            name,
        )
    return Interval(values[0], values[1])


def parse_maxrec(params: ParamSet, default: int, hard: int) -> int:
    """Return MAXREC: the default when absent, at most the hard limit (DALI §3.4.4)."""
    raw = params.single("MAXREC")
    if raw is None or raw.strip() == "":
        return default
    value = parse_int(raw, "MAXREC")
    if value < 0:
        raise UsageFault("parameter MAXREC must not be negative", "MAXREC")
    return min(value, hard)
