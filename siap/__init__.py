"""Simple Image Access.

SIA 1.0 at ``/siap`` (this package's ``bp``) and SIA 2.0 at ``/sia2``
(:mod:`siap.sia2`).
"""

from __future__ import annotations

from siap.routes import bp

__all__ = ["bp"]
