"""Stored classifications: the arrival task, re-classification, what is pending."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from classify.core import CLASSIFIER_VERSION
from classify.jobs import classify_arrivals, classify_version
from classify.storage import (
    claim_queued,
    enqueue_versions,
    stored_classifications,
    unclassified_versions,
)
from classify.templates import load_library
from tests.classify_fixtures import phase3_spectra, write_template_product
from tests.conftest import Archive
from vo_archive.access import ANONYMOUS, Caller, caller_connection


def _templates() -> Path:
    """Return ``shared/data/snid-templates`` beside the repository (or further up)."""
    for up in Path(__file__).resolve().parents[2:]:
        folder = up / "shared" / "data" / "snid-templates"
        if folder.is_dir():
            return folder
    raise AssertionError("no shared/data/snid-templates beside the repository")


MEMBER = Caller("ann", frozenset({"member"}))


def _archive_with_template(make_archive: Callable[..., Archive],
                           demo_files: list[Path], tmp_path: Path
                           ) -> tuple[Archive, int, int]:
    archive = make_archive()
    path = write_template_product(phase3_spectra(demo_files)[0], tmp_path,
                                  "sn1994D", 0.0, 0.05)
    archive.ingest([path])
    with archive.engine.connect() as conn:
        pid, vid = conn.execute(text(
            "SELECT product_id, version_id FROM archive.version WHERE filename = :f"),
            {"f": path.name}).one()
    return archive, pid, vid


def test_a_new_library_adds_a_classification_and_keeps_the_old(
        make_archive: Callable[..., Archive], demo_files: list[Path],
        tmp_path: Path) -> None:
    archive, pid, vid = _archive_with_template(make_archive, demo_files, tmp_path)
    shipped = load_library().version
    with archive.engine.connect() as conn:
        assert unclassified_versions(conn, CLASSIFIER_VERSION, shipped) == [vid]
    first = classify_version(archive.settings, vid)
    assert first is not None
    assert classify_version(archive.settings, vid) is None  # same versions: kept
    with archive.engine.connect() as conn:
        assert unclassified_versions(conn, CLASSIFIER_VERSION, shipped) == []
    # a user's own library: a folder of .lnw templates
    folder = tmp_path / "own-library"
    folder.mkdir()
    templates = _templates()
    names = sorted(p.name for p in templates.glob("*.lnw"))[:60]
    for name in {*names, "sn1994D.lnw", "sn1999em.lnw"}:
        shutil.copy(templates / name, folder / name)
    own = dataclasses.replace(archive.settings,
                              extra={"classify": {"templates": str(folder)}})
    second = classify_version(own, vid)
    assert second is not None and second != first
    with caller_connection(archive.engine, MEMBER) as conn:
        every = stored_classifications(conn, pid, None)
        latest = stored_classifications(conn, pid, None, latest_only=True)
    assert [c.classification_id for c in every] == [second, first]
    assert {c.library_version for c in every} == {shipped, load_library(
        folder).version}
    assert [c.classification_id for c in latest] == [second]
    assert all(c.sn_type == "Ia" and c.good for c in every)
    assert abs((latest[0].redshift or 0) - 0.05) < 0.01
    assert latest[0].matches[0]["rlap"] >= latest[0].matches[-1]["rlap"]


def test_an_unreadable_file_gets_a_row_saying_why(
        make_archive: Callable[..., Archive], demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:40])
    with archive.engine.connect() as conn:
        image = conn.execute(text(
            "SELECT v.version_id FROM archive.version v JOIN archive.product p "
            "USING (product_id) WHERE p.mode = 'imaging' LIMIT 1")).scalar_one()
    assert classify_version(archive.settings, image) is not None
    with archive.engine.connect() as conn:
        good, problem, sn_type = conn.execute(text(
            "SELECT good, problem, sn_type FROM archive.classification "
            "WHERE version_id = :v"), {"v": image}).one()
    assert good is False and sn_type is None and problem


def test_pending_spectra_are_queued_and_hidden_ones_stay_hidden(
        make_archive: Callable[..., Archive], demo_files: list[Path],
        tmp_path: Path) -> None:
    archive, pid, vid = _archive_with_template(make_archive, demo_files, tmp_path)
    with archive.engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate.procrastinate_jobs"))
        assert enqueue_versions(conn, [vid]) == 1
        args = conn.execute(text(
            "SELECT args FROM procrastinate.procrastinate_jobs WHERE task_name = "
            "'classify.version'")).scalars().all()
        conn.execute(text("UPDATE archive.product SET release_date = NULL "
                          "WHERE product_id = :p"), {"p": pid})
    assert args == [{"version_id": vid}]
    classify_version(archive.settings, vid)
    with caller_connection(archive.engine, ANONYMOUS) as conn:
        assert stored_classifications(conn, pid, None) == []
    with caller_connection(archive.engine, MEMBER) as conn:
        assert len(stored_classifications(conn, pid, None)) == 1


def _queued(archive: Archive) -> list[int]:
    with archive.engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT (args ->> 'version_id')::bigint FROM "
            "procrastinate.procrastinate_jobs WHERE task_name = 'classify.version' "
            "ORDER BY id")).scalars())


def test_an_arrival_task_classifies_a_batch_of_queued_spectra(
        make_archive: Callable[..., Archive], demo_files: list[Path],
        tmp_path: Path) -> None:
    archive = make_archive()
    made = [("sn1994D", 0.03), ("sn1999em", 0.02), ("sn2004aw", 0.04),
            ("sn1999ex", 0.05), ("sn1994D", 0.08)]
    paths = [write_template_product(src, tmp_path, sn, 5.0, z)
             for src, (sn, z) in zip(phase3_spectra(demo_files), made, strict=False)]
    assert len(paths) == len(made)
    archive.ingest(paths)
    queued = _queued(archive)
    assert len(queued) == len(made)  # the ingest trigger queued each
    # a claim made in an open transaction is skipped by another worker's claim,
    # and comes back to the queue when that transaction rolls back
    with archive.engine.connect() as conn, conn.begin() as txn:
        held = claim_queued(conn, 2)
        assert [v for _, v in held] == queued[:2]
        with archive.engine.connect() as other:
            assert [v for _, v in claim_queued(other, 10)] == queued[2:]
        txn.rollback()
    assert _queued(archive) == queued
    # a worker fetches the first task as procrastinate does; it takes three
    # more queued ones in its batch (queue order)
    with archive.engine.begin() as conn:
        fetched = conn.execute(text(
            "SELECT (args ->> 'version_id')::bigint FROM procrastinate."
            "procrastinate_fetch_job_v2(ARRAY['uws'], NULL)")).scalar_one()
    assert fetched == queued[0]
    own = classify_arrivals(archive.settings, queued[0], batch=4)
    assert own is not None
    with archive.engine.connect() as conn:
        done = dict(conn.execute(text(
            "SELECT version_id, classification_id FROM archive.classification")).all())
    assert set(done) == set(queued[:4])
    assert done[queued[0]] == own
    # the three claimed tasks left the queue; the task's own is procrastinate's
    assert _queued(archive) == [queued[0], queued[4]]
    # a task whose file is already classified stores nothing, takes the rest
    assert classify_arrivals(archive.settings, queued[0], batch=4) is None
    assert _queued(archive) == [queued[0]]
    with archive.engine.connect() as conn:
        assert conn.execute(text(
            "SELECT count(*) FROM archive.classification")).scalar_one() == len(made)
