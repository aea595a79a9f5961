"""``db check`` finds missing and damaged files and removes orphans."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from pathlib import Path

from sqlalchemy import text

from tests.conftest import Archive
from vo_archive.config import ReleasePolicy
from vo_archive.ingest.classify import Level
from vo_archive.ingest.pipeline import release_date
from vo_archive.ingest.recovery import check
from vo_archive.ingest.storage import Storage


def test_check_reports_missing_damaged_and_orphan_files(
        make_archive: Callable[..., Archive], demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:12])
    storage = Storage(archive.settings.storage_dir)
    with archive.engine.connect() as conn:
        keys = conn.execute(text(
            "SELECT storage_key, filename FROM archive.version ORDER BY version_id")
        ).all()
    missing = storage.path_of(keys[0][0])
    missing.unlink()
    damaged = storage.path_of(keys[1][0])
    damaged.chmod(0o644)
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    orphan = storage.root / "ab" / "cd" / ("ab" + "cd" + "0" * 60 + ".fits")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"stray")
    conn = archive.engine.raw_connection()
    try:
        shallow = check(conn, storage, deep=False, remove_orphans=False)
        assert shallow.missing_files == [f"{keys[0][1]} ({keys[0][0]})"]
        assert shallow.bad_checksums == []
        assert orphan.exists()
        deep = check(conn, storage, deep=True)
    finally:
        conn.close()
    assert deep.bad_checksums == [f"{keys[1][1]} ({keys[1][0]})"]
    assert not deep.ok
    assert not orphan.exists()
    assert os.path.relpath(orphan, storage.root) in deep.removed_files


def test_release_policy() -> None:
    policy = ReleasePolicy(final_days=365, intermediate_days=None,
                           never_public_types=("weight_map",),
                           product_type_days=(("acquisition", 0),))
    night = date(2018, 3, 27)
    final = release_date(policy, Level.FINAL, "fluxcal_1d", night)
    assert final is not None and final.date() == date(2019, 3, 28)
    assert release_date(policy, Level.INTERMEDIATE, "extracted_1d", night) is None
    assert release_date(policy, Level.FINAL, "weight_map", night) is None
    acq = release_date(policy, Level.FINAL, "acquisition", night)
    assert acq is not None and acq.date() == date(2018, 3, 28)


def test_views_hide_proprietary_products(demo_archive: Archive) -> None:
    with demo_archive.engine.begin() as conn:
        public = conn.execute(text("SELECT count(*) FROM pessto.products")).scalar()
        total = conn.execute(text(
            "SELECT count(*) FROM archive.product")).scalar()
        hidden = conn.execute(text(
            "SELECT count(*) FROM archive.product WHERE release_date IS NULL "
            "OR release_date > now()")).scalar()
        conn.execute(text("SELECT set_config('vo_archive.proprietary', 'on', true)"))
        member = conn.execute(text("SELECT count(*) FROM pessto.products")).scalar()
    assert hidden > 0
    assert public == total - hidden
    assert member == total
