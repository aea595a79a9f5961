"""TAP 1.1 with ADQL 2.1 over the PESSTO archive: sync, async (UWS), VOSI, examples."""

from __future__ import annotations

from tap.routes import bp

__all__ = ["bp"]
