"""The fault scenarios of issue 6 (anchors T1-T11) on real clusters.

After every fault, the slave must be identical to the master (I1), no event
may be applied twice (I2, the journal), and every committed write must be
present (I3, the writers' ledgers).  Waits have long deadlines but nothing
asserts on wall-clock time.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from replication.config import ConfigError, load_config
from replication.install import request_resync
from replication.status import stream_status
from replication.verify import verify_stream
from tests.replication.conftest import (
    AUX_TABLES,
    CLI,
    MARSHALL_SQL,
    MARSHALL_TABLES,
    ROOT,
    Env,
    Replicator,
    archive_database,
    execute,
    init,
    insert_transients,
    new_database,
    query,
    wait_for,
    with_port,
    write_config,
)
from tests.replication.proxy import TCPProxy
from tests.replication.writers import start_writers, stop_writers


def slave_names(env: Env) -> set[str]:
    """Names of the transients on the slave."""
    return {
        r[0] for r in query(env.dsns["slave"], "SELECT name FROM marshall.transients")
    }


def open_batch(env: Env) -> int | None:
    """The master's open batch of the stream's consumer, if any."""
    cfg = env.stream()
    rows = query(env.dsns["master"],
                 "SELECT current_batch FROM pgq.get_consumer_info(%s, %s)",
                 (cfg.queue, cfg.consumer))
    return rows[0][0] if rows else None


def marker(env: Env) -> int:
    """The slave's applied tick."""
    return int(
        query(
            env.dsns["slave"],
            "SELECT last_tick FROM replication.stream_state WHERE stream = 'marshall'",
        )[0][0]
    )


# -- 1. replicator killed ------------------------------------------------------

@pytest.mark.parametrize("fault", ["after_slave_commit", "before_slave_commit",
                                   "after_n_events:1500"])
def test_kill_at_fault_hook(marshall_env: Env, fault: str) -> None:
    env = marshall_env
    env.replicator.start()
    env.catch_up()
    env.replicator.stop()
    env.replicator.start(REPL_FAULT=fault)
    insert_transients(env.dsns["master"], 1, 3000)
    assert env.replicator.wait_exit() == -9
    batch = open_batch(env)
    assert batch is not None, "the killed batch must still be open on the master"
    if fault == "after_slave_commit":
        # The slave committed; the master was never told.
        nxt = query(env.dsns["master"],
                    "SELECT sub_next_tick FROM pgq.subscription WHERE sub_batch = %s",
                    (batch,))[0][0]
        assert marker(env) == nxt
    else:
        assert slave_names(env) == set()
    env.replicator.start()
    env.assert_identical()
    if fault == "after_slave_commit":
        assert "already applied; finishing it" in env.replicator.text()
    assert len(slave_names(env)) == 3000


def test_random_kills_under_load(marshall_env: Env) -> None:
    env = marshall_env
    rng = random.Random(6)
    writers = start_writers(env.dsns["master"], 4, pause=0.002)
    try:
        for _ in range(8):
            env.replicator.start()
            time.sleep(rng.uniform(0.2, 1.5))
            env.replicator.kill()
    finally:
        expected = stop_writers(writers)
    env.replicator.start()
    env.assert_identical()
    assert slave_names(env) == expected


# -- 2. slave cluster killed -------------------------------------------------

def test_slave_immediate_shutdown_during_apply(marshall_env: Env, sites: dict) -> None:
    env = marshall_env
    env.replicator.start()
    env.catch_up()
    insert_transients(env.dsns["master"], 1, 20000)  # one large transaction
    wait_for(lambda: "marshall.transients" in str(query(
        env.dsns["slave"], "SELECT query FROM pg_stat_activity WHERE state = 'active'"))
        or marker(env) > 0, what="apply to begin")
    sites["ia2"].stop("immediate")
    insert_transients(env.dsns["master"], 20001, 500)
    sites["ia2"].start()
    env.assert_identical()
    assert len(slave_names(env)) == 20500
    assert env.replicator.running()


# -- 3. connection cut / black-holed -----------------------------------------

