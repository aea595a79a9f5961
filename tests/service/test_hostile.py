"""Hostile clients over real sockets: slowloris, stalled bodies, dropped connections,
malformed HTTP, bad encodings, path traversal. Never a hang, never a 500, never HTML.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from bench.stalled import stall
from tests.auth_fixtures import Accounts, accounts  # noqa: F401
from tests.conftest import Archive, LiveServer, start_server, stop_server

HEAD_TIMEOUT = 3
IDLE_TIMEOUT = 3
BODY_TIMEOUT = 3


@pytest.fixture(scope="module")
def tight_server(demo_archive: Archive, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[LiveServer]:
    """The demo archive served with short timeouts and only 2 x 2 threads."""
    cfg = tmp_path_factory.mktemp("tight") / "archive.toml"
    cfg.write_text(f"[limits]\nhead_timeout = {HEAD_TIMEOUT}\n"
                   f"idle_timeout = {IDLE_TIMEOUT}\nbody_timeout = {BODY_TIMEOUT}\n"
                   "threads = 2\nmax_request_bytes = 100000\n")
    server = start_server(demo_archive, {"VO_ARCHIVE_CONFIG": str(cfg)})
    yield server
    stop_server(server.process)



def _addr(server: LiveServer) -> tuple[str, int]:
    u = urlsplit(server.url)
    assert u.hostname and u.port
    return u.hostname, u.port


def _timed_get(server: LiveServer, path: str = "/") -> float:
    t0 = time.monotonic()
    r = requests.get(server.url + path, timeout=20)
    assert r.status_code == 200
    return time.monotonic() - t0


def test_slowloris_does_not_block_the_server(tight_server: LiveServer) -> None:
    """Far more trickling connections than threads; real requests still answered."""
    host, port = _addr(tight_server)
    socks: list[socket.socket] = []
    stop = threading.Event()
    for _ in range(40):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)

    def trickle() -> None:
        while not stop.is_set():
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")
            stop.wait(0.5)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        latencies = [_timed_get(tight_server) for _ in range(5)]
        assert max(latencies) < 3.0, latencies
        # the trickling heads are cut off after the head timeout, with 408
        time.sleep(HEAD_TIMEOUT + 1.5)
        answers = []
        for s in socks[:5]:
            s.settimeout(5)
            try:
                answers.append(s.recv(4096))
            except OSError:
                answers.append(b"")
        assert all(a.startswith(b"HTTP/1.1 408") or a == b"" for a in answers), answers
        assert any(b"UsageFault: Request Timeout" in a for a in answers), answers
    finally:
        stop.set()
        t.join(5)
        for s in socks:
            s.close()
    assert _timed_get(tight_server) < 3.0


def test_silent_connections_hold_no_thread(tight_server: LiveServer) -> None:
    host, port = _addr(tight_server)
    socks = [socket.create_connection((host, port), timeout=5) for _ in range(30)]
    try:
        time.sleep(0.5)
        assert max(_timed_get(tight_server) for _ in range(3)) < 3.0
    finally:
        for s in socks:
            s.close()


def _stalled_uploads(server: LiveServer, n: int) -> list[socket.socket]:
    host, port = _addr(server)
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                  b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 10)
        socks.append(s)
    return socks


def test_stalled_bodies_are_dropped(tight_server: LiveServer) -> None:
    """A body that never arrives costs one thread for a bounded time, then closes."""
    socks = _stalled_uploads(tight_server, 2)  # fewer than the 4 threads
    try:
        time.sleep(0.5)
        # each stalled body holds a thread for the drain and linger (~2 s)
        assert max(_timed_get(tight_server) for _ in range(3)) < 4.5
        t0 = time.monotonic()
        for s in socks:
            answer = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                answer += chunk
            assert answer == b"" or answer.startswith((b"HTTP/1.1 401",
                                                       b"HTTP/1.1 503")), answer[:100]
        assert time.monotonic() - t0 < IDLE_TIMEOUT + 15, "the server closed them"
    finally:
        for s in socks:
            s.close()


def test_more_stalled_bodies_than_threads_do_not_hang(tight_server: LiveServer
                                                      ) -> None:
    socks = _stalled_uploads(tight_server, 8)  # twice the server's threads
    try:
        t0 = time.monotonic()
        r = requests.get(tight_server.url + "/", timeout=60)
        assert r.status_code == 200
        assert time.monotonic() - t0 < 30, "answered once the stalled ones are cut"
    finally:
        for s in socks:
            s.close()


def test_dropped_connections_leave_the_server_healthy(live_server: LiveServer
                                                      ) -> None:
    host, port = _addr(live_server)
    for i in range(60):
        s = socket.create_connection((host, port), timeout=5)
        if i % 3 == 0:
            s.sendall(b"GET /products/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        elif i % 3 == 1:
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 5000\r\n\r\nab")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
    assert _timed_get(live_server) < 5


def _raw(server: LiveServer, data: bytes) -> bytes:
    host, port = _addr(server)
    with socket.create_connection((host, port), timeout=20) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"Connection: close" not in out[:out.index(
                    b"\r\n\r\n")] and len(out) > 50:
                # keep-alive answer: the head and a short body are enough
                time.sleep(0.2)
                s.settimeout(0.5)
    return out


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"400"),
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"y" * 9000 + b"\r\n\r\n", b"4"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", b"431"),
    (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     b"4"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"400"),
])
def test_malformed_http_gets_a_text_error(live_server: LiveServer, request_bytes: bytes,
                                          status: bytes) -> None:
    answer = _raw(live_server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status), head[:200]
    assert b"text/html" not in head and b"<html" not in body.lower()
    assert body.startswith((b"UsageFault", b"AuthorizationFault")), body[:200]


@pytest.mark.parametrize("path", [
    "/products/../../etc/passwd", "/products/%2e%2e/%2e%2e/etc/passwd",
    "/products/..%2f..%2fetc%2fpasswd", "/products/1/versions/..%2f..%2f..%2fetc",
    "/products/1%00", "/products/-1", "/products/0", "/products/1.5",
    "/products/99999999999999999999999", "/products/1/versions/99999999999",
    "/products/%ff%fe", "/products/1/versions/%c0%ae%c0%ae", "/upload/..%2f..%2fx",
    "/runs/a%00b", "/objects/%00", "/runs/%ff%fe/download",
    "/static/../../../etc/passwd", "//etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
])
def test_path_traversal_and_odd_ids_on_file_routes(live_server: LiveServer,
                                                   path: str) -> None:
    answer = _raw(live_server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close"
                  "\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    code = int(head.split()[1])
    assert code in (400, 401, 404, 405), head[:200]
    assert b"root:" not in body
    assert body.startswith((b"NotFoundFault", b"UsageFault", b"AuthorizationFault",
                            )), body[:200]


@pytest.mark.parametrize("query", [
    "a=%ff%fe", "%ff=1", "a=%c0%80", "a=%ed%a0%80", "a=%00", "a=" + "x" * 8000,
    "a=1&a=2&a=3" + "&a=4" * 500, "=&=&&", "a",
])
def test_bad_query_strings_never_fail_the_server(live_server: LiveServer,
                                                 query: str) -> None:
    for path in ("/", "/products/1"):
        r = requests.get(f"{live_server.url}{path}?{query}", timeout=30)
        assert r.status_code < 500, (path, query, r.status_code, r.text[:200])
        assert "<html" not in r.text[:200].lower() or path == "/"


def test_oversized_bodies_get_413(live_server: LiveServer) -> None:
    host, port = _addr(live_server)
    with socket.create_connection((host, port), timeout=20) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\nabc")
        answer = s.recv(65536)
    assert answer.startswith((b"HTTP/1.1 413", b"HTTP/1.1 405")), answer[:200]


def test_server_log_has_no_tracebacks_from_hostile_input(live_server: LiveServer
                                                         ) -> None:
    logs = list(Path(live_server.archive.settings.home).glob("server-*.log"))
    assert logs
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "unexpected error" not in text, text[-3000:]


# -- requests that once answered 500 ------------------------------------------------

_NAMELESS_PART = (b"--XX\r\nContent-Disposition: form-data\r\n\r\nfoo\r\n--XX--\r\n")


@pytest.mark.parametrize("path", ["/tap/sync", "/tap/async", "/scs", "/ssap",
                                  "/sia2/query", "/siap", "/datalink/links"])
def test_multipart_part_without_a_name_is_a_usage_fault(live_server: LiveServer,
                                                        path: str) -> None:
    r = requests.post(live_server.url + path, data=_NAMELESS_PART, timeout=30,
                      headers={"Content-Type": "multipart/form-data; boundary=XX"})
    # SCS 1.03 answers its errors with HTTP 200 and the error VOTable
    assert r.status_code == (200 if path == "/scs" else 400), (path, r.status_code,
                                                               r.text[:300])
    assert "part has no name" in r.text, r.text[:300]


@pytest.mark.parametrize("extra", [{"BAND": "5e-7"}, {"TIME": "2012-01-01/2014-01-01"},
                                   {"BAND": "4e-7/8e-7", "TIME": "2012-01-01/"}])
def test_ssap_unknown_collection_with_band_or_time(live_server: LiveServer,
                                                   extra: dict[str, str]) -> None:
    from astropy.io.votable import parse

    r = live_server.get("/ssap", params={"REQUEST": "queryData", "COLLECTION": "nope",
                                         **extra})
    assert r.status_code == 200, r.text[:300]
    table = parse(io.BytesIO(r.content), verify="exception").get_first_table()
    assert len(table.array) == 0


def test_upload_file_name_with_nul_is_rejected(live_server: LiveServer,
                                               accounts: Accounts) -> None:
    r = requests.post(live_server.url + "/upload", headers=accounts.reducer.bearer,
                      files={"file": ("a\x00b.fits", b"SIMPLE  =")}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    result = r.json()["files"][0]
    assert result["outcome"] == "rejected" and "unsafe file name" in result["reason"]


@pytest.mark.parametrize("expression", [
    "(" * 300 + "1" + ")" * 300, "+".join(["1"] * 6000),
    "ABS(" * 2000 + "1" + ")" * 2000, "(" * 3000 + "1" + ")" * 3000])
def test_deep_or_huge_adql_is_a_quick_400(live_server: LiveServer, expression: str
                                          ) -> None:
    from astropy.io.votable import parse

    t0 = time.monotonic()
    r = requests.post(live_server.url + "/tap/sync", timeout=60, data={
        "LANG": "ADQL", "QUERY": f"SELECT TOP 1 {expression} AS x FROM ivoa.ObsCore"})
    assert time.monotonic() - t0 < 5.0, "refused before parsing (it took 54 s)"
    assert r.status_code == 400, r.text[:300]
    vot = parse(io.BytesIO(r.content), verify="exception")
    info = next(i for i in vot.resources[0].infos if i.name == "QUERY_STATUS")
    assert info.value == "ERROR" and "UsageFault" in (info.content or "")
    assert "more than" in (info.content or ""), info.content


# -- stalled bodies and unread bodies ----------------------------------------------

def _stalled_posts(server: LiveServer, n: int) -> list[socket.socket]:
    """POST heads with part of the body: half small forms, half large ones."""
    return stall(*_addr(server), n)


def test_stalled_bodies_do_not_delay_cone_searches(live_server: LiveServer) -> None:
    """60 connections stalled in their bodies; cone searches still answer at once."""
    socks = _stalled_posts(live_server, 60)
    try:
        time.sleep(1.0)
        latencies = []
        for i in range(10):
            t0 = time.monotonic()
            r = requests.get(live_server.url + "/scs", timeout=30,
                             params={"RA": str(10 + i), "DEC": "-20", "SR": "1"})
            latencies.append(time.monotonic() - t0)
            assert r.status_code == 200, r.text[:200]
        assert max(latencies) < 1.0, latencies
        # the large ones beyond the readers' bound were refused at once
        refused = 0
        for s in socks[::2]:
            s.settimeout(0.2)
            with contextlib.suppress(OSError):
                refused += s.recv(200).startswith(b"HTTP/1.1 503")
        assert refused > 0
    finally:
        for s in socks:
            s.close()


def test_stalled_large_body_gets_408_at_its_deadline(tight_server: LiveServer
                                                     ) -> None:
    """A large body stalled in a route that reads it is cut at the body deadline."""
    host, port = _addr(tight_server)
    with socket.create_connection((host, port), timeout=60) as s:
        t0 = time.monotonic()
        s.sendall(b"POST /tap/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 90000\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\nLANG=")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        took = time.monotonic() - t0
    head = answer.partition(b"\r\n\r\n")[0]
    # 400 when the form parser sees the cut (werkzeug's ClientDisconnected)
    assert head.startswith((b"HTTP/1.1 408", b"HTTP/1.1 400")), answer[:300]
    assert b"Connection: close" in head
    assert BODY_TIMEOUT - 0.5 < took < BODY_TIMEOUT + 5, took


def _keepalive_pair(server: LiveServer, method: str, path: str, body: bytes,
                    headers: dict[str, str]) -> tuple[int, str | None]:
    """Send a refused request, then a normal one on the same http.client connection."""
    host, port = _addr(server)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        first = conn.getresponse()
        first.read()
        status, connection = first.status, first.getheader("Connection")
        # the next request goes on the same connection, or on a new one when the
        # server said it closes this one: it must not fail either way
        conn.request("GET", "/scs?RA=10&DEC=-20&SR=1")
        second = conn.getresponse()
        assert second.status == 200
        second.read()
    finally:
        conn.close()
    return status, connection


BIG = b"x" * 200_000


@pytest.mark.parametrize(("method", "path", "body", "auth", "status"), [
    ("PUT", "/upload/a.fits", BIG, None, 401),
    ("PUT", "/upload/a.fits", BIG, "member", 403),
    ("POST", "/upload", BIG, None, 401),
    ("POST", "/tap/sync", BIG, "wrong", 401),
    ("PUT", "/upload/a.fits", b"x" * 1000, None, 401),
    ("POST", "/tap/sync", b"x" * 1000, "wrong", 401),
])
def test_refused_request_with_unread_body_keeps_clients_working(
        live_server: LiveServer, accounts: Accounts, method: str, path: str,
        body: bytes, auth: str | None, status: int) -> None:
    headers = {"Content-Type": "application/octet-stream"}
    if auth == "member":
        headers.update(accounts.member.bearer)
    elif auth == "wrong":
        headers["Authorization"] = "Bearer pva_wrong"
    got, connection = _keepalive_pair(live_server, method, path, body, headers)
    assert got == status
    if len(body) > 64 << 10:
        assert connection == "close"


def test_413_says_connection_close(tight_server: LiveServer) -> None:
    """Bodies over max_request_bytes (100,000 here) are refused unread."""
    with requests.Session() as session:
        r = session.post(tight_server.url + "/tap/sync", data=b"x" * 300_000,
                         headers={"Content-Type": "application/x-www-form-urlencoded"},
                         timeout=30)
        assert r.status_code == 413 and r.headers["Connection"] == "close"
        again = session.get(tight_server.url + "/scs?RA=1&DEC=1&SR=0.1",
                            timeout=30)
        assert again.status_code == 200


def test_keepalive_session_survives_refused_uploads(live_server: LiveServer) -> None:
    """requests reuses its connection: a refused upload must not break the next call."""
    with requests.Session() as session:
        for _ in range(3):
            r = session.put(live_server.url + "/upload/a.fits", data=BIG, timeout=30)
            assert r.status_code == 401
            assert r.headers["Connection"] == "close"
            r = session.get(live_server.url + "/scs?RA=10&DEC=-20&SR=1", timeout=30)
            assert r.status_code == 200
