"""A storage that takes no more files: ingest stops at once and says so.

The archive's storage folder is a small tmpfs: the file system itself refuses
the writes (``ENOSPC``, then ``EROFS`` once it is remounted read-only); nothing
is mocked. As root the test mounts it; otherwise it mounts it in a private user
and mount namespace (``unshare``) and runs the archive's commands there. The CLI
ingest stops at the first refused write with one message naming the storage
folder and its free space and exit status 3, ``vo-archive db check`` passes, and
a run after the file system grew archives the rest. The upload API answers 507.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from tests.auth_fixtures import Accounts, drop_accounts, make_accounts
from tests.conftest import Archive, stop_server
from vo_archive.commands.ingestcmd import EXIT_STORAGE_FULL
from vo_archive.db.cluster import free_port

#: A file no one can read, not even root (a write-only sysfs attribute).
UNREADABLE = Path("/sys/bus/pci/rescan")
#: Mount in a user namespace even as root (to test that way here).
IN_NAMESPACE = os.environ.get("VO_ARCHIVE_TEST_STORAGE_NAMESPACE") == "1"


class SmallStorage:
    """An archive whose storage folder is a tmpfs of 1 MiB.

    Commands run through :meth:`command`, so that they see the mount wherever
    it is: in this mount namespace (root) or in a private one held by a
    process of its own (``unshare --user --map-root-user --mount``).
    """

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.folder = archive.settings.storage_dir
        self.folder.mkdir()
        self.prefix: list[str] = []
        self.holder: subprocess.Popen[str] | None = None
        mount = ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs",
                 str(self.folder)]
        if os.geteuid() == 0 and not IN_NAMESPACE:
            subprocess.run(mount, check=True, capture_output=True, timeout=30)
            return
        self.holder = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount",
             "--propagation", "private", "sh", "-c",
             " ".join(mount) + " && echo mounted && exec sleep 100000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != "mounted":
            raise OSError(self.holder.communicate(timeout=30)[1])
        self.prefix = ["nsenter", "--preserve-credentials", "-t",
                       str(self.holder.pid), "-U", "-m"]

    def command(self, *args: str) -> list[str]:
        """Return ``args`` as a command that sees the mount."""
        return [*self.prefix, *args]

    def env(self) -> dict[str, str]:
        """Return the environment of the archive's commands (batches of five)."""
        cfg = self.archive.settings.home / "archive.toml"
        cfg.write_text("[archive]\ningest_batch = 5\n")
        return dict(os.environ, VO_ARCHIVE_HOME=str(self.archive.settings.home),
                    VO_ARCHIVE_DSN=self.archive.settings.dsn or "",
                    VO_ARCHIVE_CONFIG=str(cfg))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``vo-archive ARGS``."""
        return subprocess.run(self.command(sys.executable, "-m", "vo_archive", *args),
                              env=self.env(), capture_output=True, text=True,
                              timeout=300)

    def remount(self, *options: str) -> None:
        """Remount the tmpfs with ``options`` (``ro``, ``size=64m``...)."""
        subprocess.run(self.command("mount", "-o", ",".join(("remount", *options)),
                                    str(self.folder)),
                       check=True, capture_output=True, timeout=30)

    def close(self) -> None:
        """Unmount (or end the namespace holding the mount)."""
        if self.holder is None:
            subprocess.run(["umount", "-l", str(self.folder)], check=False,
                           timeout=30)
            return
        self.holder.kill()
        self.holder.communicate(timeout=30)


@pytest.fixture
def small_storage(make_archive: Callable[..., Archive]) -> Iterator[SmallStorage]:
    """An archive whose storage folder is a tmpfs of 1 MiB."""
    for tool in ("mount", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} here")
    try:
        storage = SmallStorage(make_archive())
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield storage
    finally:
        storage.close()


def _archived(archive: Archive) -> int:
    with archive.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM archive.version")
                                ).scalar_one())


def _check(storage: SmallStorage) -> None:
    proc = storage.run("db", "check", "--deep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("OK"), proc.stdout
    with storage.archive.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM archive.ingest_journal")
                            ).scalar_one() == 0


@pytest.mark.slow
def test_ingest_stops_at_a_full_storage_and_resumes(small_storage: SmallStorage,
                                                   demo_files: list[Path]) -> None:
    archive, folder = small_storage.archive, small_storage.folder
    files = sorted(demo_files)[:40]
    assert sum(f.stat().st_size for f in files) > 3 << 20  # three times the room
    src = archive.settings.home / "incoming"
    src.mkdir()
    for f in files:
        (src / f.name).symlink_to(f)

    full = small_storage.run("ingest", "--quiet", "--workers", "2", str(src))
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
    _check(small_storage)

    # read-only: the same stop, the file system's word for it
    small_storage.remount("ro")
    try:
        ro = small_storage.run("ingest", "--quiet", "--workers", "2", str(src))
    finally:
        small_storage.remount("rw")
    assert ro.returncode == EXIT_STORAGE_FULL, ro.stdout + ro.stderr
    assert f"storage folder {folder}: Read-only file system (" in ro.stderr
    assert "unreadable" not in ro.stderr
    assert _archived(archive) == archived
    _check(small_storage)

    # room made: the rest is archived, what was archived is unchanged
    small_storage.remount("size=64m")
    rest = small_storage.run("ingest", "--quiet", "--workers", "2", str(src))
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert f"unchanged {archived}, rejected 0" in rest.stdout
    _check(small_storage)
    again = small_storage.run("ingest", "--quiet", str(src))
    assert again.stdout.startswith("accepted 0 ") and \
        f"unchanged {len(files)}, rejected 0" in again.stdout, again.stdout


@pytest.mark.skipif(not UNREADABLE.exists(), reason=f"no {UNREADABLE} here")
def test_an_unreadable_file_is_still_rejected_as_unreadable(
        small_storage: SmallStorage, demo_files: list[Path]) -> None:
    """A file the archive cannot read is the file's problem: rejected, exit 1."""
    src = small_storage.archive.settings.home / "incoming"
    src.mkdir()
    (src / "a.fits").symlink_to(sorted(demo_files)[0])
    (src / "b.fits").symlink_to(UNREADABLE)
    proc = small_storage.run("ingest", "--quiet", str(src))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"rejected: {src / 'b.fits'}: unreadable: permission denied" in proc.stderr
    assert "storage folder" not in proc.stderr
    assert proc.stdout.startswith("accepted 1 ")


