"""Simple Image Access 2.0 over the PESSTO images (``/sia2/query``)."""

from __future__ import annotations

from siap.sia2.routes import bp

__all__ = ["bp"]
