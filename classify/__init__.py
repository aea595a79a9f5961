"""Spectral classification of supernovae by template cross-correlation (SNID's method).

The numerical core has no Flask and no database: :func:`read_spectrum` reads a
spectrum, :func:`load_library` the template library (once per process) and
:func:`classify_spectrum` answers with a :class:`Verdict`.
"""

from __future__ import annotations

from classify.core import (
    CLASSIFIER_VERSION,
    ClassifyOptions,
    Match,
    Verdict,
    classify_spectrum,
    verdict_to_dict,
)
from classify.spectrum import Spectrum, SpectrumError, read_spectrum
from classify.templates import TemplateError, TemplateLibrary, load_library

__all__ = [
    "CLASSIFIER_VERSION",
    "ClassifyOptions",
    "Match",
    "Spectrum",
    "SpectrumError",
    "TemplateError",
    "TemplateLibrary",
    "Verdict",
    "classify_spectrum",
    "load_library",
    "read_spectrum",
    "verdict_to_dict",
]


def __getattr__(name: str) -> object:
    """Return ``bp``, the ``/classify`` blueprint, imported only when asked for.

    The services (:mod:`classify.routes`, :mod:`classify.async_routes`,
    :mod:`classify.jobs`, :mod:`classify.storage`) need Flask and the database;
    importing the numerical core does not load them.
    """
    if name == "bp":
        from classify.routes import bp

        return bp
    raise AttributeError(f"module 'classify' has no attribute {name!r}")
