"""VOSI capabilities of the SODA service (SODA 1.0 §2.5: no registry extension)."""

from __future__ import annotations

from vo_archive.vo.soda_descriptor import SODA_PATH, SODA_STANDARD
from vo_archive.vo.vosi import Capability, vosi_capabilities


def capabilities() -> list[Capability]:
    """Return the SODA {sync} capability and the VOSI ones."""
    return [Capability(SODA_STANDARD, SODA_PATH, None, "1.0"),
            *vosi_capabilities("/soda")]
