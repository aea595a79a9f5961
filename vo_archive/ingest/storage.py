"""Managed storage: archived files, addressed by their SHA-256.

A file lives at ``storage/ab/cd/<sha256>.fits`` and is never overwritten or
removed while a version row points to it. Ingest writes into
``storage/tmp/<session>/`` first, records the final key in the ingest journal,
renames into place and flushes the file system before the rows that name the
file are committed, so that a crash leaves at worst files that no row names;
:func:`vo_archive.ingest.recovery.recover` removes those.

A write the storage file system refuses for lack of room (``ENOSPC``, ``EDQUOT``)
or because it is read-only (``EROFS``) raises :class:`StorageFull`: that is the
archive's own state, not the file's, and ingest stops at it.

:class:`Storage` is the local back end and the interface every reader of
archived files goes through (:meth:`Storage.read_chunks`,
:meth:`Storage.local_path`, :meth:`Storage.object_sizes`...);
:class:`vo_archive.ingest.s3.S3Storage` keeps the files in an S3-compatible
object store instead. :func:`open_storage` returns the configured one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vo_archive.config import Settings, StorageConfig

CHUNK = 1 << 20
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
#: Errors of a file system that takes no more writes: full, over quota, read-only.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def free_space(folder: Path) -> str:
    """Describe the room left for the archive on ``folder``'s file system."""
    try:
        st = os.statvfs(folder)
    except OSError as exc:
        return f"free space unknown ({exc.strerror or exc})"
    text = (f"{_size(st.f_bavail * st.f_frsize)} free of "
            f"{_size(st.f_blocks * st.f_frsize)}")
    if st.f_flag & os.ST_RDONLY:
        text += ", mounted read-only"
    return text


class StorageFull(Exception):
    """The archive's storage takes no more files: full, over quota or read-only.

    Parameters
    ----------
    folder
        The storage folder (its root).
    reason
        What the file system said (``No space left on device``...).
    free
        The room left there (:func:`free_space`), when the write failed.
    """

    def __init__(self, folder: str, reason: str, free: str) -> None:
        # the arguments are the pickled state (raised in reader processes)
        super().__init__(folder, reason, free)
        self.folder = folder
        self.reason = reason
        self.free = free

    def __str__(self) -> str:
        """Say what failed, where, and how much room is left."""
        return (f"cannot write to the archive's storage folder {self.folder}: "
                f"{self.reason} ({self.free})")


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file copied into the session's temporary folder with its checksums."""

    tmp_path: Path
    storage_key: str
    size: int
    sha256: str
    md5: str
    #: the temporary object key holding the file (object stores only)
    tmp_key: str | None = None


