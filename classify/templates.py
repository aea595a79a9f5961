"""The template library: supernova spectra at known phases, in SNID's ``.lnw`` format.

A ``.lnw`` file (Blondin & Tonry 2007, SNID's template format) holds one supernova
at several epochs on a common log-wavelength grid: a header line (number of epochs,
number of bins, wavelength range, number of continuum spline knots, name, Δm15,
type string, type and subtype codes), the spline knots of the removed continuum,
a row of phases (days from maximum light) headed by a 0, then one row per bin: the
bin's wavelength and the flattened (continuum-divided, minus one) flux of every
epoch, zero outside the observed range.

The archive ships the library as one compressed array file
(``classify/data/snid-templates.npz``) built from the folder of ``.lnw`` files by
``python -m classify.templates build SRC_DIR OUT.npz``: fluxes as 16-bit
integers in thousandths (the ``.lnw`` files have three decimals, so nothing is
lost), with the source, licence and a content hash as library version.
:func:`load_library` reads it (or a user's folder of ``.lnw`` files) once per
process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: The shipped library.
DEFAULT_LIBRARY = Path(__file__).parent / "data" / "snid-templates.npz"
#: SNID's main type codes.
TYPE_CODES = {1: "Ia", 2: "Ib", 3: "Ic", 4: "II", 5: "NotSN"}
#: What the shipped library was built from, and under which licence.
SOURCE = ("SNID templates (Blondin & Tonry 2007; Modjaz et al. 2014 stripped-envelope "
          "set; Silverman et al. 2012 BSNIP set) as bundled with the DASH classifier "
          "(astrodash)")
LICENCE = "MIT (LICENCE-astrodash.txt)"
#: Flux quantum in the shipped file: the ``.lnw`` files have three decimals.
_SCALE = 1000.0


class TemplateError(ValueError):
    """A template file or library that cannot be read."""


@dataclass(frozen=True)
class LnwTemplate:
    """One supernova of a ``.lnw`` file."""

    name: str
    subtype: str
    type_code: int
    subtype_code: int
    dm15: float
    w0: float
    w1: float
    wave: npt.NDArray[np.float64]
    phases: npt.NDArray[np.float64]
    #: flattened flux, one row per epoch
    flux: npt.NDArray[np.float64]


_SHORT_NAME = re.compile(r"sn(\d{2})([a-z]+)", re.IGNORECASE)
_LONG_NAME = re.compile(r"sn(\d{4})([a-z]+)", re.IGNORECASE)


def canonical_sn(name: str) -> str:
    """Return one spelling of a supernova's name (``sn02bo`` and ``sn2002bo`` agree).

    The library holds some supernovae twice, from SNID's and BSNIP's sets, under
    two-digit and four-digit years; votes and the leave-one-out must see one.
    """
    base = name.removesuffix("_bsnip")
    m = _SHORT_NAME.fullmatch(base)
    if m:
        yy = int(m.group(1))
        return f"sn{1900 + yy if yy >= 50 else 2000 + yy}{m.group(2).lower()}"
    m = _LONG_NAME.fullmatch(base)
    if m:
        return f"sn{m.group(1)}{m.group(2).lower()}"
    return base.lower()


def main_type(subtype: str, type_code: int) -> str:
    """Return the main type (Ia, Ib, Ic, II, ...) of a template.

    SNID's type code decides (so that IIb counts as Ib, as in SNID); an unknown
    code falls back on the subtype string before its dash.
    """
    if type_code in TYPE_CODES:
        return TYPE_CODES[type_code]
    return subtype.split("-", 1)[0] or subtype


def parse_lnw(text: str, source: str = "template") -> LnwTemplate:
    """Parse the text of one ``.lnw`` file.

    Parameters
    ----------
    text
        The file's content.
    source
        Name to use in error messages.

    Returns
    -------
    LnwTemplate
        The supernova and its epochs.

    Raises
    ------
    TemplateError
        If the text is not in the ``.lnw`` format.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise TemplateError(f"{source}: empty template file")
    head = lines[0].split()
    try:
        nepoch, nbin = int(head[0]), int(head[1])
        w0, w1 = float(head[2]), float(head[3])
        nknot = int(head[4])
        name = head[5]
        dm15 = float(head[6])
        subtype = head[7]
        type_code = int(head[8]) if len(head) > 8 else 0
        subtype_code = int(head[9]) if len(head) > 9 else 0
    except (IndexError, ValueError):
        raise TemplateError(f"{source}: the first line is not a .lnw header") from None
    if nepoch < 1 or nbin < 16 or not 0 < w0 < w1:
        raise TemplateError(f"{source}: implausible header {lines[0].strip()!r}")
    # the knot block: one count line, then nknot rows
    phase_at = 1 + 1 + nknot
    if len(lines) != phase_at + 1 + nbin:
        raise TemplateError(
            f"{source}: {len(lines)} lines, expected {phase_at + 1 + nbin} "
            f"({nknot} knots, {nbin} bins)")
    try:
        phases = np.array(lines[phase_at].split(), dtype=np.float64)
        table = np.array([ln.split() for ln in lines[phase_at + 1:]], dtype=np.float64)
    except ValueError:
        raise TemplateError(f"{source}: non-numeric phase or flux rows") from None
    if phases.size != nepoch + 1 or table.shape != (nbin, nepoch + 1):
        raise TemplateError(f"{source}: phase or flux rows do not have {nepoch} epochs")
    return LnwTemplate(name=name, subtype=subtype, type_code=type_code,
                       subtype_code=subtype_code, dm15=dm15, w0=w0, w1=w1,
                       wave=table[:, 0], phases=phases[1:],
                       flux=np.ascontiguousarray(table[:, 1:].T))


