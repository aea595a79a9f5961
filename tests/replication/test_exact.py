"""Every value of every replicated column type arrives exactly (issue 17).

A table of edge values (negative zero, NaN, infinities, subnormals, numeric
scales and NaN, timestamps at their limits, JSON and JSONB, bytea, odd text,
arrays of each, pgSphere values, a composite) goes through the initial copy,
the change stream (inserts, updates, a key change) and ``resync``, and is
compared value by value: floats by their IEEE bits (so ``-0.0`` by its sign
bit, NaN as NaN), everything else by its exact text form; then by
``replicate verify``.  A queue holding legacy (``to_jsonb``) images from an
older capture trigger next to new ones is applied too.
"""

from __future__ import annotations

import math
import struct
import subprocess
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from replication.config import load_config
from tests.replication.conftest import (
    CLI,
    ROOT,
    Env,
    Replicator,
    execute,
    init,
    new_database,
    query,
    wait_for,
    write_config,
)
from vo_archive.db.cluster import EmbeddedCluster

TABLE = "edge.vals"

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pg_sphere;
CREATE SCHEMA edge;
CREATE TYPE edge.pair AS (x float8, label text);
CREATE TABLE edge.vals (
    id integer PRIMARY KEY,
    f8 float8, f4 real, f8a float8[], f4a real[],
    num numeric, nums numeric(30, 10), numa numeric[],
    ts timestamp, tstz timestamptz, tsa timestamptz[], d date, tm time(6),
    iv interval,
    jb jsonb, jba jsonb[], js json,
    by bytea, bya bytea[], tx text, txa text[], vc varchar(12), ch char(4),
    b boolean, i8 bigint, u uuid,
    pos spoint, circ scircle, box sbox, poly spoly, path spath,
    pr edge.pair
);
"""

# Column -> SQL literals; row k takes value k (cycled); row 0 is all NULL.
VALUES: dict[str, list[str]] = {
    "f8": ["'-0'", "'NaN'", "'Infinity'", "'-Infinity'", "'4.9e-324'",
           "'2.2250738585072009e-308'", "0.1::float8 + 0.2", "'1.7976931348623157e308'",
           "'-2.5e-320'", "round(-0.3::float8)", "'-1e-300'"],
    "f4": ["'-0'", "'NaN'", "'Infinity'", "'1e-45'", "'-3.4028235e38'", "'0.1'",
           "1 / 3.0::real"],
    "f8a": ["'{-0,NaN,Infinity,-Infinity,4.9e-324,0.30000000000000004}'",
            "'{{-0,0},{1e-310,-1e-310}}'", "'{}'", "'{NULL,-0}'"],
    "f4a": ["'{-0,NaN,-Infinity,1e-45,0.1}'"],
    "num": ["'NaN'", "'1.50'", "'-0.000'", "'Infinity'", "'-Infinity'",
            "'123456789012345678901234567890.1234567890123456789'", "'1e-100'",
            "'0.10'"],
    "nums": ["'1.5'", "'-0.0000000001'", "'NaN'", "'12345678901234567890.1234567890'"],
    "numa": ["'{NaN,1.50,-0.000,1e-20,NULL}'"],
    "ts": ["'infinity'", "'-infinity'", "'4713-01-01 00:00:00 BC'",
           "'294276-12-31 23:59:59.999999'", "'2000-01-01 00:00:00.000001'",
           "'1582-10-10 12:00:00'"],
    "tstz": ["'infinity'", "'-infinity'", "'4713-01-01 00:00:00+00 BC'",
             "'294276-12-31 23:59:59.999999+00'", "'2012-04-01 23:59:59.999999+13:45'",
             "'1969-12-31 23:59:59.999999-00:30'"],
    "tsa": ["ARRAY['infinity', '4713-01-01 00:00:00+00 BC', "
            "'2000-01-01 00:00:00.000001+00']::timestamptz[]"],
    "d": ["'infinity'", "'-infinity'", "'4713-01-01 BC'", "'5874897-12-31'",
          "'2000-02-29'"],
    "tm": ["'24:00:00'", "'00:00:00.000001'", "'23:59:59.999999'"],
    "iv": ["'1 year 2 mons -3 days 04:05:06.000007'",
           "'-178956970 years -7 mons -2147483647 days -2562047788:00:54.775807'",
           "'0'"],
    "jb": [""" '{"a": -0.0, "b": 1.50, "c": 1e400, "d": "\\u2028 \\" \\\\", """
           """ "e": null}' """,
           "'null'", "'\"NaN\"'", "'[1, 2.0, -0]'", "'{}'", "'\"\"'"],
    "jba": ["ARRAY['null', '{\"x\": [1.10]}', NULL]::jsonb[]"],
    "js": ["'{ \"a\" :1, \"a\": 2,  \"b\":-0.0 }'", "'null'", "'[1e999]'"],
    "by": ["'\\x00ff5c2700'::bytea", "''::bytea", "'\\x5c78'::bytea"],
    "bya": ["ARRAY['\\x00'::bytea, '', NULL]"],
    "tx": ["E'tab\\there\\nnew line \\\\ back'", "'NULL'", "''", "'{\"a\",b}'",
           "'\u2028\u00e9\u0301 \U0001F52D ''q'' \"dq\"'", "'   '", "E'\\r\\x7f'"],
    "txa": ["ARRAY['a,b', 'NULL', NULL, '\"q\"', '', ' s ', E'\\\\', '{}']"],
    "vc": ["'twelve chars'", "'x'"],
    "ch": ["'ab'", "'abcd'"],
    "b": ["true", "false"],
    "i8": ["-9223372036854775808", "9223372036854775807", "0"],
    "u": ["'00000000-0000-0000-0000-000000000000'", "gen_random_uuid()"],
    "pos": ["spoint(1.2345678901234567, -0.7654321098765432)",
            "spoint(0.1, 0.2)",
            "spoint(6.283185307179586 - 1e-15, -1.5707963267948966)",
            "spoint(0, 0)"],
    "circ": ["scircle(spoint(1.2345678901234567, 0.3333333333333333), "
             "0.00001234567890123457)", "scircle(spoint(0.1, -0.2), 0)"],
    "box": ["sbox(spoint(0.1, -0.2), spoint(0.3000000000000001, 0.4))",
            "sbox(spoint(6.1, -1.1), spoint(0.2, 1.2))"],
    "poly": ["'{(0.1, 0.2), (0.3, 0.25), (0.2, 0.4)}'::spoly",
             "'{(1.2345678901234567, 0.1), (1.3, 0.1), (1.3, 0.2000000000000001)}'"
             "::spoly"],
    "path": ["'{(0.1, 0.2), (0.3, 0.25)}'::spath"],
    "pr": ["ROW('-0', 'a,b')::edge.pair", "ROW('NaN', NULL)::edge.pair",
           "ROW(NULL, '\"')::edge.pair"],
}
COLUMNS = list(VALUES)
ROWS = max(len(v) for v in VALUES.values())

