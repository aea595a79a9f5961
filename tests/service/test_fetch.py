"""Server-side fetches (TAP UPLOAD by URL) cannot reach the archive's own networks.

Every address here is refused before any connection: loopback, private,
link-local (the cloud metadata service), a name resolving to loopback, IPv6 and
IPv4-mapped IPv6, and redirects to them from an allowed server. The answers do
not tell an open port from a closed one. No test sends a packet beyond
loopback: connections are watched, and one to anywhere else fails the test.
"""

from __future__ import annotations

import http.server
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from astropy.io.votable import parse
from flask.testing import FlaskClient

from tests.conftest import Archive, LiveServer
from tests.tap_fixtures import tap_worker  # noqa: F401
from vo_archive.app import create_app
from vo_archive.config import ConfigError, Settings
from vo_archive.web.fetch import FetchPolicy, allowed, parse_allow, policy

VOTABLE = (
    '<?xml version="1.0"?><VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/'
    'VOTable/v1.3"><RESOURCE><TABLE><FIELD name="ra" datatype="double"/>'
    '<FIELD name="dec" datatype="double"/><DATA><TABLEDATA>'
    "<TR><TD>308.2</TD><TD>-11.68</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE>"
    "</VOTABLE>")
QUERY = "SELECT * FROM TAP_UPLOAD.t1"


class Origin:
    """A loopback HTTP server that records the paths asked of it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        seen: list[str] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                port = self.server.server_address[1]
                routes: dict[str, tuple[int, dict[str, str], bytes]] = {
                    "/t.xml": (200, {}, VOTABLE.encode()),
                    "/to-self": (302, {"Location": "/t.xml"}, b""),
                    "/to-127.0.0.2": (302, {"Location":
                                            f"http://127.0.0.2:{port}/t.xml"}, b""),
                    "/to-ipv6": (307, {"Location": f"http://[::1]:{port}/t.xml"}, b""),
                    "/to-metadata": (301, {"Location":
                                           "http://169.254.169.254/latest/"}, b""),
                    "/to-private": (303, {"Location": "http://10.0.0.1/"}, b""),
                    "/loop": (302, {"Location": "/loop"}, b""),
                }
                status, headers, body = routes.get(self.path, (404, {}, b"no"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    yield o
    o.close()


def closed_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _error(content: bytes) -> str:
    vot = parse(io.BytesIO(content), verify="exception")
    info = next(i for i in vot.resources[0].infos if i.name == "QUERY_STATUS")
    assert info.value == "ERROR"
    return str(info.content)


# -- the policy --------------------------------------------------------------------

NONE = FetchPolicy()


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1", False), ("127.1.2.3", False), ("::1", False),
    ("0.0.0.0", False),  # noqa: S104 - an address to refuse, not one to bind
    ("::", False), ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("fe80::1", False), ("fe80::1%lo", False),
    ("fc00::1", False), ("fd12:3456::1", False), ("224.0.0.1", False),
    ("ff02::1", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("100.64.0.1", False), ("192.0.2.1", False), ("198.18.0.1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False),
    ("::ffff:169.254.169.254", False), ("::127.0.0.1", False),
    ("64:ff9b::a00:1", False), ("2002:7f00:1::", False), ("2002:a9fe:a9fe::", False),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c7:1946", True),
    ("::ffff:93.184.216.34", True),
])
def test_addresses_refused_without_an_allow_list(address: str, expected: bool) -> None:
    assert allowed(address, NONE) is expected


def test_allow_list_admits_its_networks_only() -> None:
    rule = FetchPolicy(parse_allow(["127.0.0.1/32", "10.1.0.0/16"]))
    assert allowed("127.0.0.1", rule) and allowed("::ffff:127.0.0.1", rule)
    assert allowed("10.1.2.3", rule)
    assert not allowed("127.0.0.2", rule) and not allowed("::1", rule)
    assert not allowed("10.2.0.1", rule) and not allowed("169.254.169.254", rule)


@pytest.mark.parametrize("value", [["localhost"], ["10.0.0.0/33"], "127.0.0.0/8"])
def test_a_bad_allow_list_is_a_configuration_error(value: Any) -> None:
    with pytest.raises(ConfigError, match="fetch_allow"):
        policy(Settings(extra={"limits": {"fetch_allow": value}}))


# -- through the real server, default configuration ------------------------------------

def _upload(server: LiveServer, url: str) -> requests.Response:
    return requests.post(server.url + "/tap/sync", timeout=60, data={
        "LANG": "ADQL", "QUERY": QUERY, "UPLOAD": f"t1,{url}"})


def test_open_and_closed_loopback_ports_give_the_same_refusal(
        live_server: LiveServer, origin: Origin) -> None:
    answers = [_upload(live_server, url) for url in (
        origin.url("/t.xml"), f"http://127.0.0.1:{closed_port()}/t.xml",
        live_server.url + "/tap/availability", origin.url("/t.xml", "localhost"),
        f"http://[::1]:{origin.port}/t.xml",
        f"http://[::ffff:127.0.0.1]:{origin.port}/t.xml",
        f"http://0.0.0.0:{origin.port}/t.xml")]
    assert {r.status_code for r in answers} == {400}
    assert len({r.content for r in answers}) == 1, [r.text for r in answers]
    assert _error(answers[0].content) == "UsageFault: UPLOAD t1: address not allowed"
    assert origin.seen == [], "refused before connecting"


# -- in-process, with connections watched ---------------------------------------

@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every outgoing connection; one beyond 127.0.0.1 fails the test."""
    made: list[tuple[str, int]] = []
    real = socket.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kw: Any
                          ) -> socket.socket:
        made.append(address)
        if address[0] != "127.0.0.1":
            raise AssertionError(f"connection to {address} attempted")
        return real(address, *args, **kw)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return made


