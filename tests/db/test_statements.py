"""Prepared DAL statements: one round trip, the caller's scope, bounded memory."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from sqlalchemy import (
    Integer,
    bindparam,
    create_engine,
    func,
    literal_column,
    select,
    table,
    text,
)

from tests.conftest import Archive
from vo_archive.db.engine import get_engine
from vo_archive.vo import statements


def _constant(i: int) -> statements.ShapedQuery:
    return statements.ShapedQuery(("test-constant", i),
                                  lambda: select(literal_column(str(i))), {})


def _prepared_count() -> statements.ShapedQuery:
    def build() -> Any:
        return select(func.count()).select_from(table("pg_prepared_statements"))

    return statements.ShapedQuery(("test-count",), build, {})


def test_prepared_statements_per_connection_are_bounded(
        make_archive: Callable[..., Archive], monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_archive()
    engine = get_engine(archive.settings, pre_ping=False)
    monkeypatch.setattr(statements, "MAX_PREPARED", 4)
    for i in range(11):
        assert statements.run(engine, _constant(i), False) == [(i,)]
    count = statements.run(engine, _prepared_count(), False)[0][0]
    assert 1 <= count <= 5


def test_compiled_shapes_are_bounded(make_archive: Callable[..., Archive],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_archive()
    engine = get_engine(archive.settings, pre_ping=False)
    monkeypatch.setattr(statements, "MAX_SHAPES", 3)
    monkeypatch.setattr(statements, "_shapes", {})
    for i in range(10):
        assert statements.run(engine, _constant(100 + i), False) == [(100 + i,)]
        assert len(statements._shapes) <= 3


def test_values_must_match_the_shape(make_archive: Callable[..., Archive]) -> None:
    """A shape key that does not say what the build leaves open is a bug that
    shows at once, not a wrong answer."""
    archive = make_archive()
    q = statements.ShapedQuery(
        ("test-open",), lambda: select(bindparam("n", type_=Integer) + 1), {"m": 1})
    with pytest.raises(ValueError, match="leaves open"):
        statements.run(archive.engine, q, False)
    ok = statements.ShapedQuery(("test-open",), q.build, {"n": 41})
    assert statements.run(archive.engine, ok, False) == [(42,)]


def test_scope_and_settings_hold_for_one_statement(
        make_archive: Callable[..., Archive]) -> None:
    """The access scope is the caller's for its statement only: the pooled
    connection is anonymous again afterwards."""
    archive = make_archive()
    engine = get_engine(archive.settings, pre_ping=False)
    scope = statements.ShapedQuery(
        ("test-scope",), lambda: select(func.current_setting(
            literal_column("'vo_archive.proprietary'"), literal_column("true"))), {})
    assert statements.run(engine, scope, True) == [("on",)]
    with engine.connect() as conn:
        after = conn.exec_driver_sql(
            "SELECT coalesce(current_setting('vo_archive.proprietary', true), '')"
        ).scalar_one()
    assert after in ("", "off")
    assert statements.run(engine, scope, False) == [("off",)]


def test_connections_the_server_dropped_are_all_replaced(
        make_archive: Callable[..., Archive]) -> None:
    """After a restart every pooled connection is dead, with its prepared
    statements: the next request runs on a new connection, not on the next
    dead one (a restart of the server drops them as pg_terminate_backend does)."""
    archive = make_archive()
    assert archive.settings.dsn
    name = "stale-" + uuid.uuid4().hex[:8]
    dsn = archive.settings.dsn
    engine = create_engine("postgresql+psycopg2://", pool_size=4, max_overflow=0,
                           creator=lambda: psycopg2.connect(dsn,
                                                            application_name=name))
    try:
        held = [engine.raw_connection() for _ in range(4)]
        for fairy in held:  # four pooled connections, each with its PREPARE
            with fairy.cursor() as cur:
                cur.execute("PREPARE stale_one AS SELECT 1")
            fairy.commit()
        for fairy in held:
            fairy.close()
        with archive.engine.connect() as conn:
            killed = conn.execute(text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                "FROM pg_stat_activity WHERE application_name = :n"),
                {"n": name}).scalar_one()
        assert killed == 4
        for i in range(6):
            assert statements.run(engine, _constant(200 + i), False) == [(200 + i,)]
    finally:
        engine.dispose()
