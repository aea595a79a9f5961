"""Content-Encoding gzip: text and VOTable answers compressed as they stream."""

from __future__ import annotations

import gzip

import pytest
import requests

from tests.conftest import LiveServer

TEXT_ANSWERS = [
    "/tap/sync?LANG=ADQL&QUERY=SELECT%20TOP%20200%20*%20FROM%20ivoa.obscore",
    "/tap/sync?LANG=ADQL&RESPONSEFORMAT=csv&QUERY=SELECT%20*%20FROM%20pessto.products",
    "/scs?RA=0&DEC=-12.5&SR=5&VERB=3",
    "/tap/tables",
]


def fetch(server: LiveServer, path: str, encoding: str | None
          ) -> tuple[requests.Response, bytes]:
    """GET a path; return the answer and its body exactly as sent (not decoded)."""
    headers = {"Accept-Encoding": encoding} if encoding else {"Accept-Encoding":
                                                              "identity"}
    r = requests.get(server.url + path, headers=headers, stream=True, timeout=120)
    raw = r.raw.read(decode_content=False)
    return r, raw


@pytest.mark.parametrize("path", TEXT_ANSWERS)
def test_text_answers_are_gzipped_when_accepted(live_server: LiveServer,
                                                path: str) -> None:
    plain, plain_body = fetch(live_server, path, None)
    packed, packed_body = fetch(live_server, path, "gzip, deflate")
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    for r in (plain, packed):
        assert "accept-encoding" in r.headers["Vary"].lower()
    assert len(packed_body) < len(plain_body)
    assert gzip.decompress(packed_body) == plain_body
    # a client that refuses gzip (q=0) gets it plain
    refused, refused_body = fetch(live_server, path, "gzip;q=0, identity")
    assert "Content-Encoding" not in refused.headers
    assert refused_body == plain_body


def test_files_and_ranges_are_not_compressed(live_server: LiveServer) -> None:
    from sqlalchemy import text

    with live_server.archive.engine.connect() as conn:
        pid, size = conn.execute(text(
            "SELECT product_id, file_size FROM pessto.products "
            "ORDER BY product_id LIMIT 1")).one()
    r, body = fetch(live_server, f"/products/{pid}", "gzip")
    assert r.status_code == 200
    assert "Content-Encoding" not in r.headers
    assert int(r.headers["Content-Length"]) == size == len(body)
    part = requests.get(live_server.url + f"/products/{pid}", stream=True,
                        headers={"Accept-Encoding": "gzip", "Range": "bytes=0-99"},
                        timeout=60)
    assert part.status_code == 206 and "Content-Encoding" not in part.headers
    assert part.raw.read(decode_content=False) == body[:100]
    png = requests.get(live_server.url + f"/products/{pid}/versions/1/preview.png",
                       headers={"Accept-Encoding": "gzip"}, timeout=120)
    assert "Content-Encoding" not in png.headers


def test_head_and_errors(live_server: LiveServer) -> None:
    r = requests.head(live_server.url + "/tap/tables",
                      headers={"Accept-Encoding": "gzip"}, timeout=60)
    assert r.status_code == 200 and "Content-Encoding" not in r.headers
    err, body = fetch(live_server, "/tap/sync?LANG=ADQL&QUERY=SELEKT%201" + "%20" * 600,
                      "gzip")
    assert err.status_code == 400
    if err.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    assert b"QUERY_STATUS" in body and b"ERROR" in body
