"""Simple Cone Search 1.03 over the archive's products (``/scs``)."""

from __future__ import annotations

from conesearch.routes import bp

__all__ = ["bp"]