# Exact text of every column (the session pins extra_float_digits=3, ISO
# dates, UTC), and every float as float8 for a bit-for-bit comparison.
TEXT = "SELECT id, " + ", ".join(f"{c}::text" for c in COLUMNS) + (
    " FROM edge.vals ORDER BY id")
FLOATS = """SELECT id, f8, f4::float8, f8a, f4a::float8[], (pr).x,
       long(pos), lat(pos), long(center(circ)), lat(center(circ)), radius(circ),
       long(sw(box)), lat(sw(box)), long(ne(box)), lat(ne(box)),
       encode(poly::bytea, 'hex'), encode(path::bytea, 'hex')
FROM edge.vals ORDER BY id"""
OPTIONS = ("-c extra_float_digits=3 -c DateStyle=ISO -c TimeZone=UTC "
           "-c IntervalStyle=postgres")


def insert_rows(dsn: str, first_id: int, options: str = "") -> None:
    """Insert the edge rows with ids ``first_id ..``; the first one all NULL."""
    conn = psycopg2.connect(dsn, options=options)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO edge.vals (id) VALUES (%s)", (first_id,))
        for k in range(ROWS):
            vals = ", ".join(VALUES[c][k % len(VALUES[c])] for c in COLUMNS)
            # Test data written here, not user input.
            cur.execute(f"INSERT INTO edge.vals (id, {', '.join(COLUMNS)}) "
                        f"VALUES ({first_id + 1 + k}, {vals})")
    conn.commit()
    conn.close()


