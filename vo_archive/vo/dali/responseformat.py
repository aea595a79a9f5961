"""RESPONSEFORMAT for the DAL services that answer in VOTable only (DALI 1.1 §3.4.3)."""

from __future__ import annotations

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import ParamSet

#: RESPONSEFORMAT values meaning a TABLEDATA VOTable.
VOTABLE_FORMATS = frozenset({
    "votable", "application/x-votable+xml", "text/xml", "votable/td",
    "application/x-votable+xml;serialization=tabledata",
})


def parse_response_format(params: ParamSet) -> str:
    """Return RESPONSEFORMAT: ``votable`` for every VOTable alias, else as given."""
    value = params.single("RESPONSEFORMAT")
    if value is None or value.strip() == "" or \
            value.strip().replace(" ", "").lower() in VOTABLE_FORMATS:
        return "votable"
    return value


def require_votable(response_format: str) -> None:
    """Refuse any RESPONSEFORMAT but VOTable (DALI 1.1 §3.4.3: S error).

    Raises
    ------
    UsageFault
        For any other format.
    """
    if response_format != "votable":
        raise UsageFault(f"parameter RESPONSEFORMAT={response_format!r} is not "
                         "supported; use votable", "RESPONSEFORMAT")
