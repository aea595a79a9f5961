"""ESO Phase 3 validation of a run's release, and its manifest.

The rules follow the ESO Science Data Products standard (ESO-044286, the
keyword table of §12 and the per-category sections: SCIENCE.SPECTRUM §2.4 and
§5, SCIENCE.IMAGE §2.2, ancillary files §2.7 and §4) as summarised in
``../shared/pessto-data-model.md`` §5-6, plus what the Phase 3 release validator
checks for a whole release: ``CHECKSUM``/``DATASUM`` in every HDU and correct,
every ``ASSONi`` file present and no orphan ancillary file, ``PROVi`` resolvable
(raw ``ARCFILE`` names or files of the release), unique file names of at most 68
characters, ``LONGSTRN=T`` when long-string ``CONTINUE`` cards are used, and no
``ESO DPR`` keywords in products.

Headers are read from the archived files themselves with astropy (the stored
JSONB copy is not trusted for a delivery), and checksums are recomputed from
the bytes. Each file gets a list of :class:`Issue`; errors make the release
invalid, warnings do not. A release with errors is never shipped silently: the
bundle refuses (HTTP 409, CLI exit status 1) and the report says why.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from astropy.io import fits
from sqlalchemy import Connection

from vo_archive.retrieval.params import Selection
from vo_archive.retrieval.query import RunInfo, run_files
from vo_archive.vo.dali.errors import Fault

MAX_NAME = 68
RAW_ARCFILE = re.compile(r"^(EFOSC|SOFI)\.\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\.fits$")
ANCILLARY = ("ANCILLARY.2DSPECTRUM", "ANCILLARY.WEIGHTMAP")
SCIENCE = ("SCIENCE.SPECTRUM", "SCIENCE.IMAGE")
SPECSYS_VALUES = frozenset({"TOPOCENT", "GEOCENTR", "BARYCENT", "HELIOCEN", "LSRK",
                            "LSRD", "GALACTOC", "LOCALGRP", "CMBDIPOL", "SOURCE"})


class Severity(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """How bad an issue is: errors block the release."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a file (``hdu`` None: the file as a whole)."""

    severity: Severity
    keyword: str | None
    message: str
    hdu: int | None = None

    def line(self) -> str:
        """Return the issue as one report line."""
        where = f"HDU {self.hdu} " if self.hdu is not None else ""
        key = f"{self.keyword}: " if self.keyword else ""
        return f"{self.severity.value.upper()}: {where}{key}{self.message}"


