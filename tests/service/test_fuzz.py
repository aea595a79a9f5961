"""Property-based fuzzing of every endpoint the OpenAPI description lists.

For each operation of ``/openapi.json``, hypothesis sends requests built from the
declared parameters: valid values, out-of-range numbers, wrong types, random
Unicode, huge and repeated values, unknown parameters, names in random case,
invalid UTF-8 in the query string and the form, odd path segments and bad
credentials. Every answer must be below 500 and every error well-formed in the
endpoint's fault style: a VOTable error document that astropy parses (DALI,
SCS) or ``text/plain`` starting with the fault name. The examples are bounded
and derandomized, so the run is quick and repeatable in CI.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.auth_fixtures import Accounts, drop_accounts, make_accounts
from tests.conftest import Archive
from vo_archive.app import create_app
from vo_archive.config import Settings
from vo_archive.web.openapi import FAULT_NAMES, build_spec

EXAMPLES = int(os.environ.get("VO_ARCHIVE_FUZZ_EXAMPLES", "25"))
SPEC = build_spec(create_app(Settings()))
OPERATIONS = sorted((path, method, op) for path, ops in SPEC["paths"].items()
                    for method, op in ops.items())
_FAULT = re.compile(rf"^({'|'.join(FAULT_NAMES)})(: |\n|$)")


class Site:
    """The in-process app over a small archive, and what it holds."""

    def __init__(self, client: FlaskClient, archive: Archive, accounts: Accounts,
                 names: list[str]) -> None:
        self.client = client
        self.archive = archive
        self.accounts = accounts
        self.names = names


@pytest.fixture(scope="module")
def site(make_archive: Callable[..., Archive], demo_files: list[Path]
         ) -> Iterator[Site]:
    archive = make_archive()
    archive.ingest(demo_files[:30])
    accounts = make_accounts(archive)
    with archive.engine.connect() as conn:
        names = list(conn.execute(text(
            "SELECT name FROM archive.run UNION ALL SELECT name FROM archive.target "
            "UNION ALL SELECT filename FROM archive.version LIMIT 50")).scalars())
    app = create_app(archive.settings)
    client = app.test_client()
    # a real job of each kind of owner, so job paths are reached too
    for headers in ({}, accounts.member.bearer):
        r = client.post("/tap/async", headers=headers, data={
            "REQUEST": "doQuery", "LANG": "ADQL",
            "QUERY": "SELECT TOP 1 obs_id FROM ivoa.obscore"})
        assert r.status_code == 303, r.get_data()
        names.append(r.headers["Location"].rsplit("/", 1)[1])
    yield Site(client, archive, accounts, names)
    drop_accounts(archive, accounts)


# -- strategies ----------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
_NUMBERS = st.one_of(
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e-05", "+1.0E4", "NaN", "-Inf", "+Inf", "1e400", "-0", ".5",
                     "5.", "0x10", "1,2", " 3 ", "٣"]),
)
_NASTY = st.sampled_from([
    "", " ", "\t", "'", "\"", "';--", "%", "%%", "\\", "../../etc/passwd", "null",
    "<x/>", "&amp;", "\u202e", "\ufeff", "a\x00b", "\x7f", "9" * 100_001,
    "CIRCLE 10 10", "POLYGON 1 2 3", "SELECT * FROM archive.account",
])


#: ADQL that once exhausted the parser's stack or CPU: nested parentheses and
#: function calls, long operator chains, big IN lists (tap/README.md, limits).
_HOSTILE_ADQL = st.one_of(
    st.integers(1, 3000).map(lambda n: "SELECT " + "(" * n + "1" + ")" * n
                             + " FROM ivoa.ObsCore"),
    st.integers(1, 3000).map(lambda n: "SELECT " + "ABS(" * n + "s_ra" + ")" * n
                             + " FROM ivoa.ObsCore"),
    st.integers(1, 6000).map(lambda n: "SELECT " + "+".join(["1"] * n)
                             + " AS x FROM ivoa.ObsCore"),
    st.integers(1, 1000).map(lambda n: "SELECT obs_id FROM ivoa.ObsCore WHERE "
                             + " OR ".join(["(s_ra > 1 AND s_dec < 2)"] * n)),
    st.integers(1, 40).map(lambda n: "SELECT obs_id FROM ivoa.ObsCore WHERE obs_id IN "
                           + "(SELECT obs_id FROM ivoa.ObsCore WHERE obs_id IN " * n
                           + "('x')" + ")" * n),
)


def _value(param: dict[str, Any]) -> st.SearchStrategy[str]:
    schema = param.get("schema", {})
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    options: list[st.SearchStrategy[str]] = [_TEXT, _NASTY, _NASTY, _NUMBERS]
    if param["name"].upper() == "QUERY":
        options.append(_HOSTILE_ADQL)
    examples = [e["value"] for e in param.get("examples", {}).values()]
    if examples:
        options.append(st.sampled_from(examples))
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]).flatmap(
            lambda v: st.sampled_from([v, v.upper(), v.lower(), f" {v} "])))
    if schema.get("type") in ("number", "integer"):
        lo = schema.get("minimum", -1e6)
        hi = schema.get("maximum", 1e6)
        options.append(st.floats(min_value=lo - 10, max_value=hi + 10).map(str))
    return st.one_of(*options)


def _name_case(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), name.upper(), name.capitalize()])


@st.composite
def _query(draw: st.DrawFn, params: list[dict[str, Any]]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for p in params:
        if p["in"] != "query":
            continue
        n = draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))
        for _ in range(n):
            items.append((draw(_name_case(p["name"])), draw(_value(p))))
    for _ in range(draw(st.integers(0, 2))):
        items.append((draw(st.text(min_size=1, max_size=10,
                                   alphabet=st.characters(codec="ascii"))),
                      draw(_TEXT)))
    return draw(st.permutations(items))


@st.composite
def _path(draw: st.DrawFn, path: str, params: list[dict[str, Any]],
          names: list[str]) -> str:
    for p in params:
        if p["in"] != "path":
            continue
        if "enum" in p["schema"]:
            raw = draw(st.one_of(st.sampled_from(p["schema"]["enum"]), _TEXT))
        elif p["schema"].get("type") == "integer":
            raw = draw(st.one_of(st.integers(0, 300), st.integers(2 ** 31, 2 ** 70),
                                 st.just(0)).map(str))
        else:
            raw = draw(st.one_of(st.sampled_from(names or ["x"]), _TEXT.filter(bool),
                                 _NASTY.filter(bool),
                                 st.sampled_from(["..", "../..", "%2e%2e", "a/b",
                                                  "x" * 3000, "a\x00b", "\x00"])))
        path = path.replace("{" + p["name"] + "}", quote(raw, safe=""))
    return path


_BOUNDARY = "fuzzXX"


@st.composite
def _multipart(draw: st.DrawFn, items: list[tuple[str, str]]) -> bytes:
    """A multipart body of the parameters, with odd parts mixed in: parts with
    no name, file parts, no Content-Disposition, bad UTF-8, a missing end."""
    parts = []
    odd = st.sampled_from([
        b"Content-Disposition: form-data\r\n\r\nfoo",
        b'Content-Disposition: form-data; filename="x.xml"\r\n\r\n<x/>',
        b"Content-Type: text/plain\r\n\r\nno disposition",
        b'Content-Disposition: form-data; name=""\r\n\r\nempty name',
        b'Content-Disposition: form-data; name="QUERY"\r\n\r\n\xff\xfe',
        b'Content-Disposition: form-data; name="UPLOAD"\r\n\r\nt1,param:t1',
        b'Content-Disposition: form-data; name="t1"; filename="t1.xml"\r\n'
        b"Content-Type: application/x-votable+xml\r\n\r\n<VOTABLE/>",
    ])
    for name, value in items:
        parts.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
                     .encode() + value.encode("utf-8", "surrogatepass"))
    parts += draw(st.lists(odd, max_size=3))
    body = b"".join(b"--" + _BOUNDARY.encode() + b"\r\n" + p + b"\r\n"
                    for p in draw(st.permutations(parts)))
    return body + draw(st.sampled_from([b"--fuzzXX--\r\n", b"--fuzzXX--", b""]))


# -- checks ----------------------------------------------------------------------

def check_error(body: bytes, content_type: str, style: str, where: str) -> None:
    """Assert that an error answer is the protocol's error document."""
    assert "html" not in content_type, f"{where}: HTML error {body[:200]!r}"
    if content_type.startswith(("application/x-votable+xml", "text/xml")):
        from astropy.io.votable import parse
        from astropy.io.votable.exceptions import VOWarning

        with warnings.catch_warnings():
            warnings.simplefilter("error", VOWarning)
            vot = parse(io.BytesIO(body), verify="exception")
        infos = [i for r in vot.resources for i in r.infos
                 if i.name == "QUERY_STATUS"]
        assert infos and infos[0].value == "ERROR", f"{where}: {body[:300]!r}"
        assert _FAULT.match(infos[0].content or ""), f"{where}: {infos[0].content!r}"
        assert not any(r.tables for r in vot.resources), f"{where}: TABLE in error"
        return
    assert content_type.startswith("text/plain"), f"{where}: {content_type}"
    assert _FAULT.match(body.decode("utf-8")), f"{where}: {body[:200]!r}"