def fetch(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    """Rows of ``statement`` read with the exact text settings."""
    conn = psycopg2.connect(dsn, options=OPTIONS)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall()
    finally:
        conn.close()


def bits(value: object) -> object:
    """A value with every float replaced by its IEEE 754 bytes (recursively)."""
    if isinstance(value, float):
        return struct.pack(">d", value)
    if isinstance(value, list):
        return [bits(v) for v in value]
    return value


def assert_exact(master: str, slave: str) -> None:
    """Compare both sides value by value; -0.0 by its sign bit, NaN as NaN."""
    m_text, s_text = fetch(master, TEXT), fetch(slave, TEXT)
    assert [r[0] for r in m_text] == [r[0] for r in s_text]
    for mr, sr in zip(m_text, s_text, strict=True):
        for col, mv, sv in zip(COLUMNS, mr[1:], sr[1:], strict=True):
            assert mv == sv, f"row {mr[0]} column {col}: {mv!r} became {sv!r}"
    m_fl, s_fl = fetch(master, FLOATS), fetch(slave, FLOATS)
    for mr, sr in zip(m_fl, s_fl, strict=True):
        assert bits(list(mr)) == bits(list(sr)), f"row {mr[0]}: {mr} became {sr}"
    # The data really holds what the comparison is about.
    f8 = [r[1] for r in s_fl if r[1] is not None]
    negzero = [v for v in f8 if v == 0 and math.copysign(1.0, v) < 0]
    assert negzero and all(math.copysign(1.0, v) < 0 for v in negzero)
    assert not any(v == 0 and math.copysign(1.0, v) > 0 for v in f8)
    assert any(math.isnan(v) for v in f8)
    assert any(0 < abs(v) < 2.2250738585072014e-308 for v in f8)  # subnormal
    arrays = [r[3] for r in s_fl if r[3]]
    assert any(math.copysign(1.0, v) < 0 for a in arrays for v in a if v == 0)
    assert any(r[5] == 0 and math.copysign(1.0, r[5]) < 0 for r in s_fl)


def verify_cli(path: Path) -> subprocess.CompletedProcess[str]:
    """``vo-archive replicate verify`` as the operator runs it."""
    return subprocess.run([*CLI, "--config", str(path), "verify"], check=False,
                          cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def edge_env(sites: dict[str, EmbeddedCluster], tmp_path: Path) -> Env:
    """Stream ``edge`` qub → ia2 over the edge-value table (not yet initialised)."""
    master = new_database(sites["qub"], "edge")
    slave = new_database(sites["ia2"], "edge_bk")
    for dsn in (master, slave):
        execute(dsn, SCHEMA)
    path = tmp_path / "replication.toml"
    write_config(path, [{"name": "edge", "origin": "qub", "master": master,
                         "slave": slave, "tables": [TABLE]}])
    return Env(load_config(path), path, Replicator(path, tmp_path / "replicator.log"),
               {"master": master, "slave": slave})


def test_edge_values_copy_stream_resync(edge_env: Env) -> None:
    env = edge_env
    m, s = env.dsns["master"], env.dsns["slave"]
    # A writer whose session would round floats and print dates otherwise.
    insert_rows(m, 0, "-c extra_float_digits=-15 -c DateStyle=SQL,DMY "
                      "-c TimeZone=Pacific/Chatham -c bytea_output=escape")
    init(env.path)
    env.replicator.start()
    try:
        insert_rows(m, 100)  # through the change stream
        # Updates (each column to another edge value) and a key change.
        execute(m, "UPDATE edge.vals SET f8 = '-0', f8a = '{-0}', num = 'NaN', "
                   "pr = ROW('-0', 'u')::edge.pair, ts = 'infinity' WHERE id %% 3 = 1")
        execute(m, "UPDATE edge.vals SET id = id + 1000 WHERE id IN (101, 102)")
        execute(m, "DELETE FROM edge.vals WHERE id = 103")
        env.catch_up("edge")
        assert query(s, "SELECT count(*) FROM edge.vals") == [(2 * (ROWS + 1) - 1,)]
        assert_exact(m, s)
        out = verify_cli(env.path)
        assert out.returncode == 0, out.stdout + out.stderr
        rows = 2 * ROWS + 1
        assert out.stdout.strip() == (f"edge {TABLE}: identical (master {rows} rows, "
                                      f"slave {rows} rows)")

        # Lose the sign of a zero and a NaN on the slave: verify sees it, and
        # resync (the initial copy's path) brings the exact values back.
        conn = psycopg2.connect(s, options="-c session_replication_role=replica")
        with conn.cursor() as cur:
            cur.execute("UPDATE edge.vals SET f8 = 0 WHERE f8 = 0")
            cur.execute("UPDATE edge.vals SET f8a = '{0}' WHERE f8a = '{-0}'")
        conn.commit()
        conn.close()
        out = verify_cli(env.path)
        assert out.returncode == 1
        assert f"edge {TABLE}: DIFFERENT" in out.stdout
        assert '  differs: {"id": 1}' in out.stdout.splitlines()
        resync = subprocess.run([*CLI, "--config", str(env.path), "resync", TABLE],
                                check=True, cwd=ROOT, capture_output=True, text=True)
        assert "will be copied again" in resync.stdout
        wait_for(lambda: query(s, "SELECT state, rows_copied FROM "
                                  "replication.table_state") == [("ok", 2 * ROWS + 1)],
                 what="the resync")
        env.catch_up("edge")
        assert_exact(m, s)
        assert verify_cli(env.path).returncode == 0
    finally:
        env.replicator.stop()


def test_mixed_version_queue(edge_env: Env) -> None:
    """Legacy images still in the queue after an upgrade are applied as before."""
    env = edge_env
    m, s = env.dsns["master"], env.dsns["slave"]
    init(env.path)
    env.replicator.start()
    env.catch_up("edge")
    env.replicator.stop()
    # The capture trigger as the previous `init` made it (no format, the
    # pgSphere encoder alone): it writes legacy to_jsonb images.
    legacy = (
        "jsonb_build_object('pos', CASE WHEN ($1).pos IS NOT NULL THEN "
        "jsonb_build_object('rad', jsonb_build_array(public.long(($1).pos), "
        "public.lat(($1).pos))) END, 'poly', CASE WHEN ($1).poly IS NOT NULL THEN "
        "jsonb_build_object('b64', encode((($1).poly)::bytea, 'base64')) END, "
        "'path', CASE WHEN ($1).path IS NOT NULL THEN jsonb_build_object('b64', "
        "encode((($1).path)::bytea, 'base64')) END)"
    )
    execute(m, "CREATE OR REPLACE TRIGGER _repl_capture_edge AFTER INSERT OR UPDATE "
               "OR DELETE ON edge.vals FOR EACH ROW EXECUTE FUNCTION "
               "replication.capture('repl_edge', 'qub', '{id}', %s)", (legacy,))
    execute(m, "INSERT INTO edge.vals (id, f8, num, tx, pos, poly, jb) VALUES "
               "(1, 0.1, 1.50, 'old', spoint(1.2345678901234567, 0.1), "
               "'{(0.1, 0.2), (0.3, 0.25), (0.2, 0.4)}', '{\"a\": [1.10]}'), "
               "(2, 2.5, 'NaN', 'old', NULL, NULL, NULL)")
    execute(m, "UPDATE edge.vals SET tx = 'old, updated' WHERE id = 2")
    init(env.path)  # the upgrade: triggers write format "t" from here on
    insert_rows(m, 10)
    execute(m, "UPDATE edge.vals SET tx = 'new' WHERE id = 1")
    (qid,) = query(m, "SELECT queue_id FROM pgq.queue WHERE queue_name = "
                      "'repl_edge'")[0]
    # Both formats wait in the queue, in that order.
    assert query(m, "SELECT coalesce(ev_extra4, 'legacy'), count(*) FROM "
                    f"pgq.event_{int(qid)} GROUP BY 1 ORDER BY min(ev_id)") == [
        ("legacy", 3), ("t", ROWS + 2)]
    env.replicator.start()
    env.catch_up("edge")
    env.replicator.stop()
    assert_exact(m, s)
    assert query(s, "SELECT events_applied FROM replication.stream_state") == [
        (3 + ROWS + 2,)]


def test_older_support_functions_halt(edge_env: Env) -> None:
    """A slave whose functions predate this replicator halts, naming the fix."""
    env = edge_env
    init(env.path)
    # A replicator of version 1 calls a five-argument apply function: `init`
    # drops it, so such a replicator halts instead of reading format "t"
    # images as to_jsonb ones.
    execute(env.dsns["slave"], "CREATE FUNCTION replication.apply_events(bigint[], "
            "text[], text[], text[], text[]) RETURNS integer LANGUAGE sql "
            "AS 'SELECT 0'")
    init(env.path)
    assert query(env.dsns["slave"], "SELECT to_regprocedure('replication.apply_events"
                 "(bigint[], text[], text[], text[], text[])')") == [(None,)]
    execute(env.dsns["slave"], "CREATE OR REPLACE FUNCTION "
            "replication.support_version() RETURNS integer LANGUAGE sql AS 'SELECT 1'")
    env.replicator.start()
    try:
        wait_for(lambda: query(env.dsns["slave"], "SELECT last_error FROM "
                               "replication.stream_state")[0][0] is not None,
                 what="the halt")
        (err,) = query(env.dsns["slave"], "SELECT last_error FROM "
                       "replication.stream_state")[0]
        assert err == ("the slave's replication functions are version 1, this code "
                       "needs 2: stop the replicator and run `replicate init` "
                       "(replication/README.md, Upgrading)")
        assert query(env.dsns["slave"], "SELECT count(*) FROM replication.table_state "
                     "WHERE state = 'pending'") == [(1,)]
    finally:
        env.replicator.stop()