@dataclass(slots=True)
class FileReport:
    """The validation of one file of the release."""

    filename: str
    product_id: int
    version_no: int
    prodcatg: str | None
    size: int
    sha256: str
    md5: str
    issues: list[Issue] = field(default_factory=list)
    associated: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        """The issues that block the release."""
        return [i for i in self.issues if i.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        """Whether the file may be shipped."""
        return not self.errors

    def error(self, keyword: str | None, message: str, hdu: int | None = None) -> None:
        """Record an error."""
        self.issues.append(Issue(Severity.ERROR, keyword, message, hdu))

    def warn(self, keyword: str | None, message: str, hdu: int | None = None) -> None:
        """Record a warning."""
        self.issues.append(Issue(Severity.WARNING, keyword, message, hdu))


@dataclass(slots=True)
class ReleaseReport:
    """The validation of all Phase 3 products of a run."""

    run: str
    eso_run: str
    files: list[FileReport]

    @property
    def error_count(self) -> int:
        """Number of errors over all files."""
        return sum(len(f.errors) for f in self.files)

    @property
    def ok(self) -> bool:
        """Whether the release may be shipped: files to ship and no errors."""
        return bool(self.files) and self.error_count == 0

    @property
    def status(self) -> str:
        """``valid``, ``invalid`` or ``empty``."""
        if not self.files:
            return "empty"
        return "valid" if self.ok else "invalid"

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON."""
        return {
            "run": self.run, "eso_run": self.eso_run, "status": self.status,
            "files": len(self.files), "errors": self.error_count,
            "warnings": sum(len(f.issues) - len(f.errors) for f in self.files),
            "products": [
                {"filename": f.filename, "product_id": f.product_id,
                 "version": f.version_no, "prodcatg": f.prodcatg, "size": f.size,
                 "sha256": f.sha256, "md5": f.md5, "ok": f.ok,
                 "issues": [{"severity": i.severity.value, "hdu": i.hdu,
                             "keyword": i.keyword, "message": i.message}
                            for i in f.issues]}
                for f in self.files],
        }

    def text(self) -> str:
        """Return the report as plain text, one block per file with issues."""
        lines = [f"ESO Phase 3 validation of run {self.run} ({self.eso_run})",
                 f"status: {self.status.upper()}: {len(self.files)} files, "
                 f"{self.error_count} errors, "
                 f"{sum(len(f.issues) - len(f.errors) for f in self.files)} warnings",
                 ""]
        if not self.files:
            lines.append("The run has no final products destined for ESO Phase 3 "
                         "that you may see.")
        for f in self.files:
            lines.append(f"{'OK     ' if f.ok else 'INVALID'} {f.filename} "
                         f"({f.prodcatg or 'no PRODCATG'})")
            lines += [f"    {i.line()}" for i in f.issues]
        return "\n".join(lines) + "\n"

    def manifest_csv(self) -> bytes:
        """Return the release manifest: one row per file with its checksums."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["filename", "prodcatg", "size", "md5", "sha256", "product_id",
                    "version", "associated"])
        for f in self.files:
            w.writerow([f.filename, f.prodcatg or "", f.size, f.md5, f.sha256,
                        f.product_id, f.version_no,
                        " ".join(f.associated)])
        return buf.getvalue().encode()


class ReleaseInvalid(Fault):
    """A Phase 3 bundle was asked for a release that does not validate."""

    status = 409
    name = "ValidationFault"


# -- keyword rules ---------------------------------------------------------------

Check = Callable[[Any], str | None]


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "s": (_is_str, "a string"), "f": (_is_num, "a number"),
    "i": (_is_int, "an integer"), "b": (_is_bool, "a logical (T/F)"),
}

#: Primary-header keywords every Phase 3 science product carries (SDP table 12:
#: MM and ME for IMAGE and SPECTRUM), with their types.
COMMON_PRIMARY: dict[str, str] = {
    "PRODCATG": "s", "ORIGIN": "s", "TELESCOP": "s", "INSTRUME": "s", "OBJECT": "s",
    "RA": "f", "DEC": "f", "EXPTIME": "f", "TEXPTIME": "f", "MJD-OBS": "f",
    "MJD-END": "f", "PROG_ID": "s", "OBID1": "i", "NCOMBINE": "i", "OBSTECH": "s",
    "FLUXCAL": "s", "PROCSOFT": "s", "REFERENC": "s", "PROV1": "s",
}
SPECTRUM_PRIMARY: dict[str, str] = {
    "SPECSYS": "s", "EXT_OBJ": "b", "CONTNORM": "b", "TOT_FLUX": "b",
    "FLUXERR": "f", "WAVELMIN": "f", "WAVELMAX": "f", "SPEC_BIN": "f", "SNR": "f",
    "SPEC_RES": "f",
}
SPECTRUM_RECOMMENDED = ("SPEC_ERR", "SPEC_SYE", "LAMRMS", "LAMNLIN")
SPECTRUM_EXTENSION: dict[str, str] = {
    "OBJECT": "s", "RA": "f", "DEC": "f", "NELEM": "i", "VOCLASS": "s", "VOPUB": "s",
    "TITLE": "s", "APERTURE": "f", "TELAPSE": "f", "TMID": "f", "SPEC_VAL": "f",
    "SPEC_BW": "f", "TFIELDS": "i", "TDMIN1": "f", "TDMAX1": "f",
}
IMAGE_PRIMARY: dict[str, str] = {
    "FILTER": "s", "BUNIT": "s", "CRVAL1": "f", "CRVAL2": "f", "CRPIX1": "f",
    "CRPIX2": "f", "CTYPE1": "s", "CTYPE2": "s", "CUNIT1": "s", "CUNIT2": "s",
    "CD1_1": "f", "CD1_2": "f", "CD2_1": "f", "CD2_2": "f", "PHOTZP": "f",
    "PHOTSYS": "s", "ABMAGLIM": "f", "ABMAGSAT": "f", "PSF_FWHM": "f",
}
IMAGE_RECOMMENDED = ("PHOTZPER", "CRDER1", "CRDER2", "CSYER1", "CSYER2")


