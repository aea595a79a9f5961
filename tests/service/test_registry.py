"""The publishing registry: OAI-PMH 2.0 at /oai with VOResource records.

Every answer is validated against OAI-PMH.xsd and, inside it, the records
against VOResource, VODataService, VORegistry, TAPRegExt, SIA, SSA and
ConeSearch (the IVOA schemas, offline); a plain OAI-PMH harvester follows the
resumption tokens.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from lxml import etree

from tests.conftest import Archive, LiveServer, start_server, stop_server
from tests.schemata import OAI_NS, assert_valid, schemata_folder

NS = {"o": OAI_NS, "ri": "http://www.ivoa.net/xml/RegistryInterface/v1.0",
      "dc": "http://purl.org/dc/elements/1.1/"}
AUTH = "ivo://pessto.ia2.inaf.it"
EXPECTED = {AUTH, f"{AUTH}/org", f"{AUTH}/registry", f"{AUTH}/tap", f"{AUTH}/scs",
            f"{AUTH}/siap", f"{AUTH}/sia2", f"{AUTH}/ssap", f"{AUTH}/datalink",
            f"{AUTH}/soda", f"{AUTH}/classify"}
PAGE = 3


@pytest.fixture(scope="module")
def registry_server(make_archive: Callable[..., Archive]) -> Iterator[LiveServer]:
    """An archive served with a registry page of three records."""
    archive = make_archive()
    (archive.settings.home / "archive.toml").write_text(
        f'[registry]\npage_size = {PAGE}\ncontact_email = "archive@example.org"\n')
    server = start_server(archive)
    yield server
    stop_server(server.process)


def oai(server: LiveServer, method: str = "GET", **params: str) -> etree._Element:
    """Ask the OAI-PMH interface; check status, type and validity; return the root."""
    url = server.url + "/oai"
    r = (requests.get(url, params=params, timeout=60) if method == "GET"
         else requests.post(url, data=params, timeout=60))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/xml")
    return assert_valid(r.content)


def error_code(root: etree._Element) -> str | None:
    err = root.find("o:error", NS)
    return None if err is None else err.get("code")


def harvest(server: LiveServer, verb: str, prefix: str, **params: str
            ) -> list[etree._Element]:
    """Harvest a whole list as a plain OAI-PMH client does: follow the tokens."""
    items: list[etree._Element] = []
    root = oai(server, verb=verb, metadataPrefix=prefix, **params)
    pages = 0
    while True:
        pages += 1
        body = root.find(f"o:{verb}", NS)
        assert body is not None, etree.tostring(root)
        items += body.findall("o:record" if verb == "ListRecords" else "o:header", NS)
        token = body.find("o:resumptionToken", NS)
        if token is None or not (token.text or "").strip():
            break
        assert int(token.get("cursor")) == len(items) - PAGE
        root = oai(server, verb=verb, resumptionToken=token.text)
    assert pages == -(-len(items) // PAGE)  # one page per three records
    return items


def test_harvest_every_record_with_resumption_tokens(
        registry_server: LiveServer) -> None:
    schemata_folder()
    recs = harvest(registry_server, "ListRecords", "ivo_vor")
    ids = [r.findtext("o:header/o:identifier", namespaces=NS) for r in recs]
    assert sorted(ids) == sorted(EXPECTED)
    assert len(recs) > PAGE  # more than one page: the tokens were followed
    for rec in recs:
        res = rec.find("o:metadata/ri:Resource", NS)
        assert res is not None
        ident = res.findtext("identifier")
        assert ident == rec.findtext("o:header/o:identifier", namespaces=NS)
        assert ident is not None and (ident == AUTH or ident.startswith(AUTH + "/"))
        assert rec.findtext("o:header/o:setSpec", namespaces=NS) == "ivo_managed"
        for url in res.iter("accessURL"):
            assert url.text is not None
            assert url.text.startswith(registry_server.url), url.text
    headers = harvest(registry_server, "ListIdentifiers", "ivo_vor")
    assert sorted(h.findtext("o:identifier", namespaces=NS)
                  for h in headers) == sorted(EXPECTED)
    dc = harvest(registry_server, "ListRecords", "oai_dc")
    titles = [r.findtext(".//dc:title", namespaces=NS) for r in dc]
    assert "PESSTO archive TAP service" in titles


def test_service_records_say_what_the_services_serve(
        registry_server: LiveServer) -> None:
    schemata_folder()
    for key, path, capability_type in [
            ("tap", "/tap", "tr:TableAccess"), ("scs", "/scs", "cs:ConeSearch"),
            ("siap", "/siap", "sia:SimpleImageAccess"),
            ("ssap", "/ssap", "ssa:SimpleSpectralAccess"),
            ("sia2", "/sia2", None), ("datalink", "/datalink", None),
            ("soda", "/soda", None), ("classify", "/classify", None)]:
        root = oai(registry_server, verb="GetRecord", identifier=f"{AUTH}/{key}",
                   metadataPrefix="ivo_vor")
        res = root.find(".//ri:Resource", NS)
        assert res is not None
        record_caps = res.findall("capability")
        vosi = etree.fromstring(registry_server.get(f"{path}/capabilities").content)
        vosi_caps = [c for c in vosi.findall("capability")  # not the archive's own
                     if not c.get("standardID", "").endswith("/pessto#archive")]
        assert [c.get("standardID") for c in record_caps] == \
            [c.get("standardID") for c in vosi_caps]
        assert [[u.text for u in c.iter("accessURL")] for c in record_caps] == \
            [[u.text for u in c.iter("accessURL")] for c in vosi_caps]
        if capability_type:
            xsi = "{http://www.w3.org/2001/XMLSchema-instance}type"
            assert record_caps[0].get(xsi) == capability_type
    root = oai(registry_server, verb="GetRecord", identifier=f"{AUTH}/tap",
               metadataPrefix="ivo_vor")
    tables = {t.findtext("name") for t in root.iter("table")}
    vosi_tables = {t.findtext("name") for t in etree.fromstring(
        registry_server.get("/tap/tables").content).iter("table")}
    assert tables == vosi_tables and "ivoa.obscore" in {t.lower() for t in tables}


def test_identify_carries_the_registry_record(registry_server: LiveServer) -> None:
    schemata_folder()
    root = oai(registry_server, verb="Identify")
    ident = root.find("o:Identify", NS)
    assert ident is not None
    assert ident.findtext("o:baseURL", namespaces=NS) == registry_server.url + "/oai"
    assert ident.findtext("o:protocolVersion", namespaces=NS) == "2.0"
    assert ident.findtext("o:adminEmail", namespaces=NS) == "archive@example.org"
    reg = ident.find("o:description/ri:Resource", NS)
    assert reg is not None
    assert reg.findtext("identifier") == f"{AUTH}/registry"
    assert reg.findtext("managedAuthority") == "pessto.ia2.inaf.it"
    harvest_url = reg.find("capability/interface/accessURL")
    assert harvest_url is not None and harvest_url.text == registry_server.url + "/oai"
    assert reg.findtext("capability/maxRecords") == str(PAGE)
    # POST form-encoded is the same protocol (OAI-PMH 2.0 §3.1.1.2)
    assert oai(registry_server, "POST", verb="Identify").find("o:Identify", NS) \
        is not None
    formats = oai(registry_server, verb="ListMetadataFormats",
                  identifier=f"{AUTH}/tap")
    assert {p.text for p in formats.iter(f"{{{OAI_NS}}}metadataPrefix")} == \
        {"ivo_vor", "oai_dc"}
    sets = oai(registry_server, verb="ListSets")
    assert [s.text for s in sets.iter(f"{{{OAI_NS}}}setSpec")] == ["ivo_managed"]


@pytest.mark.parametrize(("params", "code"), [
    ({}, "badVerb"),
    ({"verb": "Harvest"}, "badVerb"),
    ({"verb": "ListRecords"}, "badArgument"),
    ({"verb": "Identify", "metadataPrefix": "ivo_vor"}, "badArgument"),
    ({"verb": "GetRecord", "identifier": f"{AUTH}/tap"}, "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "marc21"}, "cannotDisseminateFormat"),
    ({"verb": "ListRecords", "metadataPrefix": "a b"}, "badArgument"),
    ({"verb": "GetRecord", "identifier": f"{AUTH}/nothing",
      "metadataPrefix": "ivo_vor"}, "idDoesNotExist"),
    ({"verb": "ListMetadataFormats", "identifier": "ivo://elsewhere/x"},
     "idDoesNotExist"),
    ({"verb": "ListRecords", "resumptionToken": "not-a-token"}, "badResumptionToken"),
    ({"verb": "ListRecords", "resumptionToken": "x", "metadataPrefix": "ivo_vor"},
     "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "ivo_vor", "from": "2100-01-01"},
     "noRecordsMatch"),
    ({"verb": "ListRecords", "metadataPrefix": "ivo_vor", "until": "2000-01-01"},
     "noRecordsMatch"),
    ({"verb": "ListRecords", "metadataPrefix": "ivo_vor", "from": "yesterday"},
     "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "ivo_vor", "from": "2020-01-02",
      "until": "2020-01-01"}, "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "ivo_vor", "from": "2020-01-01",
      "until": "2100-01-01T00:00:00Z"}, "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "ivo_vor", "set": "other"},
     "noRecordsMatch"),
])
def test_errors_are_oai_errors(registry_server: LiveServer, params: dict[str, str],
                               code: str) -> None:
    schemata_folder()
    root = oai(registry_server, **params)
    assert error_code(root) == code
    request = root.find("o:request", NS)
    assert request is not None
    if code in ("badVerb", "badArgument"):
        assert dict(request.attrib) == {}  # OAI-PMH 2.0 §3.2


def test_repeated_arguments_are_refused(registry_server: LiveServer) -> None:
    schemata_folder()
    r = requests.get(registry_server.url + "/oai?verb=ListRecords"
                     "&metadataPrefix=ivo_vor&metadataPrefix=oai_dc", timeout=60)
    assert error_code(assert_valid(r.content)) == "badArgument"
    r = requests.get(registry_server.url + "/oai?verb=Identify&verb=Identify",
                     timeout=60)
    assert error_code(assert_valid(r.content)) == "badVerb"


def test_datestamps_are_stable_and_select_by_date(registry_server: LiveServer) -> None:
    schemata_folder()
    first = {h.findtext("o:identifier", namespaces=NS):
             h.findtext("o:datestamp", namespaces=NS)
             for h in harvest(registry_server, "ListIdentifiers", "ivo_vor")}
    again = {h.findtext("o:identifier", namespaces=NS):
             h.findtext("o:datestamp", namespaces=NS)
             for h in harvest(registry_server, "ListIdentifiers", "ivo_vor")}
    assert first == again  # unchanged records keep their datestamps
    stamp = max(first.values())
    day = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    listed = {h.findtext("o:identifier", namespaces=NS) for h in harvest(
        registry_server, "ListIdentifiers", "ivo_vor", **{"from": stamp})}
    assert listed == {i for i, s in first.items() if s >= stamp}
    before = (day - timedelta(days=1)).strftime("%Y-%m-%d")
    root = oai(registry_server, verb="ListIdentifiers", metadataPrefix="ivo_vor",
               until=before)
    assert error_code(root) == "noRecordsMatch"


def test_changed_record_gets_a_new_datestamp(make_archive: Callable[..., Archive]
                                             ) -> None:
    from vo_archive.app import create_app
    from vo_archive.config import with_overrides
    from vo_archive.vo.registry import records

    archive = make_archive()
    app = create_app(archive.settings)
    with app.test_request_context(base_url="https://a.example.org"):
        first = {r.identifier: r for r in records(archive.settings, archive.engine)}
    changed = with_overrides(archive.settings, extra={
        "registry": {"contact_email": "new@example.org"}})
    with create_app(changed).test_request_context(base_url="https://a.example.org"):
        # same content: same dates; the contact changes every record
        same = {r.identifier: r for r in records(archive.settings, archive.engine)}
        later = {r.identifier: r for r in records(changed, archive.engine)}
    assert {i: r.datestamp for i, r in same.items()} == \
        {i: r.datestamp for i, r in first.items()}
    for ident, rec in later.items():
        assert rec.created == first[ident].created
        assert rec.datestamp >= first[ident].datestamp
        assert "new@example.org" in rec.xml


def test_registry_command_checks_the_records(registry_server: LiveServer) -> None:
    import os

    folder = schemata_folder()
    archive = registry_server.archive
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    out = subprocess.run([sys.executable, "-m", "vo_archive", "registry", "--check",
                          "--schemas", str(folder)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(EXPECTED)} of {len(EXPECTED)} records valid" in out.stdout
    out = subprocess.run([sys.executable, "-m", "vo_archive", "registry", "--list"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert {line.split("\t")[0] for line in out.stdout.splitlines()
            if line.startswith("ivo://")} == EXPECTED
    out = subprocess.run([sys.executable, "-m", "vo_archive", "registry",
                          f"{AUTH}/nothing"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "no record" in out.stderr
