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