def _require(rep: FileReport, header: fits.Header, rules: dict[str, str],
             hdu: int) -> None:
    for key, kind in rules.items():
        if key not in header:
            rep.error(key, "mandatory keyword missing", hdu)
            continue
        value = header[key]
        test, what = _TYPES[kind]
        if not test(value):
            rep.error(key, f"must be {what}, found {value!r}", hdu)


def _range(rep: FileReport, header: fits.Header, key: str, lo: float, hi: float,
           hdu: int, note: str = "") -> None:
    v = header.get(key)
    if _is_num(v) and not lo <= v <= hi:
        rep.error(key, f"value {v!r} outside [{lo:g}, {hi:g}]{note}", hdu)


def _check_common(rep: FileReport, h: fits.Header) -> None:
    _require(rep, h, COMMON_PRIMARY, 0)
    radesys = h.get("RADESYS")
    if radesys is None and "RADECSYS" in h:
        radesys = h["RADECSYS"]
        rep.warn("RADESYS", "missing; the deprecated RADECSYS is present (accepted "
                 "in PESSTO releases, but write RADESYS)", 0)
    if radesys is None:
        rep.error("RADESYS", "mandatory keyword missing", 0)
    elif radesys not in ("FK5", "ICRS"):
        rep.error("RADESYS", f"must be 'FK5' or 'ICRS', found {radesys!r}", 0)
    elif radesys == "FK5":
        eq = h.get("EQUINOX")
        if eq is None:
            rep.error("EQUINOX", "mandatory when RADESYS='FK5'", 0)
        elif not _is_num(eq) or float(eq) != 2000.0:
            rep.error("EQUINOX", f"must be 2000.0 with RADESYS='FK5', found {eq!r}", 0)
    _range(rep, h, "RA", 0.0, 360.0, 0)
    _range(rep, h, "DEC", -90.0, 90.0, 0)
    _range(rep, h, "EXPTIME", 0.0, 1e7, 0)
    mjd0, mjd1 = h.get("MJD-OBS"), h.get("MJD-END")
    if _is_num(mjd0) and _is_num(mjd1) and mjd1 < mjd0:
        rep.error("MJD-END", f"{mjd1!r} is before MJD-OBS {mjd0!r}", 0)
    if h.get("FLUXCAL") not in (None, "ABSOLUTE", "UNCALIBRATED") and \
            _is_str(h.get("FLUXCAL")):
        rep.error("FLUXCAL", f"must be 'ABSOLUTE' or 'UNCALIBRATED', found "
                  f"{h['FLUXCAL']!r}", 0)
    ncomb = h.get("NCOMBINE")
    if _is_int(ncomb) and ncomb < 1:
        rep.error("NCOMBINE", f"must be at least 1, found {ncomb}", 0)