class Storage:
    """The archive's file store under one root folder (the local back end)."""

    #: What :meth:`describe` and messages call this back end.
    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_root = root / "tmp"
        self._root = str(root)
        #: storage folders (``ab/cd``) known to exist
        self._made: set[str] = set()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn a write the file system refuses for want of room into StorageFull.

        Raises
        ------
        StorageFull
            On ``ENOSPC``, ``EDQUOT`` or ``EROFS``; other errors pass unchanged.
        """
        try:
            yield
        except OSError as exc:
            if exc.errno not in FULL_ERRNOS:
                raise
            raise StorageFull(self._root, exc.strerror or str(exc),
                              free_space(self.root)) from exc

    def make_root(self) -> None:
        """Create the storage folder if it does not exist."""
        with self.writing():
            self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, storage_key: str) -> Path:
        """Return the absolute path of a stored file."""
        return self.root / storage_key

    @staticmethod
    def key_for(sha256: str) -> str:
        """Return the storage key of content with this SHA-256."""
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.fits"

    def session_dir(self, session_id: int) -> Path:
        """Return (and create) the temporary folder of an ingest session."""
        path = self.tmp_root / str(session_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def copy_in(self, data: bytes, session_id: int, name: str) -> StoredFile:
        """Write ``data`` into the session folder, computing its checksums.

        Raises
        ------
        StorageFull
            When the storage file system takes no more writes.
        """
        sha = hashlib.sha256(data).hexdigest()
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        tmp = self.tmp_root / str(session_id) / f"{sha}-{os.getpid()}-{name}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with self.writing():
            try:
                fd = os.open(tmp, flags, 0o666)
            except FileNotFoundError:
                # the session's first file: make the folder only then, rather
                # than asking for it (a failing mkdir) once per file
                self.session_dir(session_id)
                fd = os.open(tmp, flags, 0o666)
            with open(fd, "wb") as fh:
                fh.write(data)
        return StoredFile(tmp, self.key_for(sha), len(data), sha, md5)

    def copy_stream(self, src: Path, session_id: int) -> StoredFile:
        """Copy a large file into the session folder in chunks, with checksums.

        Raises
        ------
        StorageFull
            When the storage file system takes no more writes (a read of
            ``src`` that fails raises its own ``OSError``).
        """
        sha = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        # reads do not fail with the errors writing() turns into StorageFull
        with self.writing():
            tmp = self.session_dir(session_id) / f"stream-{os.getpid()}-{src.name}"
            size = 0
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(CHUNK):
                    sha.update(chunk)
                    md5.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
        digest = sha.hexdigest()
        return StoredFile(tmp, self.key_for(digest), size, digest, md5.hexdigest())

    def place(self, stored: StoredFile) -> None:
        """Move a session file to its final place (content already there is kept).

        Raises
        ------
        StorageFull
            When the storage file system takes no more writes.
        """
        # os.path on strings: this runs once per new file in the one recording
        # process, where pathlib's objects cost as much as the system calls.
        key = stored.storage_key
        final = os.path.join(self._root, key)
        if os.path.exists(final):
            stored.tmp_path.unlink(missing_ok=True)
            return
        folder = os.path.dirname(key)
        with self.writing():
            if folder not in self._made:
                os.makedirs(os.path.join(self._root, folder), exist_ok=True)
                self._made.add(folder)
            os.replace(stored.tmp_path, final)
            os.chmod(final, 0o444)

    def discard(self, stored: StoredFile) -> None:
        """Remove a session file that will not be archived."""
        stored.tmp_path.unlink(missing_ok=True)

    def flush(self) -> None:
        """Make every write to the storage file system durable (``syncfs``).

        Raises
        ------
        StorageFull
            When written data could not be kept for want of room (a file
            system that allocates at write-back, over its quota).
        """
        self.make_root()
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _libc.syncfs(fd) != 0:
                code = ctypes.get_errno()
                if code in FULL_ERRNOS:
                    raise StorageFull(self._root, os.strerror(code),
                                      free_space(self.root))
                os.sync()
        finally:
            os.close(fd)

    def remove_session(self, session_id: int) -> None:
        """Remove a session's temporary folder and whatever it still holds."""
        shutil.rmtree(self.tmp_root / str(session_id), ignore_errors=True)

    def remove_unreferenced(self, storage_key: str) -> bool:
        """Delete a stored file; return whether it existed."""
        path = self.path_of(storage_key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def iter_keys(self) -> list[str]:
        """Return the keys of every file in final storage (not the tmp folder)."""
        return list(self.object_sizes())

    def object_sizes(self) -> dict[str, int]:
        """Return {key: size} of every file in final storage (not the tmp folder)."""
        out: dict[str, int] = {}
        if not self.root.exists():
            return out
        for d1 in sorted(self.root.iterdir()):
            if d1.name == "tmp" or not d1.is_dir():
                continue
            for d2 in sorted(d1.iterdir()):
                for f in sorted(d2.iterdir()):
                    out[f"{d1.name}/{d2.name}/{f.name}"] = f.stat().st_size
        return out

    def tmp_session_ids(self) -> set[int]:
        """Return the ingest sessions that have temporary files here."""
        if not self.tmp_root.exists():
            return set()
        return {int(d.name) for d in self.tmp_root.iterdir() if d.name.isdigit()}

    def size_of(self, storage_key: str) -> int | None:
        """Return a stored file's size, or None when it is not there."""
        try:
            return self.path_of(storage_key).stat().st_size
        except FileNotFoundError:
            return None

    def read_chunks(self, storage_key: str, size: int, start: int = 0
                    ) -> Iterator[bytes]:
        """Yield ``size`` bytes of a stored file from ``start``, in pieces.

        Raises
        ------
        OSError
            If the file ends before ``size`` bytes (the archive recorded more).
        """
        path = self.path_of(storage_key)
        left = size
        with open(path, "rb") as fh:
            if start:
                fh.seek(start)
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise OSError(f"{path}: file is shorter than the archive records")
                left -= len(chunk)
                yield chunk

    def sha256_of(self, storage_key: str) -> str:
        """Return the SHA-256 of a stored file, read in pieces."""
        h = hashlib.sha256()
        size = self.size_of(storage_key)
        if size is None:
            raise FileNotFoundError(storage_key)
        for chunk in self.read_chunks(storage_key, size):
            h.update(chunk)
        return h.hexdigest()

    @contextlib.contextmanager
    def local_path(self, storage_key: str) -> Iterator[Path]:
        """Yield a local path holding a stored file (here, the file itself).

        Readers that need a file name (``astropy.io.fits``) use this; an
        object store yields a temporary copy, removed on exit.
        """
        yield self.path_of(storage_key)

    def describe(self) -> str:
        """Say where the files are (``db status``, messages)."""
        return str(self.root)


_OPENED: dict[tuple[int, Path, StorageConfig], Storage] = {}
_OPENED_LOCK = threading.Lock()


def open_storage(settings: Settings) -> Storage:
    """Return the archive's configured storage (one per process and configuration).

    The local back end unless ``[storage] backend = "s3"``; an object store's
    client is made once per process (it holds a connection pool).
    """
    cfg = settings.storage
    if cfg.backend != "s3":
        return Storage(settings.storage_dir)
    key = (os.getpid(), settings.storage_dir, cfg)
    with _OPENED_LOCK:
        store = _OPENED.get(key)
        if store is None:
            from vo_archive.ingest.s3 import S3Storage

            store = _OPENED[key] = S3Storage(settings.storage_dir, cfg)
    return store
