"""Every VOSI document the services serve is valid against the IVOA schemas."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer
from tests.schemata import assert_valid

CAPABILITIES = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
AVAILABILITY = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
TABLES = "http://www.ivoa.net/xml/VOSITables/v1.0"
BASES = ("/scs", "/siap", "/sia2", "/ssap", "/tap", "/datalink",
         "/auth/scs", "/auth/tap", "/auth/ssap")


@pytest.mark.parametrize("base", BASES)
def test_capabilities_and_availability_validate(live_server: LiveServer,
                                                base: str) -> None:
    caps = live_server.get(f"{base}/capabilities")
    assert caps.status_code == 200
    root = assert_valid(caps.content, CAPABILITIES)
    assert root.findall("capability")
    avail = live_server.get(f"{base}/availability")
    assert avail.status_code == 200
    assert_valid(avail.content, AVAILABILITY)


@pytest.mark.parametrize("path", ["/tap/tables", "/tap/tables?detail=min",
                                  "/tap/tables/ivoa.obscore"])
def test_tap_tables_validate(live_server: LiveServer, path: str) -> None:
    r = live_server.get(path)
    assert r.status_code == 200
    assert_valid(r.content, TABLES)