def _serve(storage: SmallStorage) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``vo-archive serve`` where it sees the storage's mount."""
    port = free_port()
    log = open(storage.archive.settings.home / "server.log", "wb")
    proc = subprocess.Popen(
        storage.command(sys.executable, "-m", "vo_archive", "serve", "--port",
                        str(port), "--workers", "1", "--job-workers", "0"),
        env=storage.env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            requests.get(url + "/", timeout=2)
            return url, proc
        except requests.ConnectionError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError((storage.archive.settings.home / "server.log").read_text())


def test_upload_to_a_full_storage_is_507(small_storage: SmallStorage,
                                         demo_files: list[Path]) -> None:
    archive = small_storage.archive
    accounts: Accounts = make_accounts(archive)
    url, server = _serve(small_storage)
    first, second = sorted(demo_files)[:2]
    auth = accounts.reducer.bearer
    try:
        # take every byte the tmpfs has left
        filler = small_storage.folder / "filler"
        dd = subprocess.run(small_storage.command(
            "dd", "if=/dev/zero", f"of={filler}", "bs=4096"),
            capture_output=True, text=True, timeout=60)
        assert "No space left on device" in dd.stderr, dd.stderr
        r = requests.put(f"{url}/upload/{first.name}", data=first.read_bytes(),
                         headers=auth, timeout=60)
        assert r.status_code == 507, r.text
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.text.startswith("TransientFault: the archive's storage folder "
                                 "takes no more files: No space left on device ("), \
            r.text
        assert "0 earlier file(s) of this upload were archived" in r.text
        assert r.headers["Retry-After"].isdigit()
        r = requests.post(f"{url}/upload", headers=auth, timeout=60, files=[
            ("a", (second.name, second.read_bytes()))])
        assert r.status_code == 507, r.text
        assert _archived(archive) == 0
        subprocess.run(small_storage.command("rm", str(filler)), check=True,
                       timeout=30)
        r = requests.put(f"{url}/upload/{first.name}", data=first.read_bytes(),
                         headers=auth, timeout=60)
        assert r.status_code == 201, r.text
        assert _archived(archive) == 1
        _check(small_storage)
    finally:
        stop_server(server)
        drop_accounts(archive, accounts)
