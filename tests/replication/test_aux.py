"""The AUX stream on the archive's real tables (issue 6): IA2 archive → QUB copy.

Both databases get the schema from the archive's own migrations; rows come
from the real ingest (`vo_archive.ingest.pipeline.Ingestor`) on demo FITS files,
while the replicator runs.  `archive.version` holds JSONB headers and pgSphere
positions and footprints, whose text form has only 15 digits: they must arrive
bit for bit, and verify must see a difference in the last bit.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg2

from replication.verify import verify_stream
from tests.replication.conftest import CLI, Env, execute, init, query
from vo_archive.db.engine import get_engine
from vo_archive.ingest.pipeline import Ingestor

# Every bit of the pgSphere values: long/lat as float8 (read back exactly by
# psycopg2), the spoly's stored bytes, and the JSONB header.
EXACT = """SELECT version_id, long(pos), lat(pos), md5(footprint::bytea), header::text,
                  mjd_obs, ra, dec
           FROM archive.version ORDER BY version_id"""


def ingest(env: Env, paths: list[Path]) -> None:
    """Ingest files into the master archive with the real ingest."""
    assert env.settings is not None
    engine = get_engine(env.settings)
    try:
        with Ingestor(env.settings, engine, workers=1) as ing:
            summary = ing.ingest_paths([str(p) for p in paths])
        assert not summary.rejected, summary.rejected[:3]
    finally:
        engine.dispose()


def test_ingest_replicates_exactly(aux_env: Env, demo_fits: list[Path]) -> None:
    env = aux_env
    m, s = env.dsns["master"], env.dsns["slave"]
    half = len(demo_fits) // 2
    ingest(env, demo_fits[:half])  # these arrive by the initial copy
    init(env.path)
    env.replicator.start()
    # ... and these as changes, while the replicator runs (small ingest batches:
    # several transactions, each writing runs, targets, products, versions,
    # provenance in foreign-key order and updating is_current).
    worker = threading.Thread(target=ingest, args=(env, demo_fits[half:]))
    worker.start()
    worker.join()
    execute(m, "UPDATE archive_meta.setting SET value = 'ivo://example/test' "
               "WHERE name = 'publisher_authority'")
    env.assert_identical("aux")
    assert query(m, "SELECT count(*) FROM archive.version")[0][0] >= len(demo_fits)
    assert query(m, "SELECT count(*) FROM archive.provenance")[0][0] > 0
    # Exact: the text form of the positions is lossy here, the replica is not.
    lossy = query(
        m,
        "SELECT count(*) FROM archive.version WHERE long(pos::text::spoint) "
        "<> long(pos) OR lat(pos::text::spoint) <> lat(pos)",
    )[0][0]
    assert lossy > 0, "the demo positions should include ones that text rounds"
    assert query(m, EXACT) == query(s, EXACT)
    assert query(s, "SELECT value FROM archive_meta.setting WHERE name = "
                    "'publisher_authority'") == [("ivo://example/test",)]
    # The published views work on the copy.
    assert query(s, "SELECT count(*) FROM ivoa.obscore") == query(
        m, "SELECT count(*) FROM ivoa.obscore")

    # verify sees a last-bit change of a position, which the row text hides.
    vid = query(m, "SELECT min(version_id) FROM archive.version WHERE "
                   "long(pos::text::spoint) <> long(pos)")[0][0]
    assert query(s, "SELECT pos::text = (pos::text::spoint)::text FROM archive.version "
                    "WHERE version_id = %s", (vid,)) == [(True,)]
    env.replicator.stop()
    conn = psycopg2.connect(s, options="-c session_replication_role=replica")
    with conn.cursor() as cur:
        cur.execute("UPDATE archive.version SET pos = pos::text::spoint "
                    "WHERE version_id = %s", (vid,))
    conn.commit()
    conn.close()
    reports = {r.table: r for r in verify_stream(env.stream("aux"), wait=False)}
    bad = [t for t, r in reports.items() if not r.identical]
    assert bad == ["archive.version"]
    assert reports["archive.version"].different == [f'{{"version_id": {vid}}}']


def test_truncate_cascade_and_reingest(aux_env: Env, demo_fits: list[Path]) -> None:
    env = aux_env
    m = env.dsns["master"]
    init(env.path)
    env.replicator.start()
    ingest(env, demo_fits[:12])
    env.catch_up("aux")
    # TRUNCATE ... CASCADE reaches the referencing tables; each is emptied on
    # the slave at the same point of the stream, then the ingest starts again.
    execute(m, "TRUNCATE archive.run, archive.target CASCADE")
    ingest(env, demo_fits[12:20])
    env.assert_identical("aux")
    assert query(m, "SELECT count(*) FROM archive.version")[0][0] == 8
    assert query(env.dsns["slave"], "SELECT count(*) FROM archive.version v "
                 "LEFT JOIN archive.product p USING (product_id) "
                 "WHERE p.product_id IS NULL") == [(0,)]


def test_unsupported_pgsphere_column_refused(aux_env: Env) -> None:
    """A pgSphere type without an exact encoding is refused at init, loudly."""
    for dsn in aux_env.dsns.values():
        execute(dsn, "ALTER TABLE archive.target ADD COLUMN region sline")
    out = init(aux_env.path, check=False, cli=CLI)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [(
        "error: table archive.target: column region (public.sline) has no exact "
        "encoding; only spoint, scircle, sbox and variable-length pgSphere types "
        "(spoly, spath, smoc) replicate")]