def check_answer(status: int, body: bytes, content_type: str, style: str,
                 where: str) -> None:
    """Assert that an answer is not a server error and errors are well-formed."""
    assert status < 500, f"{where}: {status} {body[:300]!r}"
    if status == 422 and content_type.startswith("application/json"):
        # a file the upload's ingest rejected: its JSON result, not a fault
        assert json.loads(body)["files"][0]["outcome"] == "rejected", where
        return
    if status >= 400:
        check_error(body, content_type, style, where)
    elif "xml" in content_type and body:
        # answers echo parameters: they must still be well-formed XML
        from lxml import etree

        try:
            etree.fromstring(body, etree.XMLParser(huge_tree=True))
        except etree.XMLSyntaxError as exc:
            raise AssertionError(f"{where}: malformed XML: {exc}: {body[:300]!r}"
                                 ) from None


# -- the fuzz test -----------------------------------------------------------------

_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                     database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow,
                                            HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS])
def test_fuzz_operation(site: Site, path: str, method: str, op: dict[str, Any]
                        ) -> None:
    params = op["parameters"]
    style = op["x-fault-style"]
    auth_options = [{}, {}, site.accounts.member.bearer,
                    {"Authorization": "Bearer pva_wrong"},
                    {"Authorization": "Basic !!"}]
    if op["security"][0] != {}:
        auth_options += [site.accounts.reducer.bearer] * 2
    seen: set[int] = set()

    @_SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        url = data.draw(_path(path, params, site.names), label="path")
        query = data.draw(_query(params), label="query")
        headers = data.draw(st.sampled_from(auth_options), label="auth")
        broken = data.draw(st.sampled_from([None, None, None, b"%ff%fe=1",
                                            b"a=%c0%af", b"%ed%a0%80=%80"]),
                           label="bad utf-8")
        kw: dict[str, Any] = {"headers": headers}
        if method == "get" or (method == "post" and not query and broken is None
                               and data.draw(st.booleans())):
            qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
            kw["query_string"] = qs + ("&" + broken.decode() if broken else "")
        elif method in ("post", "put") and "requestBody" in op:
            content = op["requestBody"].get("content", {})
            if "multipart/form-data" in content and method == "post" and \
                    path == "/upload":
                blob = data.draw(st.binary(max_size=3000), label="file")
                name = data.draw(st.one_of(st.just("x.fits"), _TEXT), label="name")
                kw["data"] = {"file": (io.BytesIO(blob), name or "f")}
                kw["content_type"] = "multipart/form-data"
            elif method == "put":
                kw["data"] = data.draw(st.binary(max_size=3000), label="body")
            elif data.draw(st.booleans(), label="raw multipart"):
                kw["data"] = data.draw(_multipart(query), label="multipart")
                kw["content_type"] = f"multipart/form-data; boundary={_BOUNDARY}"
            else:
                form = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                                for k, v in query).encode()
                if broken:
                    form += b"&" + broken
                kw["data"] = form
                kw["content_type"] = data.draw(st.sampled_from([
                    "application/x-www-form-urlencoded",
                    "application/x-www-form-urlencoded; charset=latin-1",
                    "multipart/form-data; boundary=nope", "text/plain"]))
        r = getattr(site.client, method)(url, **kw)
        try:
            body = r.get_data()
        finally:
            r.close()
        seen.add(r.status_code)
        check_answer(r.status_code, body, r.headers.get("Content-Type", ""), style,
                     f"{method.upper()} {url} {kw.get('query_string', '')!r}")

    run()
    assert seen, "no request was made"