def _check_spectrum(rep: FileReport, hdul: fits.HDUList) -> None:
    h = hdul[0].header
    _require(rep, h, SPECTRUM_PRIMARY, 0)
    for key in SPECTRUM_RECOMMENDED:
        if key not in h:
            rep.warn(key, "recommended keyword missing", 0)
    if h.get("NAXIS") != 0:
        rep.error("NAXIS", f"the primary HDU of a 1D spectrum holds no data "
                  f"(NAXIS=0), found NAXIS={h.get('NAXIS')}", 0)
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        if key in h:
            rep.error(key, "not allowed in a SCIENCE.SPECTRUM primary header", 0)
    if "BUNIT" in h:
        rep.warn("BUNIT", "not used for SCIENCE.SPECTRUM (units belong in TUNITi)", 0)
    spec = h.get("SPECSYS")
    if _is_str(spec) and spec not in SPECSYS_VALUES:
        rep.error("SPECSYS", f"{spec!r} is not a FITS spectral reference frame", 0)
    fluxcal, fluxerr = h.get("FLUXCAL"), h.get("FLUXERR")
    if fluxcal == "UNCALIBRATED" and _is_num(fluxerr) and fluxerr not in (-1, -2):
        rep.error("FLUXERR", "must be -1 (or -2) when FLUXCAL='UNCALIBRATED'", 0)
    wmin, wmax = h.get("WAVELMIN"), h.get("WAVELMAX")
    if _is_num(wmin) and _is_num(wmax) and not 0 < wmin < wmax:
        rep.error("WAVELMAX", f"need 0 < WAVELMIN < WAVELMAX, found {wmin!r}, "
                  f"{wmax!r}", 0)
    _range(rep, h, "SPEC_RES", 1e-9, 1e7, 0)
    tables = [i for i, x in enumerate(hdul[1:], 1) if isinstance(x, fits.BinTableHDU)]
    if len(hdul) != 2 or len(tables) != 1:
        rep.error(None, f"a 1D spectrum has exactly one BINTABLE extension, found "
                  f"{len(hdul) - 1} extensions ({len(tables)} binary tables)")
        return
    x = hdul[1].header
    _require(rep, x, SPECTRUM_EXTENSION, 1)
    for key, want in (("NAXIS2", 1), ("PCOUNT", 0), ("GCOUNT", 1)):
        if x.get(key) != want:
            rep.error(key, f"must be {want}, found {x.get(key)!r}", 1)
    nfields = x.get("TFIELDS") if _is_int(x.get("TFIELDS")) else 0
    nelem = x.get("NELEM")
    for i in range(1, nfields + 1):
        for key in (f"TTYPE{i}", f"TFORM{i}", f"TUNIT{i}", f"TUTYP{i}", f"TUCD{i}"):
            if key not in x:
                rep.error(key, "mandatory keyword missing", 1)
        form = x.get(f"TFORM{i}", "")
        m = re.match(r"(\d*)([A-Z])", str(form))
        if m and m.group(2) in "PQ":
            rep.error(f"TFORM{i}", "variable-length arrays are not allowed", 1)
        elif m and _is_int(nelem) and int(m.group(1) or 1) != nelem:
            rep.error(f"TFORM{i}", f"{form!r} does not hold NELEM={nelem} elements", 1)
    names = [str(x.get(f"TTYPE{i}", "")).upper() for i in range(1, nfields + 1)]
    if len(names) < 3 or names[0] not in ("WAVE", "FREQ", "ENER") or \
            not names[1].startswith("FLUX") or not names[2].startswith("ERR"):
        rep.error("TTYPE1", "columns 1-3 must be the spectral axis (WAVE/FREQ/ENER), "
                  f"FLUX and ERR; found {', '.join(names) or 'none'}", 1)
    voclass = x.get("VOCLASS")
    if _is_str(voclass) and not voclass.upper().startswith("SPECTRUM V"):
        rep.error("VOCLASS", f"must be 'SPECTRUM V1.0' or 'SPECTRUM V2.0', found "
                  f"{voclass!r}", 1)
    if _is_str(x.get("VOPUB")) and x["VOPUB"] != "ESO/SAF":
        rep.error("VOPUB", f"must be 'ESO/SAF', found {x['VOPUB']!r}", 1)
    # slit width in degrees: PESSTO once wrote arcsec here (data model §6)
    _range(rep, x, "APERTURE", 1e-7, 0.05, 1, " (degrees expected)")
    _range(rep, x, "TELAPSE", 1e-6, 1e8, 1)
    tmin, tmax = x.get("TDMIN1"), x.get("TDMAX1")
    if _is_num(tmin) and _is_num(tmax) and tmin >= tmax:
        rep.error("TDMAX1", f"must exceed TDMIN1 ({tmin!r} >= {tmax!r})", 1)