def test_proxy_cut_blackhole_and_commit_loss(marshall_env: Env, tmp_path: Path) -> None:
    env = marshall_env
    cfg = env.stream()
    port = int(cfg.slave.rsplit(":", 1)[1].split("/")[0])
    proxy = TCPProxy(port)
    path = tmp_path / "proxied.toml"
    write_config(path, [{"name": "marshall", "origin": "qub", "master": cfg.master,
                         "slave": with_port(cfg.slave, proxy.port),
                         "tables": MARSHALL_TABLES}])
    rep = Replicator(path, tmp_path / "proxied.log")
    env.replicator = rep
    writers = start_writers(env.dsns["master"], 3, pause=0.005)
    try:
        rep.start()
        env.catch_up()
        proxy.cut()
        env.catch_up()
        proxy.blackhole()
        wait_for(lambda: "no answer within" in rep.text(), what="hang detection")
        proxy.heal()
        env.catch_up()
        proxy.arm_commit_cut()
        wait_for(lambda: proxy.commit_cuts == 1, what="a COMMIT to cut")
        wait_for(lambda: rep.text().count("no answer within") >= 2,
                 what="hang detection at COMMIT")
        proxy.heal()
    finally:
        expected = stop_writers(writers)
    env.assert_identical()
    assert slave_names(env) == expected
    # The commit went through on the server; the marker settled it.
    assert "already applied; finishing it" in rep.text()
    proxy.close()


# -- 4. concurrent writers, out-of-order commits, aborts, savepoints --------