def test_openapi_lists_every_route(site: Site) -> None:
    spec = site.client.get("/openapi.json").get_json()
    rules = {r.rule for r in site.client.application.url_map.iter_rules()
             if r.endpoint != "static"}
    assert len(spec["paths"]) == len(rules)
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/upload"]["post"]["security"] == [{"bearer": []},
                                                            {"basic": []}]


# -- schemathesis over /openapi.json -------------------------------------------------

#: schemathesis' examples per operation: a fifth of the hand-written fuzzer's.
ST_EXAMPLES = max(2, EXAMPLES // 5)
_ST_SETTINGS = settings(_SETTINGS, max_examples=ST_EXAMPLES)


@pytest.fixture(scope="module")
def openapi_schema(site: Site) -> Any:
    """The archive's own OpenAPI description, calling the in-process app."""
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig.from_dict({
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": ST_EXAMPLES},
    })
    return schemathesis.openapi.from_wsgi("/openapi.json", site.client.application,
                                          config=config)


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS])
def test_schemathesis(openapi_schema: Any, site: Site, path: str, method: str,
                      op: dict[str, Any]) -> None:
    """Each operation with the requests schemathesis makes from its description.

    Bodies are generated from the declared media types (urlencoded and
    multipart forms, files); TAP's QUERY is sometimes replaced by hostile ADQL.
    """
    operation = openapi_schema[path][method.upper()]
    style = op["x-fault-style"]
    seen: set[int] = set()

    @_ST_SETTINGS
    @given(case=operation.as_strategy(),
           adql=st.one_of(st.none(), _HOSTILE_ADQL),
           auth=st.sampled_from(["", "member", "reducer", "Bearer pva_wrong"]))
    def run(case: Any, adql: str | None, auth: str) -> None:
        if adql is not None and path.startswith("/tap"):
            if isinstance(case.query, dict):
                case.query["QUERY"] = adql
            if isinstance(case.body, dict):
                case.body["QUERY"] = adql
        # the answers are checked as sent, not gzip-compressed
        headers = {**(case.headers or {}), "Accept-Encoding": "identity"}
        if auth == "member":
            headers.update(site.accounts.member.bearer)
        elif auth == "reducer":
            headers.update(site.accounts.reducer.bearer)
        elif auth:
            headers["Authorization"] = auth
        case.headers = headers
        response = case.call()
        seen.add(response.status_code)
        check_answer(response.status_code, response.content,
                     response.headers.get("content-type", [""])[0], style,
                     f"{method.upper()} {case.formatted_path} {case.query!r} "
                     f"{case.media_type} {str(case.body)[:200]!r}")

    run()
    assert seen, "no request was made"