def _client(make_archive: Callable[..., Archive], allow: list[str]) -> FlaskClient:
    archive = make_archive(extra={"limits": {"fetch_allow": allow}})
    return create_app(archive.settings).test_client()


@pytest.fixture(scope="module")
def strict(make_archive: Callable[..., Archive]) -> FlaskClient:
    """An archive allowing no fetch from non-global addresses."""
    return _client(make_archive, [])


@pytest.fixture(scope="module")
def loopback_one(make_archive: Callable[..., Archive]) -> FlaskClient:
    """An archive allowing fetches from 127.0.0.1 only."""
    return _client(make_archive, ["127.0.0.1/32"])


def _sync(client: FlaskClient, url: str) -> tuple[int, str]:
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": QUERY,
                                       "UPLOAD": f"t1,{url}"})
    body = r.get_data()
    return r.status_code, _error(body) if r.status_code >= 400 else body.decode()


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/t.xml", "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/", "http://192.168.0.1:8080/", "http://[fd00::1]/",
    "https://10.0.0.1/", "http://[::ffff:169.254.169.254]/", "http://224.0.0.1/",
    "http://[::1]:5432/", "http://127.0.0.1:5432/", "http://localhost/",
])
def test_private_addresses_are_refused_before_connecting(
        strict: FlaskClient, watched: list[tuple[str, int]], url: str) -> None:
    status, message = _sync(strict, url)
    assert (status, message) == (400, "UsageFault: UPLOAD t1: address not allowed")
    assert watched == []


def test_allow_listed_server_is_fetched(loopback_one: FlaskClient, origin: Origin,
                                        watched: list[tuple[str, int]]) -> None:
    status, body = _sync(loopback_one, origin.url("/to-self"))
    assert status == 200 and "308.2" in body
    assert origin.seen == ["/to-self", "/t.xml"]
    assert watched == [("127.0.0.1", origin.port)] * 2


@pytest.mark.parametrize("path", ["/to-127.0.0.2", "/to-ipv6", "/to-metadata",
                                  "/to-private"])
def test_redirects_out_of_the_allow_list_are_refused(
        loopback_one: FlaskClient, origin: Origin, watched: list[tuple[str, int]],
        path: str) -> None:
    second = Origin("127.0.0.2")  # listening where the redirect points
    try:
        status, message = _sync(loopback_one, origin.url(path))
    finally:
        second.close()
    assert (status, message) == (400, "UsageFault: UPLOAD t1: address not allowed")
    assert origin.seen == [path] and second.seen == []
    assert watched == [("127.0.0.1", origin.port)]


def _not_http() -> tuple[socket.socket, threading.Thread]:
    """A loopback port that is open but answers no HTTP (an SSH-like banner)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_failures_of_allowed_fetches_look_alike(loopback_one: FlaskClient,
                                                origin: Origin,
                                                watched: list[tuple[str, int]]) -> None:
    listener, thread = _not_http()
    try:
        answers = {url: _sync(loopback_one, url) for url in (
            origin.url("/missing"), origin.url("/loop"),
            f"http://127.0.0.1:{closed_port()}/t.xml",
            f"http://127.0.0.1:{listener.getsockname()[1]}/t.xml")}
    finally:
        listener.close()
        thread.join(5)
    assert set(answers.values()) == {
        (400, "UsageFault: UPLOAD t1: could not fetch")}, answers
    assert origin.seen.count("/loop") == 6, "at most 5 redirects followed"


def test_async_job_uploads_are_refused_too(live_server: LiveServer,
                                           tap_worker: Any, origin: Origin) -> None:
    """The job worker fetches with the same rule (its own settings)."""
    r = requests.post(live_server.url + "/tap/async", timeout=60, data={
        "LANG": "ADQL", "QUERY": QUERY, "UPLOAD": f"t1,{origin.url('/t.xml')}",
        "PHASE": "RUN"})
    assert r.status_code == 200 and "/tap/async/" in r.url
    job = r.url
    deadline = time.monotonic() + 60
    while True:
        phase = requests.get(job + "/phase", timeout=30).text.strip()
        if phase in ("ERROR", "COMPLETED", "ABORTED"):
            break
        assert time.monotonic() < deadline, phase
        time.sleep(0.3)
    assert phase == "ERROR"
    error = requests.get(job + "/error", timeout=30)
    assert "UPLOAD t1: address not allowed" in error.text, error.text[:300]
    assert origin.seen == []
