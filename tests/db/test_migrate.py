"""Schema migrations upgrade an existing archive in place without losing data."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, text

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


def _reader_count(conn: Connection, sql: str, proprietary: bool = False) -> int:
    """Count as the TAP reader role counts, in a transaction of its own."""
    with conn.begin():
        conn.execute(text("SELECT set_config('vo_archive.proprietary', :v, true)"),
                     {"v": "on" if proprietary else "off"})
        conn.execute(text("SET LOCAL ROLE pessto_tap_reader"))
        return int(conn.execute(text(sql)).scalar_one())


def test_upgrade_to_row_security_keeps_what_each_caller_sees(
        pg_cluster: EmbeddedCluster, tmp_path: Path, demo_files: list[Path]) -> None:
    """0009_row_security on an archive with data: same rows for each scope, the
    release dates copied to the versions and kept in step (#13)."""
    dsn = create_database(pg_cluster, "migrate_to_rls")
    settings = Settings(home=tmp_path, dsn=dsn)
    engine = get_engine(settings)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS archive_meta"))
        for rev in ("0003_vo", "0005_auth", "0008_inline_did"):
            command.upgrade(migrate.alembic_config(conn), rev)
    with Ingestor(settings, engine, workers=1) as ing:
        ing.ingest_paths(demo_files[:40])
    views = ("ivoa.obscore", "pessto.products", "pessto.versions",
             "pessto.provenance", "pessto.runs", "pessto.targets")
    with engine.connect() as conn:
        before = {(v, p): _reader_count(conn, f"SELECT count(*) FROM {v}", p)
                  for v in views for p in (False, True)}
    assert "0014_classification_security" in migrate.upgrade(engine)  # past 0009
    with engine.connect() as conn:
        after = {(v, p): _reader_count(conn, f"SELECT count(*) FROM {v}", p)
                 for v in views for p in (False, True)}
        assert conn.execute(text(
            "SELECT count(*) FROM archive.version v JOIN archive.product p "
            "USING (product_id) WHERE v.release_date IS DISTINCT FROM "
            "p.release_date")).scalar_one() == 0
        owners = set(conn.execute(text(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN "
            "pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'v' "
            "AND n.nspname IN ('ivoa', 'pessto')")).scalars())
        secured = set(conn.execute(text(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND "
            "relnamespace = 'archive'::regnamespace")).scalars())
    assert after == before
    assert before[("ivoa.obscore", False)] < before[("ivoa.obscore", True)]
    assert owners == {"pessto_published"}
    assert secured == {"product", "version", "provenance", "run", "target",
                       "classification"}
    # a product made proprietary hides its versions at once, and back
    with engine.begin() as conn:
        pid = conn.execute(text(
            "SELECT product_id FROM archive.product WHERE release_date <= now() "
            "ORDER BY product_id LIMIT 1")).scalar_one()
        conn.execute(text("UPDATE archive.product SET release_date = NULL "
                          "WHERE product_id = :p"), {"p": pid})
        assert conn.execute(text(
            "SELECT count(*) FROM archive.version WHERE product_id = :p AND "
            "release_date IS NOT NULL"), {"p": pid}).scalar_one() == 0
    with engine.connect() as conn:
        hidden = _reader_count(conn, "SELECT count(*) FROM pessto.versions")
        assert hidden < after[("pessto.versions", False)]
    with engine.begin() as conn:
        conn.execute(text("UPDATE archive.product SET release_date = now() "
                          "WHERE product_id = :p"), {"p": pid})
    with engine.connect() as conn:
        assert _reader_count(conn, "SELECT count(*) FROM pessto.versions") == \
            after[("pessto.versions", False)]


def test_published_views_are_given_back_to_their_owner(
        make_archive: Callable[..., Archive]) -> None:
    """A view created again by a later migration is owned by the migrating
    role, which the policies do not restrict: ``db init`` gives it back."""
    archive = make_archive()
    with archive.engine.begin() as conn:
        conn.execute(text("DROP VIEW pessto.runs"))
        conn.execute(text("CREATE VIEW pessto.runs AS SELECT r.run_id, r.name "
                          "FROM archive.run r"))
    migrate.upgrade(archive.engine)
    with archive.engine.connect() as conn:
        owner = conn.execute(text(
            "SELECT pg_get_userbyid(relowner) FROM pg_class "
            "WHERE oid = 'pessto.runs'::regclass")).scalar_one()
    assert owner == "pessto_published"


def test_leakproof_marks_need_a_superuser(make_archive: Callable[..., Archive],
                                          caplog: pytest.LogCaptureFixture) -> None:
    """A role that is not a superuser cannot mark functions LEAKPROOF: db init
    says so and goes on; ADQL cones are then correct but not indexed (#13)."""
    archive = make_archive()
    role = "no_super_" + uuid.uuid4().hex[:8]
    sig = "tap_adql.sky_point(double precision, double precision)"
    with archive.engine.begin() as conn:
        conn.execute(text(f"ALTER FUNCTION {sig} NOT LEAKPROOF"))
        conn.execute(text(f"CREATE ROLE {role} NOLOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA tap_adql TO {role}"))
    try:
        with archive.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL ROLE {role}"))
            with caplog.at_level(logging.WARNING, logger="vo_archive.db.migrate"):
                assert migrate.mark_leakproof(conn) is False
        assert "cannot mark" in caplog.text and "sky_point" in caplog.text
        with archive.engine.connect() as conn:
            assert conn.execute(text(
                f"SELECT proleakproof FROM pg_proc WHERE oid = '{sig}'::regprocedure"
            )).scalar_one() is False
        migrate.upgrade(archive.engine)  # as the superuser: marked again
        with archive.engine.connect() as conn:
            assert conn.execute(text(
                f"SELECT proleakproof FROM pg_proc WHERE oid = '{sig}'::regprocedure"
            )).scalar_one() is True
    finally:
        with archive.engine.begin() as conn:
            conn.execute(text(f"REVOKE USAGE ON SCHEMA tap_adql FROM {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
