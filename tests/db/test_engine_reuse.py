"""The engine of an embedded cluster is found once per process, not per request."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from vo_archive.config import Settings
from vo_archive.db import engine as engine_mod
from vo_archive.db.cluster import EmbeddedCluster


def test_embedded_cluster_is_resolved_once(pg_cluster: EmbeddedCluster,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = engine_mod.resolve_dsn

    def counting(settings: Settings, start: bool = True) -> str:
        calls.append(settings.pgdata)
        return real(settings, start)

    monkeypatch.setattr(engine_mod, "resolve_dsn", counting)
    settings = Settings(home=pg_cluster.pgdata.parent)
    first = engine_mod.get_engine(settings)
    for _ in range(20):  # a web worker calls this on every request
        assert engine_mod.get_engine(settings) is first
    assert len(calls) == 1
    with first.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
