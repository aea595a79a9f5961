"""Replication basics on real clusters: initial copy, changes, status, deny."""

from __future__ import annotations

import psycopg2
import pytest

from replication.status import stream_status
from tests.replication.conftest import Env, execute, insert_transients, query


def test_initial_copy_and_changes(marshall_env: Env) -> None:
    env = marshall_env
    m = env.dsns["master"]
    insert_transients(m, 1, 500)
    env.replicator.start()
    insert_transients(m, 501, 500)
    execute(m, "UPDATE marshall.transients SET status = 'review' WHERE transient_id %% 3 = 0")
    execute(m, "DELETE FROM marshall.transients WHERE transient_id %% 7 = 0")
    env.assert_identical()
    assert query(env.dsns["slave"], "SELECT count(*) FROM marshall.transients")[0][0] == (
        1000 - 1000 // 7)
    st = stream_status(env.stream())
    assert st.last_error is None
    assert st.applied_tick is not None and st.backlog_events == 0
    assert st.lag_seconds == 0.0


def test_local_writes_to_slave_refused(marshall_env: Env) -> None:
    s = marshall_env.dsns["slave"]
    with pytest.raises(psycopg2.Error, match="replica"):
        execute(s, "INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                   "VALUES ('x', 1, 1)")
    with pytest.raises(psycopg2.Error, match="replica"):
        execute(s, "TRUNCATE marshall.atel_refs")