@dataclass(frozen=True)
class TemplateLibrary:
    """Every template epoch of a library, one row each, on one log-wavelength grid."""

    #: flattened flux, shape (epochs, bins)
    flux: npt.NDArray[np.float32]
    #: supernova name, main type, subtype, per epoch
    sn: npt.NDArray[np.str_]
    type: npt.NDArray[np.str_]
    subtype: npt.NDArray[np.str_]
    #: days from maximum light, per epoch
    phase: npt.NDArray[np.float64]
    #: the supernova's one spelling (:func:`canonical_sn`), per epoch
    family: npt.NDArray[np.str_]
    #: grid: nbin bins from w0 to w1 (Å), equal in ln(wavelength)
    w0: float
    w1: float
    version: str
    source: str
    licence: str

    @property
    def nbin(self) -> int:
        """Number of log-wavelength bins."""
        return int(self.flux.shape[1])

    @property
    def dwlog(self) -> float:
        """Bin width in ln(wavelength)."""
        return float(np.log(self.w1 / self.w0) / self.nbin)

    def __len__(self) -> int:
        """Return the number of template epochs."""
        return int(self.flux.shape[0])

    def __hash__(self) -> int:
        """Hash by library version (libraries are cached by it)."""
        return hash(self.version)

    def __eq__(self, other: object) -> bool:
        """Compare by library version."""
        return isinstance(other, TemplateLibrary) and other.version == self.version


def _content_hash(quantised: npt.NDArray[np.int16], sn: Sequence[str],
                  subtype: Sequence[str], phase: npt.NDArray[np.float64]) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(quantised).tobytes())
    h.update("\0".join(sn).encode())
    h.update("\0".join(subtype).encode())
    h.update(np.round(phase, 3).tobytes())
    return h.hexdigest()[:12]


def _assemble(templates: list[LnwTemplate], source: str, licence: str
              ) -> dict[str, npt.NDArray[np.generic]]:
    """Return the arrays of the compressed library file."""
    if not templates:
        raise TemplateError(f"{source}: no .lnw templates")
    first = templates[0]
    for t in templates:
        if t.flux.shape[1] != first.flux.shape[1] or (t.w0, t.w1) != (first.w0,
                                                                        first.w1):
            raise TemplateError(
                f"{t.name}: a different wavelength grid than {first.name}")
    flux = np.concatenate([t.flux for t in templates])
    quantised = np.round(flux * _SCALE).astype(np.int16)
    sn = [t.name for t in templates for _ in t.phases]
    subtype = [t.subtype for t in templates for _ in t.phases]
    mtype = [main_type(t.subtype, t.type_code) for t in templates for _ in t.phases]
    phase = np.concatenate([t.phases for t in templates])
    version = f"snid-lnw-{_content_hash(quantised, sn, subtype, phase)}"
    meta = {"version": version, "source": source, "licence": licence,
            "w0": first.w0, "w1": first.w1, "supernovae": len(templates),
            "epochs": int(flux.shape[0])}
    return {"flux": quantised, "sn": np.array(sn), "type": np.array(mtype),
            "subtype": np.array(subtype), "phase": phase,
            "meta": np.array(json.dumps(meta, sort_keys=True))}


