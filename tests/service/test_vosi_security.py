"""VOSI capabilities declare authenticated access; capabilities/availability stay
anonymous (VOSI 1.1 §2, TAP 1.1 §2.4, IVOA SSO securityMethod identifiers)."""

from __future__ import annotations

import io

from lxml import etree
from pyvo.auth import securitymethods
from pyvo.auth.authurls import AuthURLs
from pyvo.io.vosi import parse_capabilities
from pyvo.registry.regtap import Interface, RegistryResource

from vo_archive.app import create_app
from vo_archive.config import Settings
from vo_archive.vo.vosi import Capability, capabilities_document, vosi_capabilities

BASIC = "ivo://ivoa.net/sso#BasicAA"
TOKEN = "ivo://ivoa.net/sso#token"  # noqa: S105 - an IVOA identifier


def _document(tap: bool = True) -> bytes:
    app = create_app(Settings(base_url="https://archive.example/"))
    tap_caps = [Capability("ivo://ivoa.net/std/TAP", "/tap", "tr:TableAccess", "1.1")
                ] if tap else []
    with app.test_request_context("/"):
        return capabilities_document([
            Capability("ivo://ivoa.net/std/ConeSearch", "/scs"),
            *tap_caps,
            Capability("ivo://ivoa.net/std/VOSI#tables-1.1", "/tap/tables"),
            Capability("ivo://example/custom", "/x",
                       security=f'<securityMethod standardID="{BASIC}"/>'),
            *vosi_capabilities("/scs"),
        ], {"cs": "http://www.ivoa.net/xml/ConeSearch/v1.0",
            "tr": "http://www.ivoa.net/xml/TAPRegExt/v1.0"})


def _methods(doc: bytes) -> dict[str, list[list[str]]]:
    root = etree.fromstring(doc)
    out: dict[str, list[list[str]]] = {}
    for cap in root.findall("capability"):
        out[cap.get("standardID")] = [
            [sm.get("standardID") for sm in iface.findall("securityMethod")]
            for iface in cap.findall("interface")]
    return out


def test_data_services_offer_anonymous_basic_and_token_interfaces() -> None:
    m = _methods(_document())
    for std in ("ivo://ivoa.net/std/ConeSearch", "ivo://ivoa.net/std/TAP"):
        # anonymous, Basic, token; then the authenticated twin with each
        # (one securityMethod per interface: VOResource 1.1 schema)
        assert m[std] == [[], [BASIC], [TOKEN], [BASIC], [TOKEN]], m[std]
    for std in ("ivo://ivoa.net/std/VOSI#capabilities",
                "ivo://ivoa.net/std/VOSI#availability",
                "ivo://ivoa.net/std/VOSI#tables-1.1"):
        assert m[std] == [[]], (std, m[std])
    assert m["ivo://example/custom"] == [[BASIC]], "explicit security is kept"


def test_one_standard_interface_per_capability() -> None:
    # role="std" on the first interface only (the anonymous one): clients that
    # pick "the" standard interface get one (taplint W-CPI2, pyvo's registry
    # get_service); the others are the same protocol for credentials
    root = etree.fromstring(_document())
    for cap in root.findall("capability"):
        roles = [i.get("role") for i in cap.findall("interface")]
        if cap.get("standardID").endswith("#archive"):
            assert set(roles) == {None}, roles  # no IVOA standard
        else:
            assert roles == ["std"] + [None] * (len(roles) - 1), (
                cap.get("standardID"), roles)
    tap = next(c for c in root.findall("capability")
               if c.get("standardID") == "ivo://ivoa.net/std/TAP")
    std = [i for i in tap.findall("interface") if i.get("role") == "std"]
    assert std[0].find("securityMethod") is None and std[0].get("version") == "1.1"
    # pyvo's registry, given these interfaces as RegTAP lists them, finds the
    # service (with several role="std" interfaces it raises ValueError)
    resource = RegistryResource.__new__(RegistryResource)
    resource.interfaces = [
        Interface(i.findtext("accessURL"), standard_id=tap.get("standardID").lower(),
                  intf_type="vs:paramhttp", intf_role=i.get("role"))
        for i in tap.findall("interface")]
    assert len(resource.interfaces) == 5
    found = resource.get_interface(service_type="tap", std_only=True)
    assert found.access_url == "https://archive.example/tap"


def test_pyvo_learns_the_security_methods() -> None:
    caps = parse_capabilities(io.BytesIO(_document(tap=False)))
    urls = AuthURLs()
    urls.update_from_capabilities(caps)
    assert urls.allowed_auth_methods("https://archive.example/scs") == {
        securitymethods.ANONYMOUS, securitymethods.BASIC, TOKEN}
    assert urls.allowed_auth_methods("https://archive.example/scs/capabilities") == {
        securitymethods.ANONYMOUS}
    # the twin always needs credentials; every other URL of the archive (files,
    # DataLink of other services) takes them
    assert urls.allowed_auth_methods("https://archive.example/auth/scs") == {
        securitymethods.BASIC, TOKEN}
    assert urls.allowed_auth_methods("https://archive.example/auth/products/1") == {
        securitymethods.ANONYMOUS, securitymethods.BASIC, TOKEN}
