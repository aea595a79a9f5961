"""The classification table: upgraded into an existing archive, queued on arrival,
never overwritten, and as proprietary as its spectrum."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from alembic import command
from sqlalchemy import Connection, text

from tests.conftest import Archive, create_database
from vo_archive.access import ANONYMOUS, Caller, caller_connection
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.engine import get_engine
from vo_archive.ingest.pipeline import Ingestor
from vo_archive.web.pages import objectpage

MEMBER = Caller("ann", frozenset({"member"}))
CLASSIFIABLE = (
    "SELECT v.version_id, p.release_date <= now() AS public FROM archive.version v "
    "JOIN archive.product p USING (product_id) WHERE "
    "archive.classifiable(p.mode, p.category, p.level, p.product_type) "
    "ORDER BY v.version_id")


def queued(conn: Connection) -> list[int]:
    """Return the version ids waiting in the arrival queue."""
    rows = conn.execute(text(
        "SELECT args FROM procrastinate.procrastinate_jobs WHERE "
        "task_name = 'classify.version' AND status = 'todo' ORDER BY id")).all()
    return [int(r[0]["version_id"]) for r in rows]


def insert(conn: Connection, version_id: int, classifier: str = "1.0",
           library: str = "lib-1", sn_type: str = "Ia") -> int | None:
    """Insert a verdict row as the workers store it."""
    return conn.execute(text(
        "INSERT INTO archive.classification (version_id, classifier_version, "
        "library_version, sn_type, sn_subtype, fraction, redshift, rlap, good, "
        "matches) VALUES (:v, :c, :l, :t, 'Ia-norm', 0.8, 0.05, 12.0, true, "
        "CAST(:m AS jsonb)) ON CONFLICT DO NOTHING RETURNING classification_id"),
        {"v": version_id, "c": classifier, "l": library, "t": sn_type,
         "m": json.dumps([{"template": "sn1994D", "type": "Ia", "subtype": "Ia-norm",
                           "phase": 2.0, "z": 0.05, "z_err": 0.002, "r": 6.0,
                           "lap": 0.9, "rlap": 12.0},
                          {"template": "sn1981B", "type": "Ia", "subtype": "Ia-norm",
                           "phase": 0.0, "z": 0.051, "z_err": 0.003, "r": 5.0,
                           "lap": 0.9, "rlap": 9.0}])}).scalar()


def test_upgrade_of_an_existing_archive_queues_nothing_and_keeps_data(
        pg_cluster: EmbeddedCluster, tmp_path: Path, demo_files: list[Path]) -> None:
    dsn = create_database(pg_cluster, "classification_upgrade")
    settings = Settings(home=tmp_path, dsn=dsn)
    engine = get_engine(settings)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS archive_meta"))
        cfg = migrate.alembic_config(conn)
        for head in ("0003_vo", "0005_auth", "0008_inline_did"):
            command.upgrade(cfg, head)
    with Ingestor(settings, engine, workers=1) as ing:
        ing.ingest_paths(demo_files[:60])
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM archive.version")).scalar()
    revisions = migrate.upgrade(engine)
    # 0010_classification is applied on the way to the head that merges it
    assert "0014_classification_security" in revisions
    assert migrate.pending_revisions(engine) == []
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM archive.version")).scalar() \
            == before
        assert queued(conn) == []  # the upgrade queues nothing; classify-pending does
        assert conn.execute(text(
            "SELECT count(*) FROM pessto.classifications")).scalar() == 0


def test_ingest_queues_final_1d_science_spectra_only(
        make_archive: Callable[..., Archive], demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:80])
    with archive.engine.connect() as conn:
        expected = [r[0] for r in conn.execute(text(CLASSIFIABLE))]
        got = queued(conn)
        kinds = conn.execute(text(
            "SELECT DISTINCT p.level, p.category, p.product_type FROM "
            "archive.version v JOIN archive.product p USING (product_id) "
            "WHERE v.version_id = ANY(:ids)"), {"ids": got}).all()
    assert expected, "the demo has final 1D science spectra"
    assert sorted(got) == expected
    assert {(lv, cat) for lv, cat, _ in kinds} == {("final", "science")}
    assert all(t.endswith("_1d") for _, _, t in kinds)


def test_a_new_version_adds_a_row_and_the_same_one_is_not_overwritten(
        make_archive: Callable[..., Archive], demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:80])
    with archive.engine.begin() as conn:
        vid = conn.execute(text(CLASSIFIABLE)).first()[0]  # type: ignore[index]
        first = insert(conn, vid)
        assert first is not None
        assert insert(conn, vid, sn_type="II") is None  # same versions: kept
        assert insert(conn, vid, library="lib-2", sn_type="Ib") is not None
        rows = conn.execute(text(
            "SELECT sn_type, library_version, is_latest FROM pessto.classifications "
            "WHERE version_id = :v ORDER BY classification_id"), {"v": vid}).all()
    assert [tuple(r) for r in rows] == [("Ia", "lib-1", False), ("Ib", "lib-2", True)]


def test_object_page_shows_a_template_of_the_verdicts_type(
        make_archive: Callable[..., Archive], demo_files: list[Path]) -> None:
    """The first listed match (highest rlap) may be of another type than the vote
    gave; the page's template is the verdict type's first good match."""
    archive = make_archive()
    archive.ingest(demo_files[:80])
    matches = [
        {"template": "sn2004aw", "type": "Ic", "subtype": "Ic-norm", "phase": 3.0,
         "z": 0.06, "z_err": 0.003, "r": 9.0, "lap": 0.8, "rlap": 14.0, "good": True},
        {"template": "sn1994D", "type": "Ia", "subtype": "Ia-norm", "phase": 2.0,
         "z": 0.05, "z_err": 0.002, "r": 8.0, "lap": 0.8, "rlap": 12.0, "good": False},
        {"template": "sn1981B", "type": "Ia", "subtype": "Ia-norm", "phase": 0.0,
         "z": 0.051, "z_err": 0.003, "r": 7.0, "lap": 0.8, "rlap": 11.0, "good": True}]
    with archive.engine.begin() as conn:
        vids = [r[0] for r in conn.execute(text(CLASSIFIABLE)).all()[:3]]
        for vid, (sn_type, listed) in zip(vids, (("Ia", matches), ("II", matches),
                                                  ("Ia", [])), strict=True):
            conn.execute(text(
                "INSERT INTO archive.classification (version_id, classifier_version, "
                "library_version, sn_type, sn_subtype, fraction, redshift, rlap, good, "
                "matches) VALUES (:v, 'x', 'y', :t, NULL, 0.6, 0.05, 14.0, true, "
                "CAST(:m AS jsonb))"),
                {"v": vid, "t": sn_type, "m": json.dumps(listed)})
        shown = {d["version_id"]: d["best"]
                 for d in objectpage.classifications(conn, vids)}
    assert shown[vids[0]]["template"] == "sn1981B"  # Ia's first good match
    assert shown[vids[1]]["template"] == "sn2004aw"  # none of type II: the first
    assert shown[vids[2]] is None  # no matches at all


def test_classifications_are_as_proprietary_as_their_spectrum(
        make_archive: Callable[..., Archive], demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:120])
    with archive.engine.begin() as conn:
        # every other spectrum proprietary, the rest public
        conn.execute(text(
            "UPDATE archive.product p SET release_date = CASE WHEN v.version_id % 2 "
            "= 0 THEN NULL ELSE now() - interval '1 day' END FROM archive.version v "
            "WHERE v.product_id = p.product_id AND "
            "archive.classifiable(p.mode, p.category, p.level, p.product_type)"))
        spectra = conn.execute(text(CLASSIFIABLE)).all()
        for vid, _ in spectra:
            insert(conn, vid)
    hidden = {vid for vid, public in spectra if not public}
    assert hidden and len(hidden) < len(spectra)
    for caller, sees in ((ANONYMOUS, {v for v, p in spectra if p}),
                         (MEMBER, {v for v, _ in spectra})):
        with caller_connection(archive.engine, caller) as conn:
            got = {r[0] for r in conn.execute(text(
                "SELECT version_id FROM pessto.classifications"))}
            matched = {r[0] for r in conn.execute(text(
                "SELECT c.version_id FROM pessto.classification_matches m JOIN "
                "pessto.classifications c USING (classification_id)"))}
        assert got == sees and matched == sees
    with archive.engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE pessto_tap_reader"))
        conn.execute(text("SELECT set_config('vo_archive.proprietary', 'off', true)"))
        got = {r[0] for r in conn.execute(text(
            "SELECT version_id FROM pessto.classifications"))}
    assert got and not got & hidden