def _check_image(rep: FileReport, hdul: fits.HDUList) -> None:
    h = hdul[0].header
    _require(rep, h, IMAGE_PRIMARY, 0)
    for key in IMAGE_RECOMMENDED:
        if key not in h:
            rep.warn(key, "recommended keyword missing", 0)
    if h.get("NAXIS") != 2:
        rep.error("NAXIS", f"a SCIENCE.IMAGE has a 2D primary array, found "
                  f"NAXIS={h.get('NAXIS')}", 0)
    for i in (1, 2):
        c = h.get(f"CTYPE{i}")
        if _is_str(c) and not re.match(r"(RA--|DEC-)-?[A-Z]{3}$", c):
            rep.error(f"CTYPE{i}", f"{c!r} is not a celestial projection", 0)
    _range(rep, h, "PSF_FWHM", 1e-3, 60.0, 0, " (arcsec)")


def _check_ancillary(rep: FileReport, hdul: fits.HDUList, catg: str) -> None:
    h = hdul[0].header
    if catg == "ANCILLARY.WEIGHTMAP" and h.get("NAXIS") != 2:
        rep.error("NAXIS", f"a weight map is a 2D image, found NAXIS={h.get('NAXIS')}",
                  0)
    if catg == "ANCILLARY.2DSPECTRUM" and h.get("NAXIS") != 2:
        rep.error("NAXIS", f"a 2D spectrum is a 2D image, found "
                  f"NAXIS={h.get('NAXIS')}", 0)


def _numbered(header: fits.Header, stem: str) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for key in header:
        m = re.fullmatch(rf"{stem}(\d+)", key)
        if m:
            out[int(m.group(1))] = (m.group(1), header[key])
    return out


def _check_numbered(rep: FileReport, h: fits.Header, stem: str) -> list[str]:
    """Check ``STEMi`` keywords: no zero padding, numbered 1..n; return the values."""
    found = _numbered(h, stem)
    for n, (digits, _) in found.items():
        if digits != str(n):
            rep.error(f"{stem}{digits}", f"{stem}i is numbered without zero padding "
                      f"({stem}{n})", 0)
    if found and sorted(found) != list(range(1, len(found) + 1)):
        rep.error(f"{stem}1", f"{stem}i must be numbered 1..n without gaps, found "
                  + ", ".join(str(n) for n in sorted(found)), 0)
    return [str(v) for _, (_, v) in sorted(found.items())]


