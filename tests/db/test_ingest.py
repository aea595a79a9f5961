"""Ingest into a real PostgreSQL: versions, idempotence, rejects, runs, HEALPix."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import healpy
import numpy as np
import pytest
from sqlalchemy import text

from tests.conftest import Archive
from tests.fitsmaker import write_fits
from vo_archive.ingest.pipeline import Ingestor, Outcome
from vo_archive.ingest.storage import Storage
from vo_archive.vo.sky import NSIDE

SB = "SN2018abc_20180327_Gr13_Free_slit1.0_{rmjd}_1_sb.fits"


def ingest(archive: Archive, paths: list[Path], **kw: object):  # type: ignore[no-untyped-def]
    with Ingestor(archive.settings, archive.engine, workers=1, **kw) as ing:  # type: ignore[arg-type]
        return ing.ingest_paths(paths)


def test_reprocessed_file_becomes_a_new_current_version(
        make_archive: Callable[..., Archive], tmp_path: Path) -> None:
    archive = make_archive()
    v1 = write_fits(tmp_path / SB.format(rmjd=58737), 22210, PROCSOFT="ntt_2.4.0")
    v2 = write_fits(tmp_path / SB.format(rmjd=59100), 22210, PROCSOFT="ntt_3.0.1")
    s1 = ingest(archive, [v1])
    assert [r.outcome for r in s1.results] == [Outcome.NEW]
    s2 = ingest(archive, [v2])
    assert [r.outcome for r in s2.results] == [Outcome.NEW_VERSION]
    assert s2.results[0].version_no == 2 and s2.results[0].is_current
    with archive.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT version_no, is_current, filename, procsoft, reduction_mjd, "
            "storage_key, sha256 FROM archive.version ORDER BY version_no")).all()
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [
        (1, False, "ntt_2.4.0", 58737), (2, True, "ntt_3.0.1", 59100)]
    # the old version is kept, byte for byte
    storage = Storage(archive.settings.storage_dir)
    for row, src in zip(rows, (v1, v2), strict=True):
        stored = storage.path_of(row[5]).read_bytes()
        assert stored == src.read_bytes()
        assert hashlib.sha256(stored).hexdigest() == row[6]
    # an older reduction ingested later is kept but does not become current
    v0 = write_fits(tmp_path / SB.format(rmjd=58000), 22210, PROCSOFT="ntt_2.2.9")
    s3 = ingest(archive, [v0])
    assert s3.results[0].outcome is Outcome.NEW_VERSION
    assert s3.results[0].version_no == 3 and not s3.results[0].is_current
    with archive.engine.connect() as conn:
        cur = conn.execute(text(
            "SELECT version_no FROM archive.version WHERE is_current")).scalars().all()
    assert cur == [2]


def test_text_with_copy_escapes_is_stored_verbatim(
        make_archive: Callable[..., Archive], tmp_path: Path) -> None:
    # Rows are written with COPY, whose text format gives backslashes a meaning.
    archive = make_archive()
    path = write_fits(tmp_path / SB.format(rmjd=58737), 22210, OBJECT="SN2018\\abc",
                      FILTER="Gr#13 \\n\\t", HISTORY="flux scale from C:\\pessto\\N")
    assert ingest(archive, [path]).results[0].outcome is Outcome.NEW
    with archive.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT p.object, v.filter, v.header->>'OBJECT', v.header->'HISTORY' "
            "FROM archive.version v JOIN archive.product p USING (product_id)")).one()
    assert tuple(row) == ("SN2018\\abc", "Gr#13 \\n\\t", "SN2018\\abc",
                          ["HISTORY flux scale from C:\\pessto\\N"])


def test_identical_reingest_changes_nothing(make_archive: Callable[..., Archive],
                                            demo_files: list[Path]) -> None:
    archive = make_archive()
    files = demo_files[:60]
    first = ingest(archive, files)
    assert first.count(Outcome.REJECTED) == 0

    def snapshot() -> tuple[object, ...]:
        with archive.engine.connect() as conn:
            return (
                conn.execute(text("SELECT count(*), sum(version_no), max(version_id) "
                                  "FROM archive.version")).one(),
                conn.execute(text("SELECT count(*) FROM archive.product")).scalar(),
                conn.execute(text("SELECT count(*) FROM archive.provenance")).scalar(),
                conn.execute(text("SELECT count(*) FROM archive.run")).scalar(),
                sorted(os.listdir(archive.settings.storage_dir)),
            )

    before = snapshot()
    again = ingest(archive, files)
    assert again.count(Outcome.UNCHANGED) == len(files)
    # the same content under another path is the same product version too
    copy = archive.settings.home / "copy"
    copy.mkdir()
    shutil.copy(files[3], copy / files[3].name)
    assert ingest(archive, [copy]).results[0].outcome is Outcome.UNCHANGED
    assert snapshot() == before


def test_each_reject_reason(make_archive: Callable[..., Archive], tmp_path: Path,
                            demo_files: list[Path]) -> None:
    archive = make_archive()
    (tmp_path / "notfits.fits").write_text("this is not FITS\n" * 200)
    good = demo_files[5].read_bytes()
    (tmp_path / "truncated.fits").write_bytes(good[: len(good) - 5000])
    (tmp_path / "empty.fits").write_bytes(b"")
    write_fits(tmp_path / "SN2018abc_20180327_V641_58737_1.fits", 12204, RA=None,
               DEC=None)
    write_fits(tmp_path / "x_20180327_58737_1.fits", 22210, INSTRUME="FORS2")
    write_fits(tmp_path / "y_20180327_58737_1.fits", None)
    write_fits(tmp_path / "z_20180327_58737_1.fits", 22210, DATE__OBS=None,
               MJD__OBS=None)
    os.symlink(tmp_path / "missing-target.fits", tmp_path / "dangling.fits")
    ok = write_fits(tmp_path / "ok_20180327_Gr13_Free_slit1.0_58737_1_sb.fits", 22210)
    summary = ingest(archive, [tmp_path])
    reasons = {Path(r.source).name: r.reason for r in summary.rejected}
    assert reasons["notfits.fits"].startswith("not a FITS file")
    assert "truncated" in reasons["truncated.fits"]
    assert "empty" in reasons["empty.fits"]
    assert reasons["SN2018abc_20180327_V641_58737_1.fits"] == \
        "science product without RA/DEC"
    assert "unknown instrument" in reasons["x_20180327_58737_1.fits"]
    assert "no FILETYPE" in reasons["y_20180327_58737_1.fits"]
    assert "DATE-OBS" in reasons["z_20180327_58737_1.fits"]
    assert "not found" in reasons["dangling.fits"]
    assert len(reasons) == 8
    # the rest went on
    accepted = [r for r in summary.results if r.outcome is Outcome.NEW]
    assert [Path(r.source).name for r in accepted] == [ok.name]
    with archive.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM archive.version")).scalar() == 1
    # nothing of the rejected files reached storage
    assert len(Storage(archive.settings.storage_dir).iter_keys()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_rejected(make_archive: Callable[..., Archive],
                                     tmp_path: Path) -> None:
    archive = make_archive()
    p = write_fits(tmp_path / "ok_20180327_Gr13_Free_slit1.0_58737_1_sb.fits", 22210)
    p.chmod(0)
    summary = ingest(archive, [p])
    assert summary.rejected[0].reason == "unreadable: permission denied"


def test_demo_products_land_in_runs_targets_and_healpix(demo_archive: Archive) -> None:
    with demo_archive.engine.connect() as conn:
        runs = conn.execute(text(
            "SELECT name, eso_run, instrument, first_night, last_night "
            "FROM archive.run ORDER BY first_night, instrument")).all()
        rows = conn.execute(text(
            "SELECT ra, dec, healpix29, pos::text FROM archive.version "
            "WHERE ra IS NOT NULL")).all()
        orphans = conn.execute(text(
            "SELECT count(*) FROM archive.product p WHERE run_id IS NULL "
            "OR NOT EXISTS (SELECT 1 FROM archive.version v "
            "WHERE v.product_id = p.product_id AND v.is_current)")).scalar()
        sci_without_target = conn.execute(text(
            "SELECT count(*) FROM archive.product WHERE category = 'science' "
            "AND target_id IS NULL")).scalar()
        targets = conn.execute(text("SELECT count(*) FROM archive.target")).scalar()
    # the first demo run: EFOSC 188.D-3003(O), four nights from 2012-11-10
    assert runs[0][1:] == ("188.D-3003(O)", "EFOSC", runs[0][3], runs[0][4])
    assert runs[0][0] == "nov12_d10to13_efosc"
    assert (runs[0][4] - runs[0][3]).days == 3
    assert orphans == 0
    assert sci_without_target == 0
    assert targets >= 5
    ra = np.array([r[0] for r in rows])
    dec = np.array([r[1] for r in rows])
    expected = healpy.ang2pix(NSIDE, ra, dec, nest=True, lonlat=True)
    assert np.array_equal(np.array([r[2] for r in rows]), expected)
    assert all(r[3] is not None for r in rows)


def test_provenance_links_name_inputs(demo_archive: Archive) -> None:
    with demo_archive.engine.connect() as conn:
        rel = dict(conn.execute(text(
            "SELECT relation, count(*) FROM archive.provenance GROUP BY 1")).all())
        resolved = conn.execute(text(
            "SELECT count(*) FROM archive.provenance pv JOIN archive.version v "
            "ON v.filename = pv.ref_filename WHERE pv.relation = 'parent'")).scalar()
    assert set(rel) >= {"raw", "parent", "calibration", "associated"}
    # most parents named by TRACE1 are archived products themselves
    assert resolved > rel["parent"] * 0.5


def test_explicit_run_option(make_archive: Callable[..., Archive],
                             demo_files: list[Path]) -> None:
    archive = make_archive()
    summary = ingest(archive, demo_files[:10], run_name="qc-batch-1")
    assert summary.count(Outcome.REJECTED) == 0
    with archive.engine.connect() as conn:
        names = conn.execute(text(
            "SELECT DISTINCT r.name FROM archive.product p JOIN archive.run r "
            "USING (run_id)")).scalars().all()
    assert names == ["qc-batch-1"]


def test_session_connection_is_idle_and_ends_with_the_session(
        make_archive: Callable[..., Archive], tmp_path: Path) -> None:
    archive = make_archive()
    src = write_fits(tmp_path / SB.format(rmjd=58737), 22210)
    with Ingestor(archive.settings, archive.engine, workers=1) as ing:  # type: ignore[arg-type]
        pid = ing._session_conn.get_backend_pid()
        ing.ingest_paths([src])
        with archive.engine.connect() as conn:
            state = conn.execute(text(
                "SELECT state FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid}).scalar_one()
            held = conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = :pid AND granted"), {"pid": pid}).scalar_one()
        assert state == "idle"  # not "idle in transaction"
        assert held == 1
    # the backend leaves pg_stat_activity once the server has seen the client
    # go, a moment after the close on a loaded machine
    deadline = time.monotonic() + 10
    while True:
        with archive.engine.connect() as conn:
            left = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid}).scalar_one()
        if left == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left == 0