def test_concurrent_writers_long_transactions(marshall_env: Env) -> None:
    env = marshall_env
    m = env.dsns["master"]
    env.replicator.start()
    cfg = env.stream()
    late = psycopg2.connect(m)
    aborted = psycopg2.connect(m)
    with late.cursor() as cur:
        cur.execute("INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                    "VALUES ('late-committer', 1, 1)")  # low ev_id, commits last
    with aborted.cursor() as cur:
        cur.execute("INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                    "VALUES ('aborted', 2, 2)")
    writers = start_writers(m, 8, pause=0.001)

    def tick_now() -> int:
        return int(query(m, "SELECT max(tick_id) FROM pgq.tick t JOIN pgq.queue q ON "
                            "q.queue_id = t.tick_queue WHERE queue_name = %s",
                         (cfg.queue,))[0][0])

    first = tick_now()
    wait_for(lambda: tick_now() >= first + 6 and marker(env) >= first + 5,
             what="six ticks past the long transactions")
    conn = psycopg2.connect(m)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                    "VALUES ('kept', 3, 3)")
        cur.execute("SAVEPOINT s1")
        cur.execute("INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                    "VALUES ('rolled-back', 4, 4)")
        cur.execute("ROLLBACK TO SAVEPOINT s1")
    conn.commit()
    conn.close()
    late.commit()
    aborted.rollback()
    expected = stop_writers(writers) | {"late-committer", "kept"}
    env.assert_identical()
    names = slave_names(env)
    assert names == expected
    assert "late-committer" in names
    assert not {"aborted", "rolled-back"} & names


# -- 5. same-row churn, pk change, truncate, hot counter -------------------

def test_churn_pk_change_truncate(marshall_env: Env) -> None:
    env = marshall_env
    m = env.dsns["master"]
    insert_transients(m, 1, 10)
    execute(m, "INSERT INTO marshall.comments (transient_id, author, body) "
               "VALUES (1, 'counter', '0')")
    env.replicator.start()
    execute(m, """
        BEGIN;
        INSERT INTO marshall.transients (transient_id, name, ra_deg, dec_deg)
            VALUES (500, 'churn', 1, 1);
        UPDATE marshall.transients SET discovery_mag = 1 WHERE transient_id = 500;
        UPDATE marshall.transients SET discovery_mag = 2 WHERE transient_id = 500;
        UPDATE marshall.transients SET name = 'churn2' WHERE transient_id = 500;
        DELETE FROM marshall.transients WHERE transient_id = 500;
        INSERT INTO marshall.transients (transient_id, name, ra_deg, dec_deg)
            VALUES (500, 'churn-again', 5, 5);
        UPDATE marshall.transients SET transient_id = 501 WHERE transient_id = 500;
        UPDATE marshall.transients SET transient_id = 500 WHERE transient_id = 2;
        COMMIT;""")
    for i in range(20):  # interleaved, one statement per transaction
        execute(m, "INSERT INTO marshall.atel_refs VALUES (%s, 1, 'x')", (i,))
        execute(
            m, "UPDATE marshall.atel_refs SET title = 'y' WHERE atel_number = %s", (i,)
        )
        if i % 2:
            execute(m, "DELETE FROM marshall.atel_refs WHERE atel_number = %s", (i,))
    execute(m, "TRUNCATE marshall.atel_refs")
    execute(m, "INSERT INTO marshall.atel_refs VALUES (99, 3, 'after truncate')")

    stop = threading.Event()
    done = [0] * 4

    def bump(k: int) -> None:
        conn = psycopg2.connect(m)
        while not stop.is_set():
            with conn.cursor() as cur:
                cur.execute("UPDATE marshall.comments SET body = (body::int + 1)::text "
                            "WHERE author = 'counter'")
            conn.commit()
            done[k] += 1
        conn.close()

    threads = [threading.Thread(target=bump, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    env.assert_identical()
    s = env.dsns["slave"]
    assert query(s, "SELECT body FROM marshall.comments WHERE author = 'counter'")[0][
        0
    ] == (str(sum(done)))
    assert query(s, "SELECT transient_id, name FROM marshall.transients "
                    "WHERE transient_id IN (2, 500, 501) ORDER BY 1") == [
        (500, "SN 2"), (501, "churn-again")]
    assert query(s, "SELECT atel_number FROM marshall.atel_refs") == [(99,)]


# -- 6. slave down during a 100k backlog -------------------------------------

@pytest.mark.slow
def test_backlog_100k_with_slave_down(marshall_env: Env, sites: dict) -> None:
    env = marshall_env
    m = env.dsns["master"]
    execute(m, "ALTER TABLE marshall.comments ALTER COLUMN body SET STORAGE EXTERNAL")
    insert_transients(m, 1, 100)
    env.replicator.start()
    env.catch_up()
    sites["ia2"].stop("immediate")
    pad = "x" * 400
    txid = 0
    for _ in range(8):  # 8 x 10k single-row-statement changes
        execute(
            m,
            "INSERT INTO marshall.comments (transient_id, author, body) "
            "SELECT 1 + g %% 100, 'bulk', %s || g FROM generate_series(1, 10000) g",
            (pad,),
        )
    conn = psycopg2.connect(m)
    with conn.cursor() as cur:  # the 20k-row transaction
        cur.execute("SELECT txid_current()")
        txid = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO marshall.comments (transient_id, author, body) "
            "SELECT 1 + g %% 100, 'big', %s || g FROM generate_series(1, 20000) g",
            (pad,),
        )
    conn.commit()
    conn.close()
    sites["ia2"].start()
    env.assert_identical(timeout=300)
    assert (
        query(env.dsns["slave"], "SELECT count(*) FROM marshall.comments")[0][0]
        == 100000
    )
    # The 20k transaction was applied in one batch (one slave transaction).
    cfg = env.stream()
    ticks = query(
        env.dsns["slave"],
        "SELECT count(DISTINCT j.tick_id) FROM replication.journal j "
        "WHERE j.stream = 'marshall' AND j.ev_id IN (SELECT unnest(%s::bigint[]))",
        (_event_ids(m, cfg.queue, txid),),
    )
    assert ticks == [(1,)]
    # Memory stayed bounded: far below the ~100 MB the backlog's rows would take.
    pid = env.replicator.proc.pid  # type: ignore[union-attr]
    hwm = int(next(line.split()[1] for line in open(f"/proc/{pid}/status")
                   if line.startswith("VmHWM")))
    assert hwm < 90_000, f"replicator peak RSS {hwm} kB"


def _event_ids(dsn: str, queue: str, txid: int) -> list[int]:
    qid = query(dsn, "SELECT queue_id FROM pgq.queue WHERE queue_name = %s", (queue,))[
        0
    ][0]
    ids = [r[0] for r in query(dsn, f"SELECT ev_id FROM pgq.event_{int(qid)} "
                                    "WHERE ev_txid = %s", (txid,))]
    assert len(ids) == 20000
    return ids


# -- 7. a row that cannot apply ---------------------------------------------

def test_unapplicable_row_halts_then_resumes(marshall_env: Env) -> None:
    env = marshall_env
    m, s = env.dsns["master"], env.dsns["slave"]
    insert_transients(m, 1, 5)
    env.replicator.start()
    env.catch_up()
    execute(s, "ALTER TABLE marshall.comments ADD CONSTRAINT no_poison "
               "CHECK (body <> 'poison')")
    execute(m, """BEGIN;
        INSERT INTO marshall.comments (comment_id, transient_id, author, body)
            VALUES (1, 1, 'a', 'fine');
        INSERT INTO marshall.comments (comment_id, transient_id, author, body)
            VALUES (2, 1, 'b', 'poison');
        COMMIT;""")
    execute(m, "INSERT INTO marshall.comments (comment_id, transient_id, author, body) "
               "VALUES (3, 1, 'c', 'after')")

    def halted() -> bool:
        err = stream_status(env.stream()).last_error
        return bool(err and "marshall.comments" in err)

    wait_for(halted, what="the stream to halt")
    err = stream_status(env.stream()).last_error
    assert err is not None
    assert "event " in err and '"comment_id": 2' in err and "no_poison" in err
    assert "marshall.comments" in env.replicator.text()
    # The whole batch rolled back: not even the fine row of that transaction.
    assert query(s, "SELECT count(*) FROM marshall.comments")[0][0] == 0
    execute(s, "ALTER TABLE marshall.comments DROP CONSTRAINT no_poison")
    env.assert_identical()
    assert stream_status(env.stream()).last_error is None
    assert query(s, "SELECT body FROM marshall.comments ORDER BY 1") == [
        ("after",), ("fine",), ("poison",)]


# -- 8. both directions of the circle ---------------------------------------

def test_both_directions_no_echo(sites: dict, tmp_path: Path) -> None:
    qub_m = new_database(sites["qub"], "marshall")
    ia2_b = new_database(sites["ia2"], "marshall_bk")
    ia2_aux = str(archive_database(sites["ia2"], "aux", tmp_path / "ia2").dsn)
    qub_aux = str(archive_database(sites["qub"], "aux_copy", tmp_path / "qub").dsn)
    for dsn in (qub_m, ia2_b):
        execute(dsn, MARSHALL_SQL.read_text().replace("%", "%%"))
    path = tmp_path / "circle.toml"
    streams = [
        {"name": "marshall", "origin": "qub", "master": qub_m, "slave": ia2_b,
         "tables": MARSHALL_TABLES},
        {"name": "aux", "origin": "ia2", "master": ia2_aux, "slave": qub_aux,
         "tables": AUX_TABLES},
    ]
    write_config(path, streams)
    cfg = load_config(path)
    init(path, cli=CLI)
    # The archive's own command, as deployed: vo-archive -v replicate run.
    rep = Replicator(path, tmp_path / "circle.log",
                     command=[*CLI[:-1], "-v", "replicate"])
    rep.start()
    env = Env(cfg, path, rep, {"master": qub_m, "slave": ia2_b})
    try:
        env.catch_up("marshall")
        env.catch_up("aux")  # initial copies done; from here on, only events
        insert_transients(qub_m, 1, 300)
        execute(
            ia2_aux,
            "INSERT INTO archive.run (name, eso_run, programme, instrument, "
            "first_night, last_night) SELECT 'run' || g, '199.D-0143(I)', "
            "'199.D-0143', 'EFOSC', '2012-04-01', '2012-04-03' "
            "FROM generate_series(1, 50) g",
        )
        execute(
            ia2_aux,
            "INSERT INTO archive.product (product_key, instrument, mode, "
            "category, level, product_type, description, eso_phase3, "
            "filetype, run_id) SELECT 'k' || g, 'EFOSC', 'imaging', "
            "'science', 'final', 'image', 'demo', 'yes', 22107, 1 + g %% 50 "
            "FROM generate_series(1, 200) g",
        )
        execute(ia2_aux, "UPDATE archive.product SET eso_phase3 = 'flagged' "
                         "WHERE product_id <= 100")
        env.assert_identical("marshall")
        env.assert_identical("aux")
        # Local writes to either slave are refused.
        for dsn, stmt in ((ia2_b, "DELETE FROM marshall.transients"),
                          (qub_aux, "UPDATE archive.run SET programme = 'x'")):
            with pytest.raises(psycopg2.Error, match="local changes are refused"):
                execute(dsn, stmt)
        # Nothing echoes: each queue holds only its own master's writes.
        applied = {r[0]: r[1] for r in query(ia2_b, "SELECT stream, events_applied "
                                                    "FROM replication.stream_state")}
        assert applied == {"marshall": 300}
        applied = {r[0]: r[1] for r in query(qub_aux, "SELECT stream, events_applied "
                                                      "FROM replication.stream_state")}
        assert applied == {"aux": 350}
        for dsn, queue in ((qub_aux, "repl_marshall"), (ia2_b, "repl_aux")):
            assert query(dsn, "SELECT count(*) FROM pgq.queue WHERE queue_name = %s",
                         (queue,)) == [(0,)]
    finally:
        rep.kill()
    # A table configured in both directions is refused.
    streams[1] = {"name": "aux", "origin": "ia2", "master": ia2_b, "slave": qub_m,
                  "tables": ["marshall.transients"]}
    write_config(path, streams)
    with pytest.raises(ConfigError, match="loop"):
        load_config(path)


# -- 9. resync while writes continue -----------------------------------------

def test_resync_under_load(marshall_env: Env) -> None:
    env = marshall_env
    m = env.dsns["master"]
    insert_transients(m, 1, 2000)
    env.replicator.start()
    writers = start_writers(m, 3, pause=0.003)
    try:
        for _ in range(3):
            before = env.replicator.text().count("table marshall.transients copied")
            request_resync(env.stream(), "marshall.transients")
            wait_for(lambda b=before: env.replicator.text().count(
                "table marshall.transients copied") > b, what="the resync")
        # A copy killed before its commit is redone on restart.
        env.replicator.kill()
        request_resync(env.stream(), "marshall.transients")
        env.replicator.start(REPL_FAULT="before_copy_commit")
        assert env.replicator.wait_exit() == -9
        assert stream_status(env.stream()).pending_tables == ["marshall.transients"]
        env.replicator.start()
    finally:
        expected = stop_writers(writers)
    env.assert_identical()
    assert slave_names(env) == expected | {f"SN {i}" for i in range(1, 2001)}


# -- restore: rebuild a lost master from its backup --------------------------

def test_restore_lost_master(marshall_env: Env, sites: dict, tmp_path: Path) -> None:
    env = marshall_env
    old = env.dsns["master"]
    insert_transients(old, 1, 400)
    execute(old, "INSERT INTO marshall.comments (transient_id, author, body) "
                 "SELECT g, 'x', 'c' || g FROM generate_series(1, 50) g")
    env.replicator.start()
    env.assert_identical()
    # Keys 391..405 were handed out and are gone: a rolled-back insert, then
    # deleted rows.  The restored master must not hand them out again (P9).
    execute(old, "BEGIN; INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                 "SELECT 'gone' || g, 1, 1 FROM generate_series(1, 5) g; ROLLBACK")
    execute(old, "DELETE FROM marshall.transients WHERE transient_id > 390")
    env.assert_identical()
    env.replicator.kill()
    # QUB is lost; a new master database on the spare cluster gets the schema.
    execute(sites["qub"].dsn("postgres"), f'DROP DATABASE "{old.rsplit("/", 1)[1]}" '
                                          "WITH (FORCE)")
    new = new_database(sites["spare"], "marshall_new")
    execute(new, MARSHALL_SQL.read_text().replace("%", "%%"))
    path = tmp_path / "restored.toml"
    write_config(path, [{"name": "marshall", "origin": "qub", "master": new,
                         "slave": env.dsns["slave"], "tables": MARSHALL_TABLES}])
    # The replicator refuses the new master until it is restored.
    rep = Replicator(path, tmp_path / "restored.log")
    env.replicator = rep  # the fixture kills it
    rep.start()
    wait_for(lambda: "`replicate restore`" in rep.text(), what="refusal")
    rep.kill()
    out = subprocess.run(
        [*CLI, "--config", str(path), "restore", "--stream", "marshall"],
        check=False, capture_output=True, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert "restored 440 rows" in out.stdout
    # The spare's txid epoch is below QUB's (anchors P11, T12): the stream was
    # re-initialised rather than trusting old snapshots.
    assert "txids are below the old one's" in out.stdout
    env.config = load_config(path)
    env.dsns["master"] = new
    rep.start()
    # Sequences are past every key the old master handed out.
    insert_transients(new, 1001, 100)
    assert query(new, "SELECT min(transient_id) FROM marshall.transients "
                      "WHERE name = 'SN 1001'") == [(406,)]
    execute(new, "INSERT INTO marshall.comments (transient_id, author, body) "
                 "VALUES (406, 'y', 'new')")
    execute(new, "DELETE FROM marshall.transients WHERE transient_id <= 10")
    env.assert_identical()
    # A copy in the new master's (lower) txid space hands over cleanly too.
    request_resync(env.stream(), "marshall.transients")
    insert_transients(new, 2001, 50)
    env.assert_identical()
    assert len(slave_names(env)) == 530
    assert query(
        env.dsns["slave"], "SELECT generation FROM replication.stream_state"
    ) == [(2,)]


# -- 7b. operator skip with a dead-letter record (anchors P7, T8) -------------

def replicate(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``vo-archive replicate --config … ARGS``."""
    return subprocess.run([*CLI, "--config", str(env.path), *args],
                          check=False, capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_operator_skip_leaves_dead_letter(marshall_env: Env) -> None:
    env = marshall_env
    m, s = env.dsns["master"], env.dsns["slave"]
    insert_transients(m, 1, 5)
    env.replicator.start()
    env.catch_up()
    execute(s, "ALTER TABLE marshall.comments ADD CONSTRAINT no_poison "
               "CHECK (body <> 'poison')")
    execute(m, """BEGIN;
        INSERT INTO marshall.comments (comment_id, transient_id, author, body)
            VALUES (1, 1, 'a', 'fine');
        INSERT INTO marshall.comments (comment_id, transient_id, author, body)
            VALUES (2, 1, 'b', 'poison');
        COMMIT;""")
    execute(m, "INSERT INTO marshall.comments (comment_id, transient_id, author, body) "
               "VALUES (3, 1, 'c', 'after')")
    wait_for(lambda: "no_poison" in (stream_status(env.stream()).last_error or ""),
             what="the stream to halt")
    err = stream_status(env.stream()).last_error or ""
    poison = int(re.search(r"event (\d+) \(I\)", err).group(1))  # type: ignore[union-attr]

    # An event that is not in the open batch: refused, nothing changes.
    out = replicate(env, "skip", "--stream", "marshall", "--event", str(poison + 1000))
    assert out.returncode == 2
    assert out.stderr.startswith(
        f"error: event {poison + 1000} is not in the open batch"
    )
    assert len(out.stderr.strip().splitlines()) == 1
    assert query(s, "SELECT count(*) FROM replication.dead_letter") == [(0,)]

    out = replicate(env, "skip", "--stream", "marshall", "--event", str(poison),
                    "--reason", "poison comment, ticket 42")
    assert out.returncode == 0, out.stderr
    assert f"without event(s) {poison};" in out.stdout
    env.catch_up()
    assert stream_status(env.stream()).last_error is None
    assert query(s, "SELECT body FROM marshall.comments ORDER BY 1") == [
        ("after",), ("fine",)]
    ((ev, op, table, key, body, error, who, reason, tick),) = query(
        s,
        "SELECT ev_id, ev_type, table_name, row_key::text, row_data ->> 'body', error, "
        "skipped_by, reason, tick_id FROM replication.dead_letter",
    )
    assert (ev, op, table, key, body) == (poison, "I", "marshall.comments",
                                          '{"comment_id": 2}', "poison")
    assert f"event {poison} (I)" in error and "no_poison" in error
    assert "database user" in who and reason == "poison comment, ticket 42"
    # Written with the rest of its batch: the fine row of the same transaction
    # was applied under the same tick.
    assert query(s, "SELECT DISTINCT tick_id FROM replication.journal WHERE ev_id = %s",
                 (poison - 1,)) == [(tick,)]

    # verify flags exactly that row, and names the dead letter.
    out = replicate(env, "verify", "--stream", "marshall")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert [ln for ln in lines if "DIFFERENT" in ln] == [
        "marshall marshall.comments: DIFFERENT (master 3 rows, slave 2 rows)"]
    assert next(ln.strip() for ln in lines if ln.startswith("  ")) == (
        'only on master: {"comment_id": 2}')
    assert next(ln for ln in lines if "dead letter:" in ln).strip().startswith(
        f'dead letter: event {poison} (I) key {{"comment_id": 2}} skipped by ')
    reports = {r.table: r for r in verify_stream(env.stream(), wait=False)}
    assert [t for t, r in reports.items() if not r.identical] == ["marshall.comments"]
    rep = reports["marshall.comments"]
    assert (rep.only_master, rep.only_slave, rep.different) == (
        ['{"comment_id": 2}'], [], [])
