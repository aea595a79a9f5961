"""Schema migrations upgrade an existing archive in place without losing data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from sqlalchemy import text

from tests.conftest import Archive, create_database
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.engine import get_engine
from vo_archive.ingest.pipeline import Ingestor


def test_upgrade_from_the_first_revision_keeps_data(
        pg_cluster: EmbeddedCluster, tmp_path: Path, demo_files: list[Path]) -> None:
    dsn = create_database(pg_cluster, "migrate_from_core")
    settings = Settings(home=tmp_path, dsn=dsn)
    engine = get_engine(settings)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS archive_meta"))
        command.upgrade(migrate.alembic_config(conn), "0001_core")
    with Ingestor(settings, engine, workers=1) as ing:
        ing.ingest_paths(demo_files[:30])
    with engine.connect() as conn:
        before = conn.execute(text(
            "SELECT version_id, sha256, header::text FROM archive.version "
            "ORDER BY version_id")).all()
    revisions = migrate.upgrade(engine)
    assert migrate.pending_revisions(engine) == []
    assert "0001_core" not in revisions or revisions == ["0001_core"]
    with engine.connect() as conn:
        after = conn.execute(text(
            "SELECT version_id, sha256, header::text FROM archive.version "
            "ORDER BY version_id")).all()
    assert after == before and len(before) == 30


def test_upgrade_is_idempotent(make_archive: Callable[..., Archive]) -> None:
    archive = make_archive()
    first = migrate.upgrade(archive.engine)
    assert migrate.upgrade(archive.engine) == first


def test_publisher_dids_follow_the_authority_and_are_inlined(
        make_archive: Callable[..., Archive], demo_files: list[Path]) -> None:
    """The DID function holds the configured authority as a constant (inlined
    into the views, no query per row) and is rewritten when it changes."""
    archive = make_archive()
    archive.ingest(demo_files[:5])
    query = text(
        "SELECT publisher_did FROM pessto.products ORDER BY product_id LIMIT 1"
    )
    with archive.engine.connect() as conn:
        before = conn.execute(query).scalar_one()
    migrate.upgrade(archive.engine, "ivo://example.org/other")
    with archive.engine.connect() as conn:
        after = conn.execute(query).scalar_one()
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            "EXPLAIN VERBOSE SELECT publisher_did FROM pessto.products"))
    assert not before.startswith("ivo://example.org/other")
    assert after == "ivo://example.org/other" + before[before.index("/pessto?"):]
    assert "publisher_did(" not in plan, plan
    assert "'ivo://example.org/other/pessto?'" in plan, plan
