"""Classification of PESSTO files into the archive's data model.

The pipeline writes a five-digit ``FILETYPE`` into every reduced file
(``../shared/pessto-data-model.md`` §3): digit 1 instrument and mode, digit 2
calibration or science, digit 3 intermediate or final, digits 4–5 the product
type. The file name then tells the kind of product (§4), which refines the
description, marks calibrations written with a science digit (arcs, standards)
and says whether the product goes to ESO Phase 3. Raw ESO frames carry no
FILETYPE and are classified from their ``ESO DPR`` keywords.

``RULES`` is the table the README prints; keep the two in step by generating the
README table from it (``python -m vo_archive.ingest.classify``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from vo_archive.ingest.fitsfile import HeaderValue


class Instrument(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """Instruments of the ESO NTT used by PESSTO."""

    EFOSC = "EFOSC"
    SOFI = "SOFI"


class Mode(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """Observing mode."""

    IMAGING = "imaging"
    SPECTROSCOPY = "spectroscopy"


class Category(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """Calibration or science product."""

    CALIB = "calib"
    SCIENCE = "science"


class Level(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """Processing level."""

    RAW = "raw"
    INTERMEDIATE = "intermediate"
    FINAL = "final"


class Phase3(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """ESO Phase 3 destination: shipped, flagged in the survey database, or not."""

    YES = "yes"
    FLAGGED = "flagged"
    NO = "no"


class ClassificationError(Exception):
    """A file that cannot be placed in the data model; the message says why."""


#: FILETYPE digit 1 -> instrument and mode
MODE_DIGIT: dict[str, tuple[Instrument, Mode]] = {
    "1": (Instrument.EFOSC, Mode.IMAGING),
    "2": (Instrument.EFOSC, Mode.SPECTROSCOPY),
    "3": (Instrument.SOFI, Mode.IMAGING),
    "4": (Instrument.SOFI, Mode.SPECTROSCOPY),
}

#: FILETYPE digits 4-5 -> product type and its description
PRODUCT_TYPES: dict[str, tuple[str, str]] = {
    "01": ("bias", "bias"),
    "02": ("flat", "flat"),
    "03": ("normalised_flat", "normalised flat"),
    "04": ("prereduced", "pre-reduced frame"),
    "05": ("fringe_corrected", "fringe-corrected image"),
    "06": ("wavecal_2d", "wavelength-calibrated 2D spectrum"),
    "07": ("extracted_1d", "extracted 1D spectrum"),
    "08": ("fluxcal_1d", "1D flux-calibrated spectrum"),
    "09": ("fluxcal_2d", "2D flux-calibrated spectrum"),
    "10": ("telluric_corrected_1d", "1D telluric-corrected spectrum"),
    "11": ("telluric_model", "telluric-absorption spectrum"),
    "12": ("sensitivity", "sensitivity function"),
    "13": ("illumination", "illumination correction"),
    "14": ("weight_map", "weight map"),
    "15": ("sky_subtracted", "sky-subtracted frame"),
    "16": ("merged", "combined (merged) frame"),
    "17": ("sky", "sky image"),
    "31": ("fringing", "fringing frame"),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the classification table.

    A rule applies to files whose FILETYPE mode digit is ``mode_digit`` and whose
    name matches ``pattern``; the first matching rule wins.
    """

    mode_digit: str
    pattern: str
    kind: str
    category: Category | None = None
    phase3: Phase3 = Phase3.NO
    prodcatg: str | None = None
    product_type: str | None = None

    def matches(self, filename: str) -> bool:
        """Whether the rule's file-name pattern matches ``filename``."""
        return re.search(self.pattern, filename) is not None


