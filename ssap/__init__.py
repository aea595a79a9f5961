"""Simple Spectral Access 1.1 over the PESSTO 1D spectra (``/ssap``)."""

from __future__ import annotations

from ssap.routes import bp

__all__ = ["bp"]