def check_hdus(rep: FileReport, path: Path) -> fits.HDUList | None:
    """Open a file, check FITS compliance and every HDU's CHECKSUM/DATASUM.

    Returns the opened file (the caller closes it) or None when it cannot be read.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False, checksum=False,
                             lazy_load_hdus=False)
            hdul.verify("warn")
    except (OSError, ValueError) as exc:
        rep.error(None, f"not a readable FITS file: {exc}")
        return None
    for w in caught:
        text = " ".join(str(w.message).split())
        rep.error(None, f"FITS verification: {text[:300]}")
    for i, hdu in enumerate(hdul):
        h = hdu.header
        for key in ("CHECKSUM", "DATASUM"):
            if key not in h:
                rep.error(key, "missing (required in every HDU)", i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "DATASUM" in h and hdu.verify_datasum() != 1:
                rep.error("DATASUM", f"{h['DATASUM']!r} does not match the data", i)
            if "CHECKSUM" in h and hdu.verify_checksum() != 1:
                rep.error("CHECKSUM", f"{h['CHECKSUM']!r} does not match the HDU", i)
        for key in h:
            if key.startswith("ESO DPR"):
                rep.error(key, "ESO DPR keywords must be removed from products", i)
        if ((any(card.keyword == "CONTINUE" for card in h.cards)
             or any(isinstance(v, str) and len(v) > 68 for v in h.values()))
                and h.get("LONGSTRN") is not True
                and hdul[0].header.get("LONGSTRN") is not True):
            rep.error("LONGSTRN", "long-string CONTINUE cards need LONGSTRN=T", i)
    return hdul


def validate_file(rep: FileReport, path: Path) -> tuple[list[str], list[str]]:
    """Validate one file; return its ASSONi and PROVi values."""
    if len(rep.filename) > MAX_NAME:
        rep.error(None, f"file name has {len(rep.filename)} characters "
                  f"(at most {MAX_NAME})")
    hdul = check_hdus(rep, path)
    if hdul is None:
        return [], []
    with hdul:
        h = hdul[0].header
        catg = h.get("PRODCATG")
        if catg is None:
            rep.error("PRODCATG", "mandatory keyword missing (every Phase 3 file, "
                      "ancillary ones too, carries its category)", 0)
        elif catg not in SCIENCE + ANCILLARY:
            rep.error("PRODCATG", f"{catg!r} is not a category PESSTO ships "
                      f"({', '.join(SCIENCE + ANCILLARY)})", 0)
        elif rep.prodcatg and catg != rep.prodcatg:
            rep.warn("PRODCATG", f"header says {catg!r}, the archive classified the "
                     f"file as {rep.prodcatg!r}", 0)
        catg = catg if isinstance(catg, str) else rep.prodcatg
        if catg in SCIENCE:
            _check_common(rep, h)
        if catg == "SCIENCE.SPECTRUM":
            _check_spectrum(rep, hdul)
        elif catg == "SCIENCE.IMAGE":
            _check_image(rep, hdul)
        elif catg in ANCILLARY:
            _check_ancillary(rep, hdul, catg)
        asson = _check_numbered(rep, h, "ASSON")
        prov = _check_numbered(rep, h, "PROV")
        if catg in SCIENCE and not prov:
            rep.error("PROV1", "mandatory keyword missing", 0)
    return asson, prov


def validate_release(files: list[tuple[FileReport, Path]]) -> None:
    """Validate every file, then the release as a whole (names, ASSON, PROV)."""
    names: dict[str, int] = {}
    for rep, _ in files:
        names[rep.filename] = names.get(rep.filename, 0) + 1
    referenced: set[str] = set()
    links: list[tuple[FileReport, list[str], list[str]]] = []
    for rep, path in files:
        asson, prov = validate_file(rep, path)
        links.append((rep, asson, prov))
        referenced.update(asson)
        rep.associated = asson
        if names[rep.filename] > 1:
            rep.error(None, f"file name is used {names[rep.filename]} times in the "
                      "release (names must be unique)")
    for rep, asson, prov in links:
        for i, name in enumerate(asson, 1):
            if name not in names:
                rep.error(f"ASSON{i}", f"{name!r} is not in the release")
        for i, name in enumerate(prov, 1):
            if not RAW_ARCFILE.match(name) and name not in names:
                rep.error(f"PROV{i}", f"{name!r} is neither a raw ESO file "
                          "(INSTRUMENT.YYYY-MM-DDThh:mm:ss.sss.fits) nor a file of "
                          "the release")
        if (rep.prodcatg or "").startswith("ANCILLARY.") and \
                rep.filename not in referenced:
            rep.error(None, "orphan ancillary file: no ASSONi of the release names it")


def phase3_files(conn: Connection, run: RunInfo) -> list[Any]:
    """Return the run's current, final products destined for ESO Phase 3."""
    return [f for f in run_files(conn, run, Selection(levels=("final",)))
            if f.eso_phase3 == "yes"]


def validate_run(conn: Connection, run: RunInfo, storage_root: Path
                 ) -> tuple[ReleaseReport, list[Any]]:
    """Validate the Phase 3 release of a run; return the report and its files."""
    files = phase3_files(conn, run)
    reps = [(FileReport(f.filename, f.product_id, f.version_no, f.prodcatg,
                        f.file_size, f.sha256, f.md5),
             storage_root / f.storage_key) for f in files]
    validate_release(reps)
    return ReleaseReport(run.name, run.eso_run, [r for r, _ in reps]), files


def report_members(report: ReleaseReport) -> list[tuple[str, bytes]]:
    """Return the report and release manifest as bundle members."""
    return [("RELEASE_MANIFEST.csv", report.manifest_csv()),
            ("phase3_report.txt", report.text().encode()),
            ("phase3_report.json",
             json.dumps(report.as_json(), indent=1).encode())]
