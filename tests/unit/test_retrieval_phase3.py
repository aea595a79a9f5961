"""ESO Phase 3 validation of files, without a database.

The files are the demo generator's Phase 3 products of one SOFI night (1D and 2D
spectrum, merged image and weight map), written with astropy, some broken on
purpose.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from astropy.io import fits

from vo_archive.demo import DemoPlan, write_spec
from vo_archive.retrieval.phase3 import FileReport, ReleaseReport, validate_release


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    specs = DemoPlan(800, 2012).build()
    weight = next(s for s in specs if s.kind == "weight")
    obj_night = weight.name.split("_merge_")[0].rsplit("_", 1)[0]  # OBJ_DATE
    chosen = [s for s in specs if s.name.startswith(obj_night.split("_")[0] + "_")
              and obj_night.split("_")[1] in s.name
              and (s.name.endswith(("_sb.fits", "_si.fits", ".weight.fits"))
                   or ("_merge_" in s.name and s.kind == "image"))]
    out = tmp_path_factory.mktemp("p3")
    return {s.name: Path(write_spec(s, str(out))) for s in chosen}


def run(files: dict[str, Path], tmp: Path, edit: dict[str, object] | None = None
        ) -> ReleaseReport:
    reps = []
    for name, path in files.items():
        copy = tmp / name
        if not copy.exists():
            shutil.copy(path, copy)
        data = copy.read_bytes()
        with fits.open(copy) as h:
            catg = h[0].header.get("PRODCATG")
        reps.append((FileReport(name, 1, 1, catg, len(data),
                                hashlib.sha256(data).hexdigest(), "0" * 32), copy))
    validate_release(reps)
    return ReleaseReport("r", "199.D-0143(G)", [r for r, _ in reps])


def keywords(report: ReleaseReport, name: str) -> set[str | None]:
    f = next(f for f in report.files if f.filename == name)
    return {i.keyword for i in f.errors}


def rewrite(path: Path, **changes: object) -> None:
    """Change primary-header cards (None deletes) and write valid checksums."""
    with fits.open(path) as hdul:
        for key, value in changes.items():
            if value is None:
                del hdul[0].header[key]
            else:
                hdul[0].header[key] = value
        hdul.writeto(path, overwrite=True, checksum=True)


def test_release_has_all_four_categories(release: dict[str, Path]) -> None:
    catgs = set()
    for p in release.values():
        with fits.open(p) as h:
            catgs.add(h[0].header.get("PRODCATG"))
    assert catgs == {"SCIENCE.SPECTRUM", "ANCILLARY.2DSPECTRUM", "SCIENCE.IMAGE",
                     "ANCILLARY.WEIGHTMAP"}


def test_demo_release_is_valid(release: dict[str, Path], tmp_path: Path) -> None:
    report = run(release, tmp_path)
    assert report.ok, report.text()
    assert report.status == "valid"
    assert "status: VALID" in report.text()


def test_missing_keywords_checksum_and_dpr_are_reported(release: dict[str, Path],
                                                        tmp_path: Path) -> None:
    sb = next(n for n in release if n.endswith("_sb.fits"))
    image = next(n for n in release if n.endswith(".fits") and "_merge_" in n
                 and not n.endswith((".weight.fits", "_sb.fits", "_si.fits")))
    for n, p in release.items():
        shutil.copy(p, tmp_path / n)
    rewrite(tmp_path / image, PHOTZP=None, PSF_FWHM="1.1",
            **{"HIERARCH ESO DPR TYPE": "OBJECT", "PROV01": "SOFI.x.fits"})
    # change a card without updating the checksum: CHECKSUM must fail, DATASUM not
    raw = bytearray((tmp_path / sb).read_bytes())
    at = raw.index(b"SPEC_RES= ")
    raw[at:at + 80] = fits.Card("SPEC_RES", 123.0).image.encode()
    (tmp_path / sb).write_bytes(bytes(raw))
    report = run(release, tmp_path)
    assert not report.ok
    assert report.status == "invalid"
    assert keywords(report, image) >= {"PHOTZP", "PSF_FWHM", "ESO DPR TYPE", "PROV01"}
    assert keywords(report, sb) == {"CHECKSUM"}
    text = report.text()
    assert f"INVALID {image}" in text and "PHOTZP: mandatory keyword missing" in text
    assert "PSF_FWHM: must be a number, found '1.1'" in text
    assert f"INVALID {sb}" in text and "HDU 0 CHECKSUM" in text
    js = report.as_json()
    assert js["status"] == "invalid" and js["errors"] == report.error_count


def test_missing_association_and_orphan(release: dict[str, Path], tmp_path: Path
                                        ) -> None:
    weight = next(n for n in release if n.endswith(".weight.fits"))
    si = next(n for n in release if n.endswith("_si.fits"))
    sb = next(n for n in release if n.endswith("_sb.fits"))
    without = {n: p for n, p in release.items() if n != weight}
    report = run(without, tmp_path)
    image = next(f for f in report.files if f.prodcatg == "SCIENCE.IMAGE")
    assert {i.keyword for i in image.errors} == {"ASSON1"}
    only_si = {si: release[si]}
    report = run(only_si, tmp_path)
    assert [i.message for i in report.files[0].errors] == [
        "orphan ancillary file: no ASSONi of the release names it"]
    assert sb not in only_si


def test_long_and_duplicate_names(release: dict[str, Path], tmp_path: Path) -> None:
    si = next(n for n in release if n.endswith("_si.fits"))
    long = "X" * 69
    reps = []
    for name in (long, si, si):
        reps.append((FileReport(name, 1, 1, "ANCILLARY.2DSPECTRUM", 0, "", ""),
                     release[si]))
    validate_release(reps)
    assert any("69 characters" in i.message for i in reps[0][0].errors)
    assert any("used 2 times" in i.message for i in reps[1][0].errors)


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not FITS at all" * 200)
    rep = FileReport("bad.fits", 1, 1, "SCIENCE.SPECTRUM", 0, "", "")
    validate_release([(rep, bad)])
    assert not rep.ok
    assert "not a readable FITS file" in rep.errors[0].message