_C = Category.CALIB
RULES: tuple[Rule, ...] = (
    # EFOSC2 spectroscopy
    Rule("2", r"^bias_", "master bias"),
    Rule("2", r"^flat_", "master flat"),
    Rule("2", r"^nflat_", "normalised flat"),
    Rule("2", r"^arc_", "arc (pre-reduced)", _C, product_type="arc"),
    Rule("2", r"^atmo_", "telluric model", _C),
    Rule("2", r"^sens_", "sensitivity function", _C),
    Rule("2", r"_sb\.fits$", "Phase 3 1D spectrum", phase3=Phase3.YES,
         prodcatg="SCIENCE.SPECTRUM"),
    Rule("2", r"_si\.fits$", "Phase 3 2D spectrum", phase3=Phase3.YES,
         prodcatg="ANCILLARY.2DSPECTRUM"),
    Rule("2", r"_clean\.fits$", "standard star cleaned 1D spectrum", _C),
    Rule("2", r"_2df\.fits$", "2D flux-calibrated spectrum"),
    Rule("2", r"_e\.fits$", "1D flux-calibrated, telluric-corrected spectrum"),
    Rule("2", r"_f\.fits$", "1D flux-calibrated spectrum"),
    Rule("2", r"_ex\.fits$", "1D extracted spectrum"),
    Rule("2", r"^t", "2D wavelength-calibrated spectrum"),
    # EFOSC2 imaging
    Rule("1", r"^bias_", "master bias"),
    Rule("1", r"^flat_", "sky/dome flat"),
    Rule("1", r"^fringing_", "fringing frame"),
    Rule("1", r"^acq_", "acquisition image", phase3=Phase3.FLAGGED,
         prodcatg="SCIENCE.IMAGE", product_type="acquisition"),
    Rule("1", r"_fr\.fits$", "fringe-corrected image", phase3=Phase3.FLAGGED,
         prodcatg="SCIENCE.IMAGE"),
    Rule("1", r"", "reduced image", phase3=Phase3.FLAGGED, prodcatg="SCIENCE.IMAGE"),
    # SOFI spectroscopy
    Rule("4", r"^flat_", "flat"),
    Rule("4", r"^nflat_", "normalised flat"),
    Rule("4", r"^arc_", "arc (lamp on - off)", _C, product_type="arc"),
    Rule("4", r"^senstel_", "telluric/sensitivity standard", _C),
    Rule("4", r"^sens_", "flux-scaling standard", _C),
    Rule("4", r"_sb\.fits$", "Phase 3 1D spectrum", phase3=Phase3.YES,
         prodcatg="SCIENCE.SPECTRUM"),
    Rule("4", r"_si\.fits$", "Phase 3 2D spectrum", phase3=Phase3.YES,
         prodcatg="ANCILLARY.2DSPECTRUM"),
    Rule("4", r"_2df\.fits$", "2D flux-calibrated spectrum"),
    Rule("4", r"_sc\.fits$", "1D flux-scaled spectrum"),
    Rule("4", r"_f\.fits$", "1D telluric-corrected, flux-calibrated spectrum"),
    Rule("4", r"_ex\.fits$", "1D extracted spectrum"),
    Rule("4", r"_merge_", "merged 2D spectrum"),
    Rule("4", r"_\d_\d\.fits$", "pair-subtracted frame",
         product_type="pair_subtracted"),
    Rule("4", r"", "pre-reduced frame"),
    # SOFI imaging
    Rule("3", r"^flat_", "flat"),
    Rule("3", r"^illum_", "illumination correction"),
    Rule("3", r"^sky_", "sky image", _C),
    Rule("3", r"\.weight\.fits$", "weight map of a merged image", _C,
         phase3=Phase3.YES, prodcatg="ANCILLARY.WEIGHTMAP"),
    Rule("3", r"_merge_", "merged image", phase3=Phase3.YES, prodcatg="SCIENCE.IMAGE"),
    Rule("3", r"_sky\.fits$", "sky-subtracted dither"),
    Rule("3", r"^skyoff_", "off-source sky field"),
    Rule("3", r"^fastsub_", "quick sky subtraction (temporary)"),
    Rule("3", r"", "pre-reduced dither"),
)

