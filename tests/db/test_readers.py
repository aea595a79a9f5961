"""Read nodes against the test cluster: the default, a dead standby, a non-standby."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text

from tests.conftest import Archive
from vo_archive.db.cluster import free_port
from vo_archive.db.engine import get_engine
from vo_archive.db.readers import ReadNodes, check_nodes, read_nodes


def test_without_standbys_every_read_uses_the_primary_engine(
        make_archive: Callable[..., Archive]) -> None:
    archive = make_archive()
    before = threading.active_count()
    nodes = read_nodes(archive.settings)
    assert nodes is read_nodes(archive.settings)  # one per process
    assert nodes.order() == [(None, get_engine(archive.settings))]
    assert nodes.engine(pre_ping=False) is get_engine(archive.settings, False)
    assert nodes.run(lambda e: e) is get_engine(archive.settings)
    assert threading.active_count() == before  # nothing to watch


def _dead_dsn(archive: Archive) -> str:
    assert archive.settings.dsn is not None
    url = archive.engine.url.set(port=free_port())
    return url.render_as_string(hide_password=False).replace("+psycopg2", "")


def test_a_standby_that_does_not_answer_gets_no_reads(
        make_archive: Callable[..., Archive]) -> None:
    archive = make_archive()
    assert archive.settings.dsn is not None
    nodes = ReadNodes(archive.settings.dsn, (_dead_dsn(archive),), 5.0, 0.2)
    try:
        node = nodes.nodes[0]
        assert not node.healthy and node.note.startswith("not answering")
        assert [n for n, _ in nodes.order()] == [None]
        used: list[Engine] = []

        def work(engine: Engine) -> int:
            used.append(engine)
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT 7")).scalar_one())

        assert nodes.run(work) == 7
        assert used == [get_engine(archive.settings)]
    finally:
        nodes.close()


def test_a_read_whose_standby_fails_is_made_on_the_primary(
        make_archive: Callable[..., Archive]) -> None:
    archive = make_archive()
    assert archive.settings.dsn is not None
    nodes = ReadNodes(archive.settings.dsn, (_dead_dsn(archive),), 5.0, 60.0,
                      watch=False)
    node = nodes.nodes[0]
    # as a check that found it well just before it died would leave it
    node.healthy, node.checked_at = True, time.monotonic()
    assert nodes.order()[0][0] is node
    tried: list[str] = []

    def work(engine: Engine) -> str:
        tried.append(str(engine.url.port))
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT current_database()")).scalar_one())

    assert nodes.run(work) == archive.engine.url.database
    assert len(tried) == 2  # the standby, then the primary
    assert not nodes.usable(node) and node.note.startswith("a read failed")
    # a query's own error is not sent elsewhere
    node.checked_at = time.monotonic() + 1
    node.healthy = True
    calls: list[Engine] = []

    def bad(engine: Engine) -> None:
        calls.append(engine)
        with get_engine(archive.settings).connect() as conn:
            conn.execute(text("SELECT no_such_column"))

    try:
        nodes.run(bad)
    except Exception as exc:
        assert "no_such_column" in str(exc)
    else:
        raise AssertionError("the query's error was swallowed")
    assert len(calls) == 1


def test_status_says_which_node_is_not_a_standby(
        make_archive: Callable[..., Archive]) -> None:
    archive = make_archive()
    assert archive.settings.dsn is not None
    settings = dataclasses.replace(
        archive.settings, read_dsns=(archive.settings.dsn, _dead_dsn(archive)))
    primary, itself, dead = check_nodes(settings)
    assert (primary.role, primary.healthy, primary.note) == ("primary", True, "ok")
    assert (itself.role, itself.healthy) == ("standby", False)
    assert itself.note == "not a standby (promoted?)"
    assert not dead.healthy and dead.note.startswith("not answering")
    assert "secret" not in dead.where and dead.where.startswith("127.0.0.1:")
