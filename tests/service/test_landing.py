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
