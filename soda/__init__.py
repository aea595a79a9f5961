"""SODA 1.0 sync cutouts of images and 1D spectra (``/soda/sync``)."""

from __future__ import annotations

from soda.routes import bp

__all__ = ["bp"]
