"""Serving files kept in a real S3 store (SeaweedFS on loopback) through gunicorn.

Downloads return the stored bytes exactly, whole and by Range (first bytes, a
middle slice, a suffix, an open end), with the same ETag and checksum headers
as from local storage; a run bundle streams from the store with the web
worker's memory flat; previews are made once and kept in the store; SODA
cutouts and SSA getData read their files from it.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from astropy.io import fits
from sqlalchemy import text

from tests.conftest import Archive, LiveServer, start_server, stop_server
from tests.s3server import SeaweedS3
from tests.service.vocheck import strict_votable
from vo_archive.ingest.pipeline import Ingestor
from vo_archive.retrieval.bigdemo import generate_large
from vo_archive.retrieval.bundle import MANIFEST_NAME, parse_manifest

#: Size of the large file the memory test streams (the bench streams 2 GB).
LARGE = 96 << 20


@dataclass
class S3Site:
    """A served archive whose files are in an S3 bucket."""

    server: LiveServer
    archive: Archive
    s3: SeaweedS3
    sources: dict[str, bytes]

    @property
    def bucket(self) -> str:
        """The archive's bucket."""
        return self.archive.settings.storage.bucket or ""


def _sky_image(path: Path) -> bool:
    with fits.open(path) as hdul:
        h = hdul[0].header
        return bool(h.get("CTYPE1") == "RA---TAN" and h.get("NAXIS") == 2
                    and h.get("NAXIS1", 0) > 50)


@pytest.fixture(scope="module")
def s3_site(make_s3_archive: Callable[..., Archive], s3_server: SeaweedS3,
            demo_files: list[Path]) -> Iterator[S3Site]:
    """Twelve demo products and one large image in S3, all public, served."""
    archive = make_s3_archive()
    images = [p for p in demo_files if _sky_image(p)][:2]
    picked = demo_files[:10] + images
    big = generate_large(archive.settings.home / "big", LARGE, file_bytes=LARGE,
                         seed=5)
    with Ingestor(archive.settings, archive.engine, workers=1) as ing:
        ing.ingest_paths(picked)
    with Ingestor(archive.settings, archive.engine, workers=1,
                  run_name="bigrun") as ing:
        ing.ingest_paths(big)
    with archive.engine.begin() as conn:
        conn.execute(text("UPDATE archive.product SET release_date = now() - "
                          "interval '1 day'"))
    sources = {p.name: p.read_bytes() for p in picked}
    sources[big[0].name] = big[0].read_bytes()
    shutil.rmtree(archive.settings.home / "big")
    server = start_server(archive, extra_env=s3_server.archive_env(
        archive.settings.storage.bucket or ""))
    yield S3Site(server, archive, s3_server, sources)
    stop_server(server.process)


def _version(site: S3Site, where: str = "true") -> dict[str, object]:
    with site.archive.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT v.product_id, v.version_no, v.filename, v.sha256, v.file_size, "
            "v.storage_key, archive.publisher_did(v.product_id, v.version_no) AS did, "
            "v.ra, v.dec FROM archive.version v JOIN archive.product p "
            f"USING (product_id) WHERE {where} ORDER BY v.file_size DESC LIMIT 1")
        ).mappings().first()
    assert row is not None, where
    return dict(row)


