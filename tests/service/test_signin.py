"""Sign-in over real HTTP: caching headers, challenges, the authenticated twin,
/login tokens and browser sessions (CSRF, fixation, sign-out)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import text

from tests.auth_fixtures import AccessSite, access_site  # noqa: F401

BASIC_AA = "ivo://ivoa.net/sso#BasicAA"
ARCHIVE = "ivo://pessto.ia2.inaf.it/pessto#archive"
TLS_PW = "ivo://ivoa.net/sso#tls-with-password"


def _hidden_version(site: AccessSite) -> tuple[int, int, str]:
    with site.server.archive.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT p.product_id, v.version_no, v.sha256 FROM archive.product p "
            "JOIN archive.version v ON v.product_id = p.product_id AND v.is_current "
            "WHERE NOT coalesce(p.release_date <= now(), false) "
            "ORDER BY p.product_id LIMIT 1")).one()
    return int(row[0]), int(row[1]), str(row[2])


def _public_version(site: AccessSite) -> tuple[int, int]:
    pid = min(site.hidden.visible_ids)
    return pid, 1


def _challenges(r: requests.Response) -> list[str]:
    return list(r.raw.headers.getlist("WWW-Authenticate"))


def _vary(r: requests.Response) -> set[str]:
    return {v.strip().lower() for v in r.headers.get("Vary", "").split(",")}


def _cache(r: requests.Response) -> set[str]:
    return {v.strip().lower() for v in r.headers.get("Cache-Control", "").split(",")}


def _login_url(r: requests.Response, standard_id: str) -> str:
    for c in _challenges(r):
        if c.startswith("ivoa_bearer ") and f'standard_id="{standard_id}"' in c:
            m = re.search(r'access_url="([^"]+)"', c)
            assert m, c
            return m.group(1)
    raise AssertionError(f"no ivoa_bearer {standard_id} challenge in {_challenges(r)}")


def _assert_challenged(r: requests.Response, status: int = 401) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    got = _challenges(r)
    assert any(c.startswith("Basic realm=") for c in got), got
    assert any(c.startswith("Bearer ") for c in got), got
    assert _login_url(r, BASIC_AA).endswith("/login")
    assert _login_url(r, TLS_PW).endswith("/login")


# -- caches ----------------------------------------------------------------------------

def _fill(path: str, pid: int, vno: int) -> str:
    values = {"product_id": str(pid), "version_no": str(vno), "run_name": "x",
              "name": "x", "job_id": "nosuchjob", "suffix": "json"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def test_every_route_answers_members_privately(access_site: AccessSite) -> None:
    """Every route of the OpenAPI description, answered to a caller with
    credentials: ``private`` and ``Vary: Authorization, Cookie``; public answers
    to anonymous callers vary on the credentials too."""
    url = access_site.server.url
    spec = requests.get(url + "/openapi.json", timeout=60).json()
    pid, vno, _ = _hidden_version(access_site)
    member = access_site.accounts.member
    checked = 0
    for path, ops in spec["paths"].items():
        for method in ops:
            if method not in ("get", "post") or path in ("/logout",):
                continue
            target = url + _fill(path, pid, vno)
            for headers in (member.bearer, member.basic):
                r = requests.request(method.upper(), target, headers=headers,
                                     timeout=120, allow_redirects=False)
                assert r.status_code < 500, (method, path, r.status_code, r.text[:200])
                assert "private" in _cache(r), (method, path, r.headers)
                assert "public" not in _cache(r), (method, path, r.headers)
                assert {"authorization", "cookie"} <= _vary(r), (method, path)
                if not path.endswith(("/capabilities", "/availability")):
                    # VOSI 1.1 §2: those are anonymous whatever is sent
                    assert r.headers.get("X-VO-Authenticated") == member.name, path
                checked += 1
            anon = requests.request(method.upper(), target, timeout=120,
                                    allow_redirects=False)
            assert {"authorization", "cookie"} <= _vary(anon), (method, path)
    assert checked > 60, checked


def test_files_and_previews_cache_publicly_only_for_anonymous(
        access_site: AccessSite) -> None:
    url = access_site.server.url
    pid, vno = _public_version(access_site)
    for path in (f"/products/{pid}/versions/{vno}",
                 f"/products/{pid}/versions/{vno}/preview.png"):
        anon = requests.get(url + path, timeout=120)
        assert anon.status_code == 200
        assert "public" in _cache(anon) and {"authorization", "cookie"} <= _vary(anon)
        member = requests.get(url + path, timeout=120,
                              headers=access_site.accounts.member.bearer)
        assert member.status_code == 200
        assert "private" in _cache(member) and "public" not in _cache(member)
    hid, hvno, _ = _hidden_version(access_site)
    r = requests.get(f"{url}/products/{hid}/versions/{hvno}", timeout=120,
                     headers=access_site.accounts.member.basic)
    assert r.status_code == 200
    assert _cache(r) >= {"private", "max-age=3600"}, r.headers


# -- challenges ------------------------------------------------------------------------

def test_anonymous_answers_name_how_to_sign_in(access_site: AccessSite) -> None:
    url = access_site.server.url
    did = sorted(access_site.hidden.visible_dids)[0]
    for path in ("/scs?RA=10&DEC=-20&SR=1", "/sia2/query?POS=CIRCLE+10+-20+1",
                 "/ssap?REQUEST=queryData&POS=10,-20&SIZE=1", "/siap?POS=10,-20&SIZE=1",
                 "/tap/sync?LANG=ADQL&QUERY=SELECT+TOP+1+*+FROM+ivoa.obscore",
                 f"/datalink/links?ID={quote(did, safe='')}", "/runs", "/objects",
                 "/", "/tap/capabilities", "/moc.json"):
        r = requests.get(url + path, timeout=120)
        _assert_challenged(r, 200)
        assert _login_url(r, BASIC_AA) == url + "/login"
    # no challenge where signing in changes nothing, or where a browser would
    # answer it with a password dialog
    assert not _challenges(requests.get(url + "/openapi.json", timeout=60))
    form = requests.get(url + "/login", headers={"Accept": "text/html"}, timeout=60)
    assert form.status_code == 200 and not _challenges(form)


def test_proprietary_files_previews_and_links_ask_anonymous_to_sign_in(
        access_site: AccessSite) -> None:
    url = access_site.server.url
    pid, vno, sha = _hidden_version(access_site)
    did = f"{sorted(access_site.hidden.dids)[0]}"
    paths = [f"/products/{pid}", f"/products/{pid}/versions/{vno}",
             f"/products/{pid}/versions/{vno}/preview.png",
             f"/datalink/links?ID={quote(did, safe='')}",
             # a product that does not exist answers the same: no oracle
             "/products/987654321", "/products/987654321/versions/1/preview.png"]
    for path in paths:
        r = requests.get(url + path, timeout=120)
        _assert_challenged(r)
        assert sha not in r.text and "AuthorizationFault" in r.text
        ok = requests.get(url + path, timeout=120,
                          headers=access_site.accounts.member.bearer)
        assert ok.status_code == (404 if "987654321" in path else 200), path
    # an account without the member role is told "not found", not asked again
    r = requests.get(f"{url}/products/{pid}", timeout=60,
                     headers=access_site.accounts.outsider.bearer)
    assert r.status_code == 404 and not _challenges(r)


# -- the authenticated twin ------------------------------------------------------------

def test_the_twin_always_asks_for_credentials(access_site: AccessSite) -> None:
    url = access_site.server.url
    member = access_site.accounts.member
    for path in ("/auth/scs?RA=10&DEC=-20&SR=1", "/auth/tap/sync?LANG=ADQL&QUERY="
                 "SELECT+TOP+1+*+FROM+ivoa.obscore", "/auth/tap/tables", "/auth/",
                 "/auth/sia2/query?POS=CIRCLE+10+-20+1", "/auth/runs",
                 f"/auth/products/{min(access_site.hidden.visible_ids)}"):
        _assert_challenged(requests.get(url + path, timeout=120))
        ok = requests.get(url + path, headers=member.basic, timeout=120)
        assert ok.status_code == 200, (path, ok.status_code, ok.text[:200])
        assert "private" in _cache(ok)
    # VOSI capabilities and availability stay anonymous (VOSI 1.1 §2)
    for leaf in ("capabilities", "availability"):
        assert requests.get(f"{url}/auth/tap/{leaf}", timeout=60).status_code == 200


def test_answers_to_members_point_into_the_twin(access_site: AccessSite) -> None:
    url = access_site.server.url
    ra, dec, did = access_site.hidden.positions[0]
    member = access_site.accounts.member
    cone = f"scs?RA={ra}&DEC={dec}&SR=0.01"
    for path in (f"/{cone}", f"/auth/{cone}"):
        r = requests.get(url + path, headers=member.bearer, timeout=120)
        assert r.status_code == 200 and did in r.text
        urls = {u for u in re.findall(r"http://[^<\"\s]+", r.text)
                if u.startswith(url)}
        assert urls and all(u.startswith(url + "/auth/") for u in urls), urls
    anon = requests.get(f"{url}/scs?RA={ra}&DEC={dec}&SR=3", timeout=120)
    assert f"{url}/auth/" not in anon.text


def test_capabilities_declare_the_twin(access_site: AccessSite) -> None:
    from lxml import etree

    url = access_site.server.url
    for service, std in (("scs", "ivo://ivoa.net/std/ConeSearch"),
                         ("tap", "ivo://ivoa.net/std/TAP"),
                         ("ssap", "ivo://ivoa.net/std/SSA"),
                         ("datalink", "ivo://ivoa.net/std/DataLink#links-1.1")):
        for twin in ("", "/auth"):
            doc = etree.fromstring(requests.get(
                f"{url}{twin}/{service}/capabilities", timeout=60).content)
            cap = next(c for c in doc.findall("capability")
                       if c.get("standardID") == std)
            ifaces = [(i.findtext("accessURL"),
                       sorted(m.get("standardID") for m in i.findall("securityMethod")))
                      for i in cap.findall("interface")]
            # one securityMethod per interface (VOResource 1.1 schema)
            twin_ifaces = [i for i in ifaces if "/auth/" in (i[0] or "")]
            assert sorted(m for _, m in twin_ifaces) == [
                [BASIC_AA], ["ivo://ivoa.net/sso#token"]], ifaces
            if twin:
                assert all("/auth/" in (u or "") for u, _ in ifaces), ifaces
            else:
                assert (f"{url}/{service}" in (ifaces[0][0] or "")
                        and ifaces[0][1] == []), ifaces
            root = [c for c in doc.findall("capability")
                    if c.get("standardID") == ARCHIVE]
            # anonymous, then Basic and token (one method per interface)
            assert [i.findtext("accessURL") for i in root[0].findall("interface")
                    ] == [url + "/"] * 3


# -- /login for scripts ----------------------------------------------------------------

def test_a_script_follows_the_challenge_to_a_token(access_site: AccessSite) -> None:
    """Start anonymous, read the challenge, sign in where it says, retry."""
    pid, vno, sha = _hidden_version(access_site)
    member = access_site.accounts.member
    target = f"{access_site.server.url}/products/{pid}/versions/{vno}"
    first = requests.get(target, timeout=60)
    _assert_challenged(first)
    login = _login_url(first, BASIC_AA)
    got = requests.get(login, auth=(member.name, member.password), timeout=60)
    assert got.status_code == 200, got.text
    token = got.headers["X-VO-Bearer"]
    body = got.json()
    assert body["token"] == token
    assert body["token_type"] == "Bearer"  # noqa: S105 - RFC 6750's name
    assert 0 < body["expires_in"] <= 24 * 3600 and body["account"] == member.name
    assert "no-store" in _cache(got)
    again = requests.get(target, headers={"Authorization": f"Bearer {token}"},
                         timeout=60)
    assert again.status_code == 200
    import hashlib

    assert hashlib.sha256(again.content).hexdigest() == sha
    # tls-with-password: the same with form fields, and the token as text
    login2 = _login_url(first, TLS_PW)
    txt = requests.post(login2, data={"username": member.name,
                                      "password": member.password},
                        headers={"Accept": "text/plain"}, timeout=60)
    assert txt.status_code == 200
    assert txt.headers["Content-Type"].startswith("text/plain")
    assert txt.text.strip() == txt.headers["X-VO-Bearer"] != token
    # the tokens are stored hashed, as login tokens that expire within a day
    with access_site.server.archive.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT kind, expires_at - now() FROM archive.token WHERE token_hash IN "
            "(encode(sha256(CAST(:a AS bytea)), 'hex'), "
            "encode(sha256(CAST(:b AS bytea)), 'hex'))"),
            {"a": token, "b": txt.text.strip()}).all()
    assert len(rows) == 2 and all(k == "login" for k, _ in rows)
    assert all(0 < left.total_seconds() <= 24 * 3600 for _, left in rows)
    # signing out revokes the token
    out = requests.post(access_site.server.url + "/logout",
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert out.status_code == 200 and out.json() == {"signed_out": True}
    gone = requests.get(target, headers={"Authorization": f"Bearer {token}"},
                        timeout=60)
    assert gone.status_code == 401


def test_login_refuses_what_it_should(access_site: AccessSite) -> None:
    url = access_site.server.url + "/login"
    member = access_site.accounts.member
    # no credentials: the challenge (curl --anyauth then sends Basic)
    _assert_challenged(requests.get(url, timeout=60))
    _assert_challenged(requests.post(url, timeout=60))
    assert requests.get(url, auth=(member.name, "wrong"), timeout=60
                        ).status_code == 401
    bad = requests.post(url, data={"username": member.name, "password": "wrong"},
                        timeout=60)
    assert bad.status_code == 401 and "access_url" not in bad.text
    # an API token works as the password; a bearer token cannot mint new ones
    assert requests.get(url, auth=(member.name, member.token), timeout=60
                        ).status_code == 200
    assert requests.get(url, headers=member.bearer, timeout=60).status_code == 400
    # API tokens are not revoked by signing out
    assert requests.post(access_site.server.url + "/logout", headers=member.bearer,
                         timeout=60).status_code == 400
    # a sign-in posted by another site's page is refused
    r = requests.post(url, data={"username": member.name, "password": member.password},
                      headers={"Origin": "https://evil.example"}, timeout=60)
    assert r.status_code == 403


# -- browser sessions ------------------------------------------------------------------

def _form_token(s: requests.Session, url: str) -> str:
    page = s.get(url + "/login", headers={"Accept": "text/html"}, timeout=60)
    assert page.status_code == 200
    m = re.search(r'id="login-form">\s*<input type="hidden" name="csrf_token" '
                  r'value="([^"]+)"', page.text)
    assert m
    return m.group(1)


def _sign_in(s: requests.Session, url: str, name: str, password: str,
             csrf: str | None = None) -> requests.Response:
    token = csrf if csrf is not None else _form_token(s, url)
    return s.post(url + "/login", data={"csrf_token": token, "username": name,
                                        "password": password, "next": "/runs"},
                  headers={"Accept": "text/html", "Origin": url},
                  allow_redirects=False, timeout=60)


def test_browser_session_signs_in_and_out(access_site: AccessSite) -> None:
    url = access_site.server.url
    member = access_site.accounts.member
    pid, vno, _ = _hidden_version(access_site)
    s = requests.Session()
    assert s.get(f"{url}/products/{pid}", timeout=60).status_code == 401
    r = _sign_in(s, url, member.name, member.password)
    assert r.status_code == 303 and r.headers["Location"] == url + "/runs"
    cookie = r.headers["Set-Cookie"]
    assert "vo_archive_session=pvs_" in cookie and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # served over plain http here
    value = s.cookies["vo_archive_session"]
    with access_site.server.archive.engine.connect() as conn:
        stored = conn.execute(text("SELECT session_hash FROM archive.session")
                              ).scalars().all()
    assert value not in stored and len(stored[0]) == 64  # stored hashed
    f = s.get(f"{url}/products/{pid}/versions/{vno}", timeout=60)
    assert f.status_code == 200 and "private" in _cache(f)
    assert f.headers["X-VO-Authenticated"] == member.name
    assert s.get(f"{url}/auth/products/{pid}", timeout=60).status_code == 200
    # signed in: the page offers sign-out with the session's CSRF token
    page = s.get(url + "/login", headers={"Accept": "text/html"}, timeout=60)
    assert member.name in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    refused = s.post(url + "/logout", data={"csrf_token": "forged"}, timeout=60)
    assert refused.status_code == 403
    out = s.post(url + "/logout", data={"csrf_token": csrf.group(1)},
                 headers={"Accept": "text/html"}, allow_redirects=False, timeout=60)
    assert out.status_code == 303
    assert "vo_archive_session" not in s.cookies
    # the old cookie is dead, on every node: it is gone from the database
    stale = requests.get(f"{url}/products/{pid}", timeout=60,
                         cookies={"vo_archive_session": value})
    assert stale.status_code == 401
    assert "vo_archive_session=;" in stale.headers.get("Set-Cookie", "")


def test_session_cannot_be_fixed_or_forged(access_site: AccessSite) -> None:
    url = access_site.server.url
    member = access_site.accounts.member
    pid, _, _ = _hidden_version(access_site)
    s = requests.Session()
    planted = "pvs_" + "A" * 43
    s.cookies.set("vo_archive_session", planted, domain="127.0.0.1", path="/")
    r = _sign_in(s, url, member.name, member.password)
    assert r.status_code == 303
    assert s.cookies["vo_archive_session"] != planted
    assert requests.get(f"{url}/products/{pid}", timeout=60,
                        cookies={"vo_archive_session": planted}).status_code == 401
    # a session cookie cannot be used as a bearer token, nor the CSRF cookie as
    # a session
    value = s.cookies["vo_archive_session"]
    assert requests.get(f"{url}/products/{pid}", timeout=60, headers={
        "Authorization": f"Bearer {value}"}).status_code == 401
    # re-signing in replaces the session: the previous one ends
    r = _sign_in(s, url, member.name, member.password)
    assert r.status_code == 303 and s.cookies["vo_archive_session"] != value
    assert requests.get(f"{url}/products/{pid}", timeout=60,
                        cookies={"vo_archive_session": value}).status_code == 401
    # a cross-site POST does not carry the session's rights
    cross = s.post(f"{url}/tap/sync", data={
        "LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM ivoa.obscore",
        "RESPONSEFORMAT": "csv"}, headers={"Origin": "https://evil.example"},
        timeout=60)
    own = s.post(f"{url}/tap/sync", data={
        "LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM ivoa.obscore",
        "RESPONSEFORMAT": "csv"}, headers={"Origin": url}, timeout=60)
    assert int(cross.text.split()[-1]) == len(access_site.hidden.visible_ids)
    assert int(own.text.split()[-1]) == access_site.hidden.total


@pytest.mark.parametrize("case", ["no-token", "wrong-token", "cross-site",
                                  "wrong-password"])
def test_sign_in_form_refusals(access_site: AccessSite, case: str) -> None:
    url = access_site.server.url
    member = access_site.accounts.member
    s = requests.Session()
    token = _form_token(s, url)
    data = {"csrf_token": token, "username": member.name, "password": member.password}
    headers = {"Accept": "text/html", "Origin": url}
    if case == "no-token":
        s.cookies.clear()
    elif case == "wrong-token":
        data["csrf_token"] = token[::-1]
    elif case == "cross-site":
        headers["Origin"] = "https://evil.example"
    else:
        data["password"] += "x"
    r = s.post(url + "/login", data=data, headers=headers, allow_redirects=False,
               timeout=60)
    assert r.status_code == 403 and 'id="login-message"' in r.text
    assert "vo_archive_session" not in s.cookies
    assert not _challenges(r)  # a browser would pop up a password dialog
