"""Replication basics on real clusters: initial copy, changes, status, deny."""

from __future__ import annotations

import psycopg2
import pytest

from replication.snapshot import Snapshot
from replication.status import stream_status
from tests.replication.conftest import EPOCHS, Env, execute, insert_transients, query


def test_initial_copy_and_changes(marshall_env: Env) -> None:
    env = marshall_env
    m = env.dsns["master"]
    insert_transients(m, 1, 500)
    env.replicator.start()
    insert_transients(m, 501, 500)
    execute(
        m,
        "UPDATE marshall.transients SET status = 'review' WHERE transient_id %% 3 = 0",
    )
    execute(m, "DELETE FROM marshall.transients WHERE transient_id %% 7 = 0")
    env.assert_identical()
    assert query(env.dsns["slave"], "SELECT count(*) FROM marshall.transients")[0][
        0
    ] == (1000 - 1000 // 7)
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


def test_txids_beyond_32_bits(marshall_env: Env, sites: dict) -> None:
    """Anchors T12: events, tick and copy snapshots keep 64-bit txids."""
    env = marshall_env
    m, s = env.dsns["master"], env.dsns["slave"]
    for name, epoch in EPOCHS.items():
        txid = query(sites[name].dsn("postgres"), "SELECT txid_current()")[0][0]
        assert txid >> 32 == epoch
    insert_transients(m, 1, 10)
    env.replicator.start()
    env.catch_up()
    insert_transients(m, 11, 10)
    env.assert_identical()
    qid = query(m, "SELECT queue_id FROM pgq.queue WHERE queue_name = 'repl_marshall'")
    low = query(m, f"SELECT min(ev_txid) FROM pgq.event_{int(qid[0][0])}")[0][0]
    assert low >> 32 == EPOCHS["qub"]
    ((snap, xmax),) = query(
        s,
        "SELECT t.copy_snapshot, s.last_xmax FROM "
        "replication.table_state t JOIN replication.stream_state s "
        "USING (stream) WHERE table_name = 'marshall.transients'",
    )
    assert Snapshot.parse(snap).xmin >> 32 == EPOCHS["qub"]
    assert xmax >> 32 == EPOCHS["qub"]
    # The ten rows inserted before the copy came by the copy, the ten after by
    # events: had a txid lost its epoch, the copy snapshot would have hidden them.
    assert query(s, "SELECT events_applied FROM replication.stream_state") == [(10,)]


def test_sequences_shipped_for_promotion(marshall_env: Env) -> None:
    """Anchors P9/T9: the slave's key sequences follow the master's values."""
    env = marshall_env
    m, s = env.dsns["master"], env.dsns["slave"]
    seq = "SELECT last_value FROM marshall.transients_transient_id_seq"
    insert_transients(m, 1, 100)
    env.replicator.start()
    env.catch_up()
    assert query(s, seq) == [(100,)]
    # Keys 91..105 handed out and gone: a rolled-back insert, then deletions.
    execute(m, "BEGIN; INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
               "SELECT 'gone' || g, 1, 1 FROM generate_series(1, 5) g; ROLLBACK")
    execute(m, "DELETE FROM marshall.transients WHERE transient_id > 90")
    execute(m, "INSERT INTO marshall.comments (transient_id, author, body) "
               "VALUES (1, 'a', 'b')")
    env.assert_identical()
    assert query(s, seq) == query(m, seq) == [(105,)]
    assert query(s, "SELECT last_value FROM marshall.comments_comment_id_seq") == [(1,)]
    # Failover drill: the promoted slave hands out keys past all of them.
    env.replicator.stop()
    assert query(s, "SELECT nextval('marshall.transients_transient_id_seq')") == [
        (106,)
    ]


def test_writer_session_settings_do_not_round(marshall_env: Env) -> None:
    """A writer's extra_float_digits, TimeZone or IntervalStyle change nothing (P12)."""
    env = marshall_env
    m, s = env.dsns["master"], env.dsns["slave"]
    env.replicator.start()
    env.catch_up()
    conn = psycopg2.connect(
        m,
        options="-c extra_float_digits=0 -c TimeZone=Pacific/Chatham "
        "-c IntervalStyle=sql_standard -c DateStyle=SQL,DMY",
    )
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO marshall.transients (name, ra_deg, dec_deg, discovery_mag, "
            "discovery_date) VALUES ('float', 0.1::float8 + 0.2::float8, -1 / "
            "3.0::float8, 1 / 3.0::real, '2012-04-01 23:59:59.999999+00')"
        )
        cur.execute("SELECT ra_deg::text FROM marshall.transients")
        assert cur.fetchone() == ("0.3",)  # this session would print it rounded
    conn.commit()
    conn.close()
    env.assert_identical()
    exact = ("SELECT ra_deg, dec_deg, discovery_mag::float8, discovery_date "
             "FROM marshall.transients")
    assert query(s, exact) == query(m, exact)
    assert query(s, exact)[0][0] == 0.1 + 0.2
