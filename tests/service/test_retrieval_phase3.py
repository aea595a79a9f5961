"""ESO Phase 3 export of a run, valid and deliberately broken, over HTTP and CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from astropy.io import fits
from sqlalchemy import text

from tests.conftest import Archive, LiveServer, start_server, stop_server
from vo_archive.retrieval.bundle import parse_manifest

RUN = "nov12_d10to13_efosc"


def cli(archive: Archive, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    return subprocess.run([sys.executable, "-m", "vo_archive", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def broken(make_archive: Callable[..., Archive], demo_files: list[Path],
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Archive, dict[str, str]]:
    """The demo's Phase 3 files of the first run, three of them broken."""
    src = tmp_path_factory.mktemp("p3broken")
    chosen = [p for p in demo_files if p.name.endswith(("_sb.fits", "_si.fits"))
              and "_201211" in p.name]
    for p in chosen:
        shutil.copy(p, src / p.name)
    sbs = sorted(p.name for p in chosen if p.name.endswith("_sb.fits"))
    # 1: a mandatory keyword removed and an ESO DPR keyword added (checksums valid)
    with fits.open(src / sbs[0]) as h:
        del h[0].header["SPECSYS"]
        h[0].header["HIERARCH ESO DPR TYPE"] = "OBJECT"
        h.writeto(src / sbs[0], overwrite=True, checksum=True)
    # 2: a card changed after the checksums were written
    raw = bytearray((src / sbs[1]).read_bytes())
    at = raw.index(b"SNR     = ")
    raw[at:at + 80] = fits.Card("SNR", 99.0).image.encode()
    (src / sbs[1]).write_bytes(bytes(raw))
    # 3: its 2D spectrum is not delivered
    with fits.open(src / sbs[2]) as h:
        missing = str(h[0].header["ASSON1"])
    (src / missing).unlink()
    archive = make_archive()
    archive.ingest([src])
    return archive, {"keywords": sbs[0], "checksum": sbs[1], "asson": sbs[2],
                     "missing": missing}


@pytest.fixture(scope="module")
def broken_server(broken: tuple[Archive, dict[str, str]]) -> Iterator[LiveServer]:
    server = start_server(broken[0])
    yield server
    stop_server(server.process)


def test_report_lists_every_broken_keyword(broken_server: LiveServer,
                                           broken: tuple[Archive, dict[str, str]]
                                           ) -> None:
    names = broken[1]
    js = broken_server.get(f"/runs/{RUN}/phase3?format=json").json()
    assert js["status"] == "invalid" and js["errors"] >= 4
    by_name = {p["filename"]: p for p in js["products"]}
    errors = {n: {(i["hdu"], i["keyword"]) for i in p["issues"]
                  if i["severity"] == "error"} for n, p in by_name.items()}
    assert errors[names["keywords"]] == {(0, "SPECSYS"), (0, "ESO DPR TYPE")}
    assert errors[names["checksum"]] == {(0, "CHECKSUM")}
    assert errors[names["asson"]] == {(None, "ASSON1")}
    assert names["missing"] not in by_name
    bad = {names["keywords"], names["checksum"], names["asson"]}
    assert all(p["ok"] for n, p in by_name.items() if n not in bad)
    txt = broken_server.get(f"/runs/{RUN}/phase3?format=text").text
    assert txt.splitlines()[1].startswith("status: INVALID")
    assert "status: VALID" not in txt
    assert f"INVALID {names['keywords']}" in txt and "SPECSYS: mandatory" in txt
    html = broken_server.get(f"/runs/{RUN}/phase3").text
    assert "INVALID" in html and "SPECSYS" in html and 'id="bundle"' not in html


def test_invalid_release_is_not_shipped(broken_server: LiveServer,
                                        broken: tuple[Archive, dict[str, str]],
                                        tmp_path: Path) -> None:
    r = broken_server.get(f"/runs/{RUN}/phase3/bundle")
    assert r.status_code == 409
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.text.startswith("ValidationFault:") and "SPECSYS" in r.text
    out = tmp_path / "rel.tar"
    done = cli(broken[0], "export", "phase3", RUN, "-o", str(out))
    assert done.returncode == 1
    assert "status: INVALID" in done.stdout and "ESO DPR TYPE" in done.stdout
    assert "nothing exported" in done.stderr
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    assert (tmp_path / f"{RUN}_phase3_report.txt").read_text() == done.stdout


def test_valid_release_is_exported_with_manifest(live_server: LiveServer,
                                                 tmp_path: Path) -> None:
    archive = live_server.archive
    r = live_server.get(f"/runs/{RUN}/phase3?format=json").json()
    assert r["status"] == "valid", r
    done = cli(archive, "export", "phase3", RUN, "--quiet", "-o", str(tmp_path) + "/")
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / f"{RUN}_phase3"
    manifest = parse_manifest((folder / "MANIFEST.sha256").read_text())
    for name, sha in manifest.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha
    with archive.engine.connect() as conn:
        expected = dict(conn.execute(text(
            "SELECT p.filename, v.md5 FROM pessto.products p JOIN pessto.versions v "
            "USING (version_id) WHERE p.run_name = :r AND p.eso_phase3 = 'yes' "
            "AND p.level = 'final'"), {"r": RUN}).all())
    fits_files = {p.name for p in folder.glob("*.fits")}
    assert fits_files == set(expected)
    rows = list(
        csv.DictReader(io.StringIO((folder / "RELEASE_MANIFEST.csv").read_text()))
    )
    assert {row["filename"]: row["md5"] for row in rows} == expected
    for row in rows:
        data = (folder / row["filename"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == row["md5"]  # noqa: S324
    bundle = live_server.get(f"/runs/{RUN}/phase3/bundle")
    assert bundle.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(bundle.content)) as tf:
        names = {m.name.split("/", 1)[1] for m in tf}
    assert names == {"MANIFEST.sha256", "PRODUCTS.csv", "RELEASE_MANIFEST.csv",
                     "phase3_report.txt", "phase3_report.json"} | fits_files
