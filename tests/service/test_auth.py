"""Authentication over real HTTP: Bearer, Basic, 401/403, files, pipeline uploads."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from tests.auth_fixtures import Accounts, accounts, drop_accounts, make_accounts  # noqa: F401
from tests.conftest import Archive, LiveServer, start_server, stop_server


def landing_count(server: LiveServer, headers: dict[str, str] | None = None) -> int:
    r = server.get("/", headers=headers or {})
    assert r.status_code == 200, r.text
    m = re.search(r"<strong>(\d+)</strong> products visible to you", r.text)
    assert m, r.text[:500]
    return int(m.group(1))


def hidden_products(archive: Archive) -> list[tuple[int, int, str]]:
    """(product_id, version_no, sha256) of current versions not yet public."""
    with archive.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT p.product_id, v.version_no, v.sha256 FROM archive.product p "
            "JOIN archive.version v ON v.product_id = p.product_id AND v.is_current "
            "WHERE NOT coalesce(p.release_date <= now(), false) ORDER BY 1"))]


def assert_401(r: requests.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.text[:300])
    challenges = r.raw.headers.getlist("WWW-Authenticate")
    assert any(c.startswith("Bearer ") for c in challenges), challenges
    assert any(c.startswith("Basic ") for c in challenges), challenges


def test_every_credential_form_sees_proprietary_counts(live_server: LiveServer,
                                                       accounts: Accounts) -> None:
    anonymous = landing_count(live_server)
    with live_server.archive.engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM archive.product")).scalar_one()
    assert 0 < anonymous < total, "the demo archive holds proprietary products"
    m = accounts.member
    for headers in (m.bearer, m.basic, m.basic_token, accounts.admin.bearer,
                    accounts.reducer.basic):
        assert landing_count(live_server, headers) == total
    # an account without roles authenticates but sees what anonymous sees
    assert landing_count(live_server, accounts.outsider.bearer) == anonymous
    # the scheme name is case-insensitive (RFC 9110 §11.1)
    assert landing_count(live_server, {"Authorization": f"bearer {m.token}"}) == total


@pytest.mark.parametrize("header", [
    "Bearer pva_not-a-real-token", "Bearer", "Basic Zm9vOmJhcg==", "Basic @@@",
    "Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEF", "Digest username=\"x\"",
])
def test_wrong_credentials_are_401_never_anonymous(live_server: LiveServer,
                                                   header: str) -> None:
    for path in ("/", "/products/1", "/no/such/page"):
        r = live_server.get(path, headers={"Authorization": header})
        assert_401(r)
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.text.startswith("AuthorizationFault: ")


def test_capabilities_and_availability_stay_anonymous(live_server: LiveServer) -> None:
    bad = {"Authorization": "Bearer pva_wrong"}
    for service in ("scs", "siap", "sia2", "ssap", "tap", "datalink"):
        for leaf in ("capabilities", "availability"):
            r = live_server.get(f"/{service}/{leaf}", headers=bad)
            assert r.status_code == 200, (service, leaf, r.status_code)
            # answered as to anyone (the challenges say signing in is possible)
            assert "X-VO-Authenticated" not in r.headers
        # the service itself refuses the bad token
        assert live_server.get(f"/{service}", headers=bad).status_code in (401, 404)


def test_wrong_password_and_other_users_token(live_server: LiveServer,
                                              accounts: Accounts) -> None:
    import base64

    def basic(user: str, secret: str) -> dict[str, str]:
        raw = base64.b64encode(f"{user}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    m, r_ = accounts.member, accounts.reducer
    assert_401(live_server.get("/", headers=basic(m.name, m.password + "x")))
    assert_401(live_server.get("/", headers=basic(m.name, r_.token)))
    assert_401(live_server.get("/", headers=basic(r_.name, m.password)))
    assert_401(live_server.get("/", headers=basic("nobody-" + m.name, m.password)))


def test_single_files_follow_the_access_rule(live_server: LiveServer,
                                             accounts: Accounts) -> None:
    hidden = hidden_products(live_server.archive)
    assert hidden, "the demo archive holds proprietary products"
    for pid, vno, sha in hidden[:3] + hidden[-2:]:
        for path in (f"/products/{pid}", f"/products/{pid}/versions/{vno}"):
            anon = live_server.get(path)
            assert_401(anon)  # signing in may show it
            assert anon.text.startswith("AuthorizationFault") and sha not in anon.text
            assert live_server.get(path, headers=accounts.outsider.bearer
                                   ).status_code == 404
            ok = live_server.get(path, headers=accounts.member.bearer)
            assert ok.status_code == 200
            assert hashlib.sha256(ok.content).hexdigest() == sha
            rng = live_server.get(path, headers={**accounts.member.basic,
                                                 "Range": "bytes=0-79"})
            assert rng.status_code == 206 and rng.content.startswith(b"SIMPLE  =")
            assert live_server.get(path, headers={"Range": "bytes=0-79"}
                                   ).status_code == 401
            head = requests.head(live_server.url + path, timeout=30)
            assert head.status_code == 401


# -- pipeline uploads ----------------------------------------------------------

UPLOAD_LIMIT = 3 << 20


@pytest.fixture(scope="module")
def upload_server(make_archive: Callable[..., Archive]
                  ) -> Iterator[tuple[LiveServer, Accounts]]:
    archive = make_archive()
    (archive.settings.home / "archive.toml").write_text(
        f"[limits]\nmax_request_bytes = {UPLOAD_LIMIT}\n")
    made = make_accounts(archive)
    server = start_server(archive)
    yield server, made
    stop_server(server.process)
    drop_accounts(archive, made)


def _post(server: LiveServer, files: list[tuple[str, bytes]],
          headers: dict[str, str]) -> requests.Response:
    return requests.post(server.url + "/upload", headers=headers, timeout=120,
                         files=[("file", (n, d, "application/fits")) for n, d in files])


def test_upload_needs_the_reducer_role(upload_server: tuple[LiveServer, Accounts],
                                       demo_files: list[Path]) -> None:
    server, acc = upload_server
    f = demo_files[0]
    files = [(f.name, f.read_bytes())]
    assert_401(_post(server, files, {}))
    r = _post(server, files, acc.member.bearer)
    assert r.status_code == 403 and r.text.startswith("AuthorizationFault")
    assert "reducer" in r.text
    assert _post(server, files, acc.outsider.bearer).status_code == 403
    r = requests.put(f"{server.url}/upload/{f.name}", data=f.read_bytes(), timeout=60)
    assert_401(r)
    with server.archive.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM archive.version")
                            ).scalar_one() == 0


def test_upload_results_per_file(upload_server: tuple[LiveServer, Accounts],
                                 demo_files: list[Path], tmp_path: Path) -> None:
    server, acc = upload_server
    chosen = demo_files[10:16]
    files = [(p.name, p.read_bytes()) for p in chosen]
    files.append(("notes.fits", b"this is not FITS at all" * 10))
    files.append(("../../etc/passwd.fits", chosen[0].read_bytes()))
    r = _post(server, files, acc.reducer.bearer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["uploaded_by"] == acc.reducer.name
    outcomes = [f["outcome"] for f in body["files"]]
    assert outcomes[:6] == ["new"] * 6
    assert outcomes[6] == "rejected" and body["files"][6]["reason"]
    assert body["summary"] == {"new": 6, "new_version": 0, "unchanged": 0,
                               "rejected": 2}
    # a path in the part's file name never reaches storage as a path
    assert body["files"][7]["outcome"] == "rejected"
    assert "unsafe file name" in body["files"][7]["reason"]
    storage = server.archive.settings.storage_dir
    assert not any(".." in str(p) or p.name == "passwd.fits"
                   for p in storage.rglob("*"))
    # each new product is downloadable by a member, byte for byte
    for p, res in zip(chosen, body["files"][:6], strict=True):
        got = requests.get(res["url"], headers=acc.member.bearer, timeout=30)
        assert got.status_code == 200
        assert got.content == p.read_bytes()
    # same files again: unchanged, nothing new stored
    again = _post(server, files[:6], acc.admin.basic).json()
    assert [f["outcome"] for f in again["files"]] == ["unchanged"] * 6
    with server.archive.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT v.filename, p.product_type, p.level, p.release_date, v.sha256 "
            "FROM archive.version v JOIN archive.product p USING (product_id) "
            "ORDER BY v.filename")).all()
        log = conn.execute(text(
            "SELECT account, outcome FROM archive.upload_log ORDER BY upload_id")).all()
    assert len(rows) == 6
    assert (acc.reducer.name, "new") in log and (acc.admin.name, "unchanged") in log
    assert all(a in (acc.reducer.name, acc.admin.name) for a, _ in log)


def test_upload_by_put(upload_server: tuple[LiveServer, Accounts],
                       demo_files: list[Path]) -> None:
    server, acc = upload_server
    f = demo_files[20]
    url = f"{server.url}/upload/{f.name}"
    r = requests.put(url, data=f.read_bytes(), headers=acc.reducer.bearer, timeout=60)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == r.json()["files"][0]["url"]
    r = requests.put(url, data=f.read_bytes(), headers=acc.reducer.basic_token,
                     timeout=60)
    assert r.status_code == 200 and r.json()["files"][0]["outcome"] == "unchanged"
    bad = requests.put(f"{server.url}/upload/garbage.fits", data=b"\0" * 5000,
                       headers=acc.reducer.bearer, timeout=60)
    assert bad.status_code == 422 and bad.json()["files"][0]["outcome"] == "rejected"
    for name in ("..%2F..%2Fx.fits", "a/b.fits", ".hidden.fits", "x" * 300 + ".fits"):
        r = requests.put(f"{server.url}/upload/{name}", data=f.read_bytes(),
                         headers=acc.reducer.bearer, timeout=60)
        assert r.status_code in (400, 404), (name, r.status_code)
        assert r.text.startswith(("UsageFault", "NotFoundFault")), r.text[:200]
    empty = requests.put(f"{server.url}/upload/empty.fits", data=b"",
                         headers=acc.reducer.bearer, timeout=60)
    assert empty.status_code == 422


def test_uploads_over_the_limit_get_413(upload_server: tuple[LiveServer, Accounts]
                                        ) -> None:
    server, acc = upload_server
    big = b"\0" * (UPLOAD_LIMIT + 1024)
    r = requests.put(f"{server.url}/upload/big.fits", data=big,
                     headers=acc.reducer.bearer, timeout=60)
    assert r.status_code == 413 and r.text.startswith("UsageFault")

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"\0" * (UPLOAD_LIMIT // 4)

    r = requests.put(f"{server.url}/upload/chunked.fits", data=chunks(),
                     headers=acc.reducer.bearer, timeout=60)
    assert r.status_code == 413 and r.text.startswith("UsageFault")
    r = _post(server, [("big.fits", big)], acc.reducer.bearer)
    assert r.status_code == 413
    # the limit is checked before credentials are even needed? No: 401 first for
    # anonymous, so a stranger learns nothing about the limit.
    r = requests.post(server.url + "/upload", data=b"x" * 100, timeout=60,
                      headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 401
    with server.archive.engine.connect() as conn:
        names = set(conn.execute(text("SELECT filename FROM archive.version")
                                 ).scalars())
    assert not names & {"big.fits", "chunked.fits"}


def test_upload_crash_leaves_no_trace(make_archive: Callable[..., Archive],
                                      demo_files: list[Path]) -> None:
    archive = make_archive()
    made = make_accounts(archive)
    f = demo_files[30]
    server = start_server(archive, {"VO_ARCHIVE_INGEST_FAULT": "after_journal"})
    try:
        with pytest.raises(requests.ConnectionError):
            requests.put(f"{server.url}/upload/{f.name}", data=f.read_bytes(),
                         headers=made.reducer.bearer, timeout=60)
    finally:
        stop_server(server.process)
    with archive.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM archive.ingest_journal")
                            ).scalar_one() == 1, "the crash happened after journaling"
        assert conn.execute(text("SELECT count(*) FROM archive.version")
                            ).scalar_one() == 0
    server = start_server(archive)
    try:
        r = requests.put(f"{server.url}/upload/{f.name}", data=f.read_bytes(),
                         headers=made.reducer.bearer, timeout=60)
        assert r.status_code == 201, r.text
    finally:
        stop_server(server.process)
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    check = subprocess.run([sys.executable, "-m", "vo_archive", "db", "check",
                            "--deep"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0 and "OK" in check.stdout, check.stdout + check.stderr
    assert "removed orphan" not in check.stdout
    with archive.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM archive.ingest_journal")
                            ).scalar_one() == 0
    root = archive.settings.storage_dir
    stored = [p for p in root.rglob("*.fits") if p.relative_to(root).parts[0] != "tmp"]
    assert len(stored) == 1
    assert hashlib.sha256(stored[0].read_bytes()).hexdigest() == \
        hashlib.sha256(f.read_bytes()).hexdigest()
    drop_accounts(archive, made)
