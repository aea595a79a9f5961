"""Base URLs with a trailing slash or doubled slashes are served, never redirected."""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.conftest import LiveServer


@pytest.mark.parametrize(("path", "status"), [
    ("/tap/", 200), ("/tap/capabilities/", 200), ("/tap//tables", 200),
    ("/scs/?RA=0&DEC=0&SR=0", 200), ("/sia2/query/?MAXREC=0", 200),
    ("/ssap/?REQUEST=queryData&FORMAT=METADATA", 200), ("/runs/", 200),
    ("/nothing/", 404),
])
def test_trailing_and_double_slashes(live_server: LiveServer, path: str,
                                     status: int) -> None:
    r = requests.get(live_server.url + path, allow_redirects=False, timeout=60)
    assert r.status_code == status, r.text[:200]


def test_post_to_a_slashed_url_is_not_redirected(live_server: LiveServer) -> None:
    r = requests.post(live_server.url + "/tap//sync/", allow_redirects=False,
                      data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 * FROM pessto.runs"},
                      timeout=60)
    assert r.status_code == 200 and b"QUERY_STATUS" in r.content


def test_stilts_tapquery_with_a_trailing_slash(live_server: LiveServer) -> None:
    out = subprocess.run(
        ["stilts", "tapquery", f"tapurl={live_server.url}/tap/",
         "adql=SELECT TOP 3 obs_publisher_did FROM ivoa.obscore", "ofmt=csv",
         "out=-"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    rows = out.stdout.strip().splitlines()
    assert rows[0] == "obs_publisher_did" and len(rows) == 4
