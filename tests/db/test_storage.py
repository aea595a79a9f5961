"""A storage that takes no more files: ingest stops at once and says so.

The archive's storage folder is a small tmpfs (the tests mount it, which takes
root): the file system itself refuses the writes (``ENOSPC``, then ``EROFS``
once it is remounted read-only); nothing is mocked. The CLI ingest stops at the
first refused write with one message naming the storage folder and its free
space and exit status 3, ``vo-archive db check`` passes, and a run after the
file system grew archives the rest. The upload API answers 507.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.auth_fixtures import Accounts, drop_accounts, make_accounts
from tests.conftest import Archive
from vo_archive.app import create_app
from vo_archive.commands.ingestcmd import EXIT_STORAGE_FULL

#: A file no one can read, not even root (a write-only sysfs attribute).
UNREADABLE = Path("/sys/bus/pci/rescan")


def _mount(folder: Path, *options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs",
                    str(folder)], check=True, capture_output=True, timeout=30)


def _remount(folder: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(("remount", *options)), str(folder)],
                   check=True, capture_output=True, timeout=30)


@pytest.fixture
def small_storage(make_archive: Callable[..., Archive]) -> Iterator[Archive]:
    """An archive whose storage folder is a tmpfs of 1 MiB."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs takes root")
    archive = make_archive()
    storage = archive.settings.storage_dir
    storage.mkdir()
    try:
        _mount(storage, "size=1m", "mode=0755")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc.stderr!r}")
    try:
        yield archive
    finally:
        subprocess.run(["umount", "-l", str(storage)], check=False, timeout=30)


def _run(archive: Archive, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = archive.settings.home / "archive.toml"
    cfg.write_text("[archive]\ningest_batch = 5\n")
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "", VO_ARCHIVE_CONFIG=str(cfg))
    return subprocess.run([sys.executable, "-m", "vo_archive", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _archived(archive: Archive) -> int:
    with archive.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM archive.version")
                                ).scalar_one())


def _check(archive: Archive) -> None:
    proc = _run(archive, "db", "check", "--deep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("OK"), proc.stdout
    with archive.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM archive.ingest_journal")
                            ).scalar_one() == 0


@pytest.mark.slow
def test_ingest_stops_at_a_full_storage_and_resumes(small_storage: Archive,
                                                   demo_files: list[Path]) -> None:
    archive = small_storage
    folder = archive.settings.storage_dir
    files = sorted(demo_files)[:40]
    assert sum(f.stat().st_size for f in files) > 3 << 20  # three times the room
    src = archive.settings.home / "incoming"
    src.mkdir()
    for f in files:
        (src / f.name).symlink_to(f)

    full = _run(archive, "ingest", "--quiet", "--workers", "2", str(src))
    assert full.returncode == EXIT_STORAGE_FULL, full.stdout + full.stderr
    # one message, naming the folder and its room; no file blamed for it
    assert "unreadable" not in full.stderr and "rejected:" not in full.stderr
    errors = [line for line in full.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and full.stderr.count("No space left") == 1, full.stderr
    assert f"storage folder {folder}: No space left on device (" in errors[0]
    assert re.search(r"\(\d+(\.\d)? [KM]?i?B free of 1\.0 MiB\)", errors[0]), errors
    archived = _archived(archive)
    assert 0 < archived < len(files)
    assert f"ingest stopped after {archived} of {len(files)} files" in errors[0]
    assert full.stdout.startswith(f"accepted {archived} ")
    _check(archive)

    # read-only: the same stop, the file system's word for it
    _remount(folder, "ro")
    try:
        ro = _run(archive, "ingest", "--quiet", "--workers", "2", str(src))
    finally:
        _remount(folder, "rw")
    assert ro.returncode == EXIT_STORAGE_FULL, ro.stdout + ro.stderr
    assert f"storage folder {folder}: Read-only file system (" in ro.stderr
    assert "unreadable" not in ro.stderr
    assert _archived(archive) == archived
    _check(archive)

    # room made: the rest is archived, what was archived is unchanged
    _remount(folder, "size=64m")
    rest = _run(archive, "ingest", "--quiet", "--workers", "2", str(src))
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert f"unchanged {archived}, rejected 0" in rest.stdout
    _check(archive)
    again = _run(archive, "ingest", "--quiet", str(src))
    assert again.stdout.startswith("accepted 0 ") and \
        f"unchanged {len(files)}, rejected 0" in again.stdout, again.stdout


@pytest.mark.skipif(not UNREADABLE.exists(), reason=f"no {UNREADABLE} here")
def test_an_unreadable_file_is_still_rejected_as_unreadable(
        small_storage: Archive, demo_files: list[Path]) -> None:
    """A file the archive cannot read is the file's problem: rejected, exit 1."""
    src = small_storage.settings.home / "incoming"
    src.mkdir()
    (src / "a.fits").symlink_to(sorted(demo_files)[0])
    (src / "b.fits").symlink_to(UNREADABLE)
    proc = _run(small_storage, "ingest", "--quiet", str(src))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"rejected: {src / 'b.fits'}: unreadable: permission denied" in proc.stderr
    assert "storage folder" not in proc.stderr
    assert proc.stdout.startswith("accepted 1 ")


def test_upload_to_a_full_storage_is_507(small_storage: Archive,
                                         demo_files: list[Path]) -> None:
    archive = small_storage
    accounts: Accounts = make_accounts(archive)
    client = create_app(archive.settings).test_client()
    first, second = sorted(demo_files)[:2]
    filler = archive.settings.storage_dir / "filler"
    try:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # take every byte the tmpfs has left
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        r = client.put(f"/upload/{first.name}", data=first.read_bytes(),
                       headers=accounts.reducer.bearer)
        assert r.status_code == 507, r.get_data()
        assert r.content_type.startswith("text/plain")
        body = r.get_data(as_text=True)
        assert body.startswith("TransientFault: the archive's storage folder takes "
                               "no more files: No space left on device ("), body
        assert r.headers["Retry-After"].isdigit()
        r = client.post("/upload", headers=accounts.reducer.bearer, data={
            "a": (io.BytesIO(second.read_bytes()), second.name)},
            content_type="multipart/form-data")
        assert r.status_code == 507, r.get_data()
        assert _archived(archive) == 0
    finally:
        filler.unlink(missing_ok=True)
    try:
        r = client.put(f"/upload/{first.name}", data=first.read_bytes(),
                       headers=accounts.reducer.bearer)
        assert r.status_code == 201, r.get_data()
        assert _archived(archive) == 1
        _check(archive)
    finally:
        drop_accounts(archive, accounts)
