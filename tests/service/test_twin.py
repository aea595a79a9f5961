"""The twin's routing, capabilities and challenges behind a configured https base URL
(Flask's test client; no request here reaches the database, so TAP, whose
capabilities read it, is tested on a live server in test_signin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from lxml import etree

from vo_archive.app import create_app
from vo_archive.config import Settings

BASE = "https://archive.example"


@pytest.fixture
def client() -> Iterator[FlaskClient]:
    app = create_app(Settings(base_url=BASE + "/"))
    with app.test_client() as c:
        yield c


def _interfaces(body: bytes, std: str) -> list[tuple[str, list[str]]]:
    doc = etree.fromstring(body)
    cap = next(c for c in doc.findall("capability") if c.get("standardID") == std)
    return [(i.findtext("accessURL") or "",
             [m.get("standardID") for m in i.findall("securityMethod")])
            for i in cap.findall("interface")]


@pytest.mark.parametrize(("service", "std", "path"), [
    ("scs", "ivo://ivoa.net/std/ConeSearch", "/scs?"),
    ("ssap", "ivo://ivoa.net/std/SSA", "/ssap?"),
    ("siap", "ivo://ivoa.net/std/SIA", "/siap?"),
    ("sia2", "ivo://ivoa.net/std/SIA#query-2.0", "/sia2/query"),
    ("datalink", "ivo://ivoa.net/std/DataLink#links-1.1", "/datalink/links"),
])
def test_capabilities_plain_and_twin(client: FlaskClient, service: str, std: str,
                                     path: str) -> None:
    # one securityMethod per interface (VOResource 1.1 schema)
    both = [(BASE + "/auth" + path, ["ivo://ivoa.net/sso#BasicAA"]),
            (BASE + "/auth" + path, ["ivo://ivoa.net/sso#token"])]
    plain = client.get(f"/{service}/capabilities")
    assert plain.status_code == 200
    got = _interfaces(plain.data, std)
    assert got[0] == (BASE + path, [])
    assert got[-2:] == both
    # optional authentication: 200 with the challenges (IVOA AuthVO §4.1)
    assert any(c.startswith("ivoa_bearer ") for c in
               plain.headers.getlist("WWW-Authenticate"))
    twin = client.get(f"/auth/{service}/capabilities")
    assert twin.status_code == 200
    assert _interfaces(twin.data, std) == both
    assert "private" in twin.headers["Cache-Control"]


def test_the_twin_refuses_anonymous_callers(client: FlaskClient) -> None:
    for path in ("/auth/scs?RA=1&DEC=2&SR=0.1", "/auth/tap/tables", "/auth",
                 "/auth/products/1", "/auth/datalink/links?ID=x"):
        r = client.get(path)
        assert r.status_code == 401, path
        challenges = r.headers.getlist("WWW-Authenticate")
        assert 'Basic realm="PESSTO archive", charset="UTF-8"' in challenges
        assert ('ivoa_bearer standard_id="ivo://ivoa.net/sso#tls-with-password", '
                f'access_url="{BASE}/login"') in challenges
        assert "private" in r.headers["Cache-Control"]
        assert {"Authorization", "Cookie"} <= {
            v.strip() for v in r.headers["Vary"].split(",")}
    # only a path starting with the whole segment is the twin
    assert client.get("/authx/scs/capabilities").status_code == 404


def test_login_form_and_script_answers(client: FlaskClient) -> None:
    form = client.get("/login", headers={"Accept": "text/html"})
    assert form.status_code == 200 and b'id="login-form"' in form.data
    cookie = form.headers["Set-Cookie"]
    assert cookie.startswith("vo_archive_csrf=")
    # https at the proxy: Secure even though this request came in plain
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "no-store" in form.headers["Cache-Control"]
    script = client.get("/login")
    assert script.status_code == 401
    assert script.data.startswith(b"AuthorizationFault: ")
    assert any(c.startswith("Basic ") for c in script.headers.getlist(
        "WWW-Authenticate"))
    # no sign-out without a session or a token
    assert client.post("/logout").status_code == 401
