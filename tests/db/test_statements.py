"""Prepared DAL statements: one round trip, the caller's scope, bounded memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Integer, bindparam, func, literal_column, select, table

from tests.conftest import Archive
from vo_archive import statements
from vo_archive.db.engine import get_engine


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
