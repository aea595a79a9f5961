"""Runs, objects and downloads over HTTP on the demo archive, and the CLI."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Archive, LiveServer
from vo_archive.retrieval.bundle import parse_manifest


def run_name(server: LiveServer) -> str:
    with server.archive.engine.connect() as conn:
        return str(conn.execute(text(
            "SELECT run_name FROM pessto.products GROUP BY 1 "
            "ORDER BY count(*) DESC LIMIT 1")).scalar_one())


def unpack(data: bytes) -> dict[str, bytes]:
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}  # type: ignore[union-attr]


def check_bundle(content: dict[str, bytes]) -> dict[str, bytes]:
    """Verify the manifest; return the FITS members by file name."""
    (mname,) = [n for n in content if n.endswith("/MANIFEST.sha256")]
    root = mname[: -len("MANIFEST.sha256")]
    manifest = parse_manifest(content[mname].decode())
    assert set(manifest) == {n[len(root):] for n in content if n != mname}
    for name, sha in manifest.items():
        assert hashlib.sha256(content[root + name]).hexdigest() == sha
    return {n[len(root):]: d for n, d in content.items() if n.endswith(".fits")}


def test_runs_page_and_json(live_server: LiveServer) -> None:
    html = live_server.get("/runs")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith(
        "text/html"
    )
    js = live_server.get("/runs?format=json").json()
    accept = live_server.get("/runs", headers={"Accept": "application/json"}).json()
    assert js == accept
    with live_server.archive.engine.connect() as conn:
        expected = dict(conn.execute(text(
            "SELECT r.name, count(p.product_id) FROM pessto.runs r "
            "LEFT JOIN pessto.products p ON p.run_id = r.run_id GROUP BY 1")).all())
    assert {r["name"]: r["products"] for r in js["runs"]} == expected
    for name in expected:
        assert f'href="/runs/{name}"' in html.text
    landing = live_server.get("/")
    assert 'href="/runs"' in landing.text and 'href="/objects"' in landing.text


def test_run_page_json_lists_the_selection(live_server: LiveServer) -> None:
    name = run_name(live_server)
    r = live_server.get(f"/runs/{name}", params={"level": "final", "category": "calib",
                                                 "format": "json"})
    assert r.status_code == 200
    data = r.json()
    with live_server.archive.engine.connect() as conn:
        ids = {x for (x,) in conn.execute(text(
            "SELECT product_id FROM pessto.products WHERE run_name = :r "
            "AND level = 'final' AND category = 'calib'"), {"r": name})}
    assert {p["product_id"] for p in data["products"]} == ids and ids
    assert data["count"] == len(ids)
    page = live_server.get(f"/runs/{name}", params={"level": "final"})
    assert page.text.count('class="pick"') == live_server.get(
        f"/runs/{name}?level=final&format=json").json()["count"]


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_run_download_is_exact_and_verified(live_server: LiveServer, fmt: str) -> None:
    name = run_name(live_server)
    r = live_server.get(f"/runs/{name}/download", params={
        "format": fmt, "mode": "spectroscopy", "level": "final", "version": "all"})
    assert r.status_code == 200
    if fmt == "tar":
        assert int(r.headers["Content-Length"]) == len(r.content)
        assert r.headers["Content-Type"] == "application/x-tar"
    else:
        assert r.headers["Content-Type"] == "application/zip"
    assert f'filename="{name}_selection.{fmt}"' in r.headers["Content-Disposition"]
    files = check_bundle(unpack(r.content))
    with live_server.archive.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT v.filename, v.sha256 FROM pessto.versions v JOIN "
                "archive.product p USING (product_id) JOIN archive.run r USING (run_id)"
                " WHERE r.name = :r AND p.mode = 'spectroscopy' AND p.level = 'final'"
            ),
            {"r": name},
        ).all()
    assert {n.rsplit("/", 1)[-1] for n in files} == {f for f, _ in rows}
    assert sorted(hashlib.sha256(d).hexdigest() for d in files.values()) == \
        sorted(s for _, s in rows)
    assert int(r.headers["X-Archive-Files"]) == len(rows)


def test_post_download_of_explicit_products(live_server: LiveServer) -> None:
    name = run_name(live_server)
    listing = live_server.get(f"/runs/{name}?format=json").json()["products"][:5]
    r = live_server.get(f"/runs/{name}/download")  # GET works too
    assert r.status_code == 200
    import requests

    r = requests.post(f"{live_server.url}/runs/{name}/download", timeout=60, data=[
        ("product", f"{p['product_id']}:{p['version']}") for p in listing])
    files = check_bundle(unpack(r.content))
    assert set(files) == {p["filename"] for p in listing}


def test_object_page_and_download(live_server: LiveServer) -> None:
    js = live_server.get("/objects/sn 2014-pol?format=json&radius=0").json()
    assert js["object"]["name"] == "SN2014pol"
    with live_server.archive.engine.connect() as conn:
        ids = {x for (x,) in conn.execute(text(
            "SELECT product_id FROM pessto.products p JOIN pessto.targets t "
            "USING (target_id) WHERE t.name = 'SN2014pol'"))}
    assert {p["product_id"] for p in js["products"]} == ids and ids
    r = live_server.get("/objects/SN2014pol/download?radius=0&format=zip")
    files = check_bundle(unpack(r.content))
    assert len(files) == len(ids)
    assert live_server.get("/objects").status_code == 200
    assert "SN2014pol" in live_server.get("/objects?q=2014-POL").text
    assert live_server.get("/objects/NoSuchThing").status_code == 404


def test_versions_page(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        pid = conn.execute(text("SELECT product_id FROM pessto.versions "
                                "WHERE version_no = 2 LIMIT 1")).scalar_one()
    js = live_server.get(f"/products/{pid}/versions?format=json").json()
    assert [v["version_no"] for v in js["versions"]] == [1, 2]
    html = live_server.get(f"/products/{pid}/versions")
    assert f"/products/{pid}/versions/2/preview.png" in html.text
    first = live_server.get(js["versions"][0]["url"])
    assert hashlib.sha256(first.content).hexdigest() == js["versions"][0]["sha256"]


@pytest.mark.parametrize("ranges", [(0, 0), (100, 2979), (2880, None)])
def test_range_requests_are_exact(live_server: LiveServer,
                                  ranges: tuple[int, int | None]) -> None:
    with live_server.archive.engine.connect() as conn:
        pid, size = conn.execute(text("SELECT product_id, file_size FROM "
                                      "pessto.products ORDER BY file_size DESC "
                                      "LIMIT 1")).one()
    whole = live_server.get(f"/products/{pid}").content
    assert len(whole) == size
    lo, hi = ranges
    spec = f"bytes={lo}-{'' if hi is None else hi}"
    part = live_server.get(f"/products/{pid}", headers={"Range": spec})
    assert part.status_code == 206
    end = size - 1 if hi is None else hi
    assert part.content == whole[lo:end + 1]
    assert part.headers["Content-Range"] == f"bytes {lo}-{end}/{size}"
    suffix = live_server.get(f"/products/{pid}", headers={"Range": "bytes=-500"})
    assert suffix.content == whole[-500:]
    beyond = live_server.get(f"/products/{pid}", headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416


@pytest.mark.parametrize(("path", "status", "needle"), [
    ("/runs/{run}/download?level=done", 400, "LEVEL"),
    ("/runs/{run}/download?night=2018-13-01", 400, "NIGHT"),
    ("/runs/{run}/download?product=x1", 400, "PRODUCT"),
    ("/runs/{run}/download?product=999999999", 400, "not in run"),
    ("/runs/{run}/download?version=0", 400, "VERSION"),
    ("/runs/{run}/download?version=1&version=2", 400, "VERSION"),
    ("/runs/{run}/download?format=rar", 400, "FORMAT"),
    ("/runs/{run}/download?lvel=final", 400, "unknown parameter LVEL"),
    ("/runs/{run}/download?type=potato", 400, "TYPE"),
    ("/runs/{run}?format=xml", 400, "FORMAT"),
    ("/runs/{run}/download?night=1999-01-01", 404, "no products match"),
    ("/runs/nope/download", 404, "no observing run"),
    ("/objects/SN2014pol?radius=-3", 400, "RADIUS"),
    ("/objects/SN2014pol/download?radius=abc", 400, "RADIUS"),
    ("/products/abc/versions", 400, "not an integer"),
    ("/products/999999999/versions", 404, "no product"),
    ("/runs/{run}/phase3/bundle?format=7z", 400, "FORMAT"),
])
def test_bad_requests_get_text_errors(live_server: LiveServer, path: str, status: int,
                                      needle: str) -> None:
    r = live_server.get(path.format(run=run_name(live_server)))
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("text/plain")
    assert needle in r.text
    assert r.text.startswith(("UsageFault:", "NotFoundFault:"))


def cli(archive: Archive, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    return subprocess.run([sys.executable, "-m", "vo_archive", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_export_run_sees_everything(
    live_server: LiveServer, tmp_path: Path
) -> None:
    archive = live_server.archive
    name = run_name(live_server)
    out = tmp_path / "sel.zip"
    done = cli(archive, "export", "run", name, "--category", "science", "--level",
               "intermediate", "--quiet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    files = check_bundle(unpack(out.read_bytes()))
    with archive.engine.connect() as conn:
        rows = set(conn.execute(text(
            "SELECT v.filename FROM archive.version v JOIN archive.product p "
            "USING (product_id) JOIN archive.run r USING (run_id) WHERE r.name = :r "
            "AND v.is_current AND p.category = 'science' AND p.level = 'intermediate'"),
            {"r": name}).scalars())
    assert set(files) == rows and rows  # intermediates are proprietary: admin sees them
    bad = cli(archive, "export", "run", name, "--level", "finished", "-o",
              str(tmp_path / "x.tar"))
    assert (
        bad.returncode == 2 and "LEVEL" in bad.stderr and "Traceback" not in bad.stderr
    )
    assert not (tmp_path / "x.tar").exists()
    missing = cli(archive, "export", "run", "nope", "-o", str(tmp_path / "y.tar"))
    assert missing.returncode == 2 and "no observing run" in missing.stderr


def test_cli_fetch_verifies(live_server: LiveServer, tmp_path: Path) -> None:
    name = run_name(live_server)
    out = tmp_path / "run.tar"
    done = cli(live_server.archive, "fetch",
               f"{live_server.url}/runs/{name}/download?level=final", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "files verified" in done.stdout
    with live_server.archive.engine.connect() as conn:
        n = conn.execute(
            text(
                "SELECT count(*) FROM pessto.products WHERE "
                "run_name = :r AND level = 'final'"
            ),
            {"r": name},
        ).scalar()
    assert f": {n + 1} files verified" in done.stdout  # + PRODUCTS.csv
    single = cli(live_server.archive, "fetch", f"{live_server.url}/products/1",
                 "-o", str(tmp_path / "one.fits"))
    assert single.returncode == 0 and "1 files verified" in single.stdout
    err = cli(live_server.archive, "fetch", f"{live_server.url}/runs/nope/download",
              "-o", str(tmp_path / "no.tar"))
    assert err.returncode == 2 and "HTTP 404" in err.stderr