def test_downloads_whole_and_by_range(s3_site: S3Site) -> None:
    v = _version(s3_site, "v.file_size < 10000000")
    path = f"/products/{v['product_id']}/versions/{v['version_no']}"
    data = s3_site.sources[str(v["filename"])]
    size = len(data)
    r = s3_site.server.get(path)
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["ETag"] == f'"{v["sha256"]}"'
    assert r.headers["X-Checksum-SHA256"] == v["sha256"]
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Content-Length"] == str(size)
    assert "attachment" in r.headers["Content-Disposition"]
    for rng, (lo, hi) in {"bytes=0-99": (0, 100),
                          f"bytes={size // 2}-{size // 2 + 2879}": (size // 2,
                                                                   size // 2 + 2880),
                          "bytes=-777": (size - 777, size),
                          f"bytes={size - 10}-": (size - 10, size),
                          f"bytes=5-{size + 100}": (5, size)}.items():
        r = s3_site.server.get(path, headers={"Range": rng})
        assert r.status_code == 206, rng
        assert r.content == data[lo:hi], rng
        assert r.headers["Content-Range"] == f"bytes {lo}-{hi - 1}/{size}", rng
        assert r.headers["ETag"] == f'"{v["sha256"]}"'
    # several ranges are not served as multipart (as from local storage): 416
    multi = s3_site.server.get(path, headers={"Range": "bytes=0-9,20-29"})
    assert multi.status_code == 416
    beyond = s3_site.server.get(path, headers={"Range": f"bytes={size + 5}-"})
    assert beyond.status_code == 416
    # conditional requests: the ETag is the SHA-256
    etag = f'"{v["sha256"]}"'
    assert s3_site.server.get(path, headers={"If-None-Match": etag}).status_code == 304
    stale = s3_site.server.get(path, headers={"Range": "bytes=0-9",
                                              "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data


def _worker_peaks(server: LiveServer) -> dict[int, int]:
    """Return {pid: VmHWM kB} of the server's gunicorn workers."""
    from bench.common import web_workers

    out = {}
    for pid in web_workers(server.process.pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out[pid] = int(line.split()[1])
    return out


def test_large_file_and_bundle_stream_with_flat_memory(s3_site: S3Site) -> None:
    v = _version(s3_site)
    assert int(str(v["file_size"])) > LARGE // 2
    data = s3_site.sources[str(v["filename"])]
    path = f"/products/{v['product_id']}/versions/{v['version_no']}"
    # every worker has made its S3 client and served a file before measuring
    for _ in range(8):
        s3_site.server.get(path, headers={"Range": "bytes=0-1023"})
    mid = len(data) // 2
    r = s3_site.server.get(path, headers={"Range": f"bytes={mid}-{mid + 99999}"})
    assert r.status_code == 206 and r.content == data[mid:mid + 100000]
    before = _worker_peaks(s3_site.server)
    whole = hashlib.sha256()
    with requests.get(s3_site.server.url + path, stream=True, timeout=120) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(1 << 20):
            whole.update(chunk)
    assert whole.hexdigest() == v["sha256"]
    # the run's bundle (tar), read as a stream: members match the manifest
    got: dict[str, str] = {}
    manifest: dict[str, str] = {}
    with requests.get(s3_site.server.url + "/runs/bigrun/download", stream=True,
                      timeout=120) as r:
        assert r.status_code == 200
        r.raw.decode_content = True
        with tarfile.open(fileobj=r.raw, mode="r|") as tar:
            for member in tar:
                fh = tar.extractfile(member)
                assert fh is not None
                name = member.name.split("/", 1)[1]
                if name == MANIFEST_NAME:
                    manifest = parse_manifest(fh.read().decode())
                    continue
                h = hashlib.sha256()
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
                got[name] = h.hexdigest()
    assert got[str(v["filename"])] == v["sha256"]
    assert got == manifest
    after = _worker_peaks(s3_site.server)
    growth = max(after[pid] - before.get(pid, 0) for pid in after) * 1024
    # two passes over a 96 MB file: a buffered file would show its size
    assert growth < LARGE // 4, f"a web worker's peak memory grew by {growth} bytes"


def test_previews_are_kept_in_the_store(s3_site: S3Site) -> None:
    v = _version(s3_site, "v.file_size < 10000000")
    url = f"/products/{v['product_id']}/versions/{v['version_no']}/preview.png"
    r = s3_site.server.get(url)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    sha = str(v["sha256"])
    key = f"previews/{sha[:2]}/{sha}.png"
    client = s3_site.s3.client()
    assert client.get_object(Bucket=s3_site.bucket, Key=key)["Body"].read() == \
        r.content
    # another node (here: the same, its local cache gone) serves the store's copy
    # rather than making it again: the store's object is what comes back
    marker = r.content + b"kept-in-the-store"
    client.put_object(Bucket=s3_site.bucket, Key=key, Body=marker)
    shutil.rmtree(s3_site.archive.settings.cache_dir / "previews")
    again = s3_site.server.get(url)
    assert again.status_code == 200 and again.content == marker
    # previews are not archived files: db check leaves them alone
    assert key in s3_site.s3.keys(s3_site.bucket, "previews/")


def test_cutout_and_getdata_read_from_the_store(s3_site: S3Site) -> None:
    img = _version(s3_site, "p.mode = 'imaging' AND v.naxis1 > 50 AND v.ra IS "
                   "NOT NULL AND v.header->>'CTYPE1' = 'RA---TAN' "
                   "AND v.file_size < 10000000")
    r = s3_site.server.get("/soda/sync", params={
        "ID": str(img["did"]), "CIRCLE": f"{img['ra']!r} {img['dec']!r} 0.005"})
    assert r.status_code == 200, r.text[:500]
    with fits.open(io.BytesIO(r.content)) as cut:
        whole = fits.open(io.BytesIO(s3_site.sources[str(img["filename"])]))
        assert cut[0].data.size < whole[0].data.size
        whole.close()
    spec = _version(s3_site, "p.product_type IN ('fluxcal_1d', 'extracted_1d', "
                    "'telluric_corrected_1d')")
    r = s3_site.server.get("/ssap", params={"REQUEST": "getData", "FORMAT": "votable",
                                            "PUBDID": str(spec["did"])})
    assert r.status_code == 200, r.text[:500]
    table = strict_votable(r.content).get_first_table()
    assert len(table.array) > 10


def test_object_page_and_spectrum_csv_read_from_the_store(s3_site: S3Site) -> None:
    spec = _version(s3_site, "p.product_type IN ('fluxcal_1d', 'extracted_1d', "
                    "'telluric_corrected_1d') AND p.target_id IS NOT NULL "
                    "AND p.category = 'science' AND v.is_current")
    r = s3_site.server.get(f"/products/{spec['product_id']}/versions/"
                           f"{spec['version_no']}/spectrum.csv")
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert lines[0].startswith("wavelength_angstrom,") and len(lines) > 10
    with s3_site.archive.engine.connect() as conn:
        name = conn.execute(text(
            "SELECT t.name FROM archive.target t JOIN archive.product p "
            "USING (target_id) WHERE p.product_id = :p"),
            {"p": spec["product_id"]}).scalar_one()
    page = s3_site.server.get(f"/objects/{name}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    # the viewer plots the spectrum read from the store, and lists it
    assert 'id="viewer"' in page.text
    assert f'data-product="{spec["product_id"]}"' in page.text


def test_missing_object_is_a_server_fault_not_a_cut_off_download(
        s3_site: S3Site) -> None:
    # the store's GET goes out with the first piece of the body, before the
    # status line is sent: its error is a 500 with the fault's text
    v = _version(s3_site, "v.file_size < 10000000")
    client = s3_site.s3.client()
    key = str(v["storage_key"])
    body = client.get_object(Bucket=s3_site.bucket, Key=key)["Body"].read()
    client.delete_object(Bucket=s3_site.bucket, Key=key)
    try:
        r = s3_site.server.get(f"/products/{v['product_id']}/versions/"
                               f"{v['version_no']}")
        assert r.status_code == 500
        assert r.text.startswith("FatalFault")
    finally:
        client.put_object(Bucket=s3_site.bucket, Key=key, Body=body,
                          Metadata={"sha256": str(v["sha256"])})