#: Spectrophotometric standards observed by PESSTO (lower case, no spaces).
SPECPHOT_STANDARDS = frozenset({
    "ltt3218", "ltt3864", "ltt7987", "ltt1788", "ltt2415", "ltt1020", "ltt377",
    "ltt4364", "ltt6248", "ltt9239", "ltt9491", "eg274", "eg21", "feige110",
    "feige56", "gd71", "gd108", "gd50", "hr718", "hr1544", "hr3454", "hr4468",
    "hr5501", "hr7596", "hr9087", "hr7950", "cd-329927", "cd-34241", "bd+284211",
    "l745-46a", "g158-100", "g138-31", "g93-48", "hd49798", "ngc7293",
})
_HIP = re.compile(r"^hip\d{5,6}$", re.IGNORECASE)
_RMJD = re.compile(r"^(5[5-9]\d{3}|6[0-4]\d{3})$")
_RAW = re.compile(r"^(EFOSC|SOFI)\.\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\.fits$")
_EXT = re.compile(r"\.(fits|fit|fts)(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Classification:
    """Where a file sits in the data model."""

    instrument: Instrument
    mode: Mode
    category: Category
    level: Level
    product_type: str
    description: str
    phase3: Phase3
    prodcatg: str | None
    filetype: int | None
    product_key: str
    reduction_mjd: int | None


def normalise_name(name: str) -> str:
    """Return the comparison form of an object name (lower case, no separators)."""
    return re.sub(r"[\s_\-]+", "", name).lower()


_STANDARDS_NORMALISED = frozenset(normalise_name(s) for s in SPECPHOT_STANDARDS)


def is_standard_star(obj: str) -> bool:
    """Whether ``obj`` names a spectrophotometric or telluric standard."""
    norm = normalise_name(obj.split(".")[0])
    return norm in _STANDARDS_NORMALISED or bool(_HIP.match(norm))


def split_product_key(filename: str) -> tuple[str, int | None]:
    """Split a file name into its logical-product key and reduction MJD.

    The reduction MJD is the rightmost ``_``-separated five-digit token that looks
    like an MJD (55000–64999); re-reducing the same data changes only that token
    (data model §7), so the name without it identifies the logical product.
    """
    stem = _EXT.sub("", filename)
    tokens = stem.split("_")
    for i in range(len(tokens) - 1, 0, -1):
        if _RMJD.match(tokens[i]):
            return "_".join(tokens[:i] + tokens[i + 1 :]), int(tokens[i])
    return stem, None


def _text(header: dict[str, HeaderValue], *keys: str) -> str | None:
    for key in keys:
        value = header.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def instrument_of(header: dict[str, HeaderValue]) -> Instrument:
    """Return the instrument named by INSTRUME.

    Raises
    ------
    ClassificationError
        If INSTRUME is missing or names an instrument PESSTO does not use.
    """
    name = (_text(header, "INSTRUME") or "").upper()
    if name.startswith("EFOSC"):
        return Instrument.EFOSC
    if name.startswith("SOFI"):
        return Instrument.SOFI
    if not name:
        raise ClassificationError("no INSTRUME keyword")
    raise ClassificationError(f"unknown instrument INSTRUME={name!r}")


def _classify_raw(filename: str, header: dict[str, HeaderValue],
                  instrument: Instrument) -> Classification:
    tech = (_text(header, "ESO DPR TECH", "OBSTECH") or "").upper()
    catg = (_text(header, "ESO DPR CATG") or "").upper()
    dtype = (_text(header, "ESO DPR TYPE") or "").upper()
    if not tech or not catg:
        raise ClassificationError(
            "raw frame without ESO DPR TECH / ESO DPR CATG keywords"
        )
    mode = Mode.SPECTROSCOPY if "SPECTRUM" in tech else Mode.IMAGING
    category = Category.CALIB if catg == "CALIB" or dtype == "STD" else Category.SCIENCE
    return Classification(
        instrument=instrument,
        mode=mode,
        category=category,
        level=Level.RAW,
        product_type="raw",
        description=(
            f"raw {instrument.value} frame ({catg.lower()} {dtype.lower()})".strip()
        ),
        phase3=Phase3.NO,
        prodcatg=None,
        filetype=None,
        product_key=_EXT.sub("", filename),
        reduction_mjd=None,
    )


def classify(filename: str, header: dict[str, HeaderValue]) -> Classification:
    """Place a file in the data model from its name and primary header.

    Parameters
    ----------
    filename
        Base name of the file.
    header
        Primary-header values by keyword.

    Returns
    -------
    Classification
        Instrument, mode, category, level, type, description, Phase 3 destination.

    Raises
    ------
    ClassificationError
        If the file cannot be classified; the message gives the reason.
    """
    instrument = instrument_of(header)
    raw_ft = header.get("FILETYPE")
    if raw_ft is None:
        if _RAW.match(filename) or header.get("ESO DPR CATG") is not None:
            return _classify_raw(filename, header, instrument)
        raise ClassificationError("no FILETYPE keyword and not a raw ESO frame")
    code = str(raw_ft).strip()
    if not re.fullmatch(r"[1-4][12][12]\d\d", code):
        raise ClassificationError(f"FILETYPE={code!r} is not a PESSTO product code")
    ft_instrument, mode = MODE_DIGIT[code[0]]
    if ft_instrument is not instrument:
        raise ClassificationError(
            f"FILETYPE={code} is an {ft_instrument.value} code but "
            f"INSTRUME={header.get('INSTRUME')!r}"
        )
    if code[3:] not in PRODUCT_TYPES:
        raise ClassificationError(f"FILETYPE={code}: unknown product type {code[3:]}")
    product_type, type_description = PRODUCT_TYPES[code[3:]]
    category = Category.CALIB if code[1] == "1" else Category.SCIENCE
    level = Level.INTERMEDIATE if code[2] == "1" else Level.FINAL
    rule = next(
        (r for r in RULES if r.mode_digit == code[0] and r.matches(filename)), None
    )
    description = type_description
    phase3 = Phase3.NO
    prodcatg = _text(header, "PRODCATG")
    if rule is not None:
        description = rule.kind
        phase3 = rule.phase3
        if rule.category is not None:
            category = rule.category
        if rule.product_type is not None:
            product_type = rule.product_type
        prodcatg = prodcatg or rule.prodcatg
    obj = _text(header, "OBJECT") or ""
    dpr_type = (_text(header, "ESO DPR TYPE") or "").upper()
    if category is Category.SCIENCE and (dpr_type == "STD" or is_standard_star(obj)):
        category = Category.CALIB
        description = f"{description} of a standard star"
        if phase3 is not Phase3.NO:
            phase3 = Phase3.NO
    key, rmjd = split_product_key(filename)
    return Classification(
        instrument=instrument,
        mode=mode,
        category=category,
        level=level,
        product_type=product_type,
        description=f"{instrument.value} {mode.value}: {description}",
        phase3=phase3,
        prodcatg=prodcatg,
        filetype=int(code),
        product_key=key,
        reduction_mjd=rmjd,
    )


def rules_markdown() -> str:
    """Return the classification table as Markdown (for the README)."""
    lines = [
        "| FILETYPE digit 1 | file name pattern | kind | category | Phase 3 "
        "| PRODCATG |",
        "|---|---|---|---|---|---|",
    ]
    names = {"1": "1 EFOSC imaging", "2": "2 EFOSC spectroscopy",
             "3": "3 SOFI imaging", "4": "4 SOFI spectroscopy"}
    for r in RULES:
        cat = r.category.value if r.category else "from digit 2"
        pattern = f"`{r.pattern}`" if r.pattern else "(any other)"
        lines.append(
            f"| {names[r.mode_digit]} | {pattern} | {r.kind} | {cat} | "
            f"{r.phase3.value} | {r.prodcatg or ''} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(rules_markdown())