def read_folder(folder: Path) -> list[LnwTemplate]:
    """Parse every ``*.lnw`` file of a folder, in name order."""
    paths = sorted(folder.glob("*.lnw"))
    if not paths:
        raise TemplateError(f"{folder}: no .lnw template files")
    out = []
    for p in paths:
        try:
            text = p.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise TemplateError(f"{p}: {exc.strerror}") from exc
        out.append(parse_lnw(text, p.name))
    return out


def build_arrays(folder: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Return the arrays of the library file built from a folder of ``.lnw`` files."""
    return _assemble(read_folder(folder), SOURCE, LICENCE)


def _from_arrays(arrays: dict[str, npt.NDArray[np.generic]]) -> TemplateLibrary:
    meta = json.loads(str(arrays["meta"]))
    flux = (np.asarray(arrays["flux"], dtype=np.float32) / np.float32(_SCALE))
    sn = np.asarray(arrays["sn"]).astype(str)
    return TemplateLibrary(
        flux=flux, sn=sn, family=np.array([canonical_sn(n) for n in sn.tolist()]),
        type=np.asarray(arrays["type"]).astype(str),
        subtype=np.asarray(arrays["subtype"]).astype(str),
        phase=np.asarray(arrays["phase"], dtype=np.float64),
        w0=float(meta["w0"]), w1=float(meta["w1"]), version=str(meta["version"]),
        source=str(meta["source"]), licence=str(meta["licence"]))


def read_npz(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Return the arrays of a library file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError) as exc:
        raise TemplateError(f"{path}: not a template library file ({exc})") from exc


@lru_cache(maxsize=4)
def _load(resolved: str) -> TemplateLibrary:
    path = Path(resolved)
    if path.is_dir():
        return _from_arrays(_assemble(read_folder(path), str(path), "see the folder"))
    if not path.exists():
        raise TemplateError(f"{path}: no such template library")
    arrays = read_npz(path)
    try:
        return _from_arrays(arrays)
    except (KeyError, ValueError, TypeError) as exc:
        raise TemplateError(f"{path}: not a template library file ({exc})") from exc


def load_library(path: str | Path | None = None) -> TemplateLibrary:
    """Return the template library, read once per process.

    Parameters
    ----------
    path
        A folder of ``.lnw`` files or a library ``.npz`` file; None for the
        library shipped with the archive.

    Raises
    ------
    TemplateError
        If the library cannot be read.
    """
    target = DEFAULT_LIBRARY if path is None else Path(path)
    return _load(str(target.resolve()))


#: Environment variable naming another library (a folder of ``.lnw`` files or .npz).
LIBRARY_ENV = "VO_ARCHIVE_CLASSIFY_TEMPLATES"


def configured_library(extra: Mapping[str, object] | None = None,
                       path: str | Path | None = None) -> TemplateLibrary:
    """Return the library the configuration names, else the shipped one.

    Parameters
    ----------
    extra
        The configuration's extra tables (``Settings.extra``): ``[classify]
        templates = "/path/to/lnw/folder"`` names a library.
    path
        An explicit library, before the environment and configuration.

    Raises
    ------
    TemplateError
        If the named library cannot be read.
    """
    table = (extra or {}).get("classify")
    configured = table.get("templates") if isinstance(table, Mapping) else None
    chosen = path or os.environ.get(LIBRARY_ENV) or configured
    return load_library(str(chosen) if chosen else None)


def build(src: Path, out: Path) -> dict[str, object]:
    """Write the library file built from ``src``; return its metadata."""
    arrays = build_arrays(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    meta: dict[str, object] = json.loads(str(arrays["meta"]))
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m classify.templates build SRC_DIR OUT.npz``."""
    parser = argparse.ArgumentParser(prog="python -m classify.templates",
                                     description="Build the template library file.")
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("build", help="build OUT.npz from a folder of .lnw files")
    b.add_argument("src", type=Path, metavar="SRC_DIR")
    b.add_argument("out", type=Path, metavar="OUT.npz")
    args = parser.parse_args(argv)
    try:
        meta = build(args.src, args.out)
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = args.out.stat().st_size
    print(f"wrote {args.out}: {meta['supernovae']} supernovae, {meta['epochs']} "
          f"epochs, {size / 1e6:.1f} MB, version {meta['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
