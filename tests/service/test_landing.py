"""The landing page of a served archive."""

from __future__ import annotations

from tests.conftest import LiveServer


def test_landing_page_counts_products(live_server: LiveServer) -> None:
    r = live_server.get("/")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "PESSTO archive" in r.text
    assert "EFOSC" in r.text and "SOFI" in r.text
    assert r.headers["Server"].startswith("vo-archive/")


def test_file_download_with_range_and_checksum(live_server: LiveServer) -> None:
    import hashlib

    from sqlalchemy import text

    with live_server.archive.engine.connect() as conn:
        pid, vno, sha, _size = conn.execute(text(
            "SELECT product_id, version_no, sha256, file_size FROM pessto.products "
            "ORDER BY product_id LIMIT 1")).one()
    r = live_server.get(f"/products/{pid}/versions/{vno}")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == sha
    assert r.headers["X-Checksum-SHA256"] == sha
    assert r.headers["ETag"].strip('"') == sha
    part = live_server.get(f"/products/{pid}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == r.content[100:200]
    # anonymous: the same 401 as for a proprietary product (no existence oracle)
    assert live_server.get("/products/999999999").status_code == 401
