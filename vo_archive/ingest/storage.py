"""Managed storage: archived files, addressed by their SHA-256.

A file lives at ``storage/ab/cd/<sha256>.fits`` and is never overwritten or
removed while a version row points to it. Ingest writes into
``storage/tmp/<session>/`` first, records the final key in the ingest journal,
renames into place and flushes the file system before the rows that name the
file are committed, so that a crash leaves at worst files that no row names;
:func:`vo_archive.ingest.recovery.recover` removes those.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file copied into the session's temporary folder with its checksums."""

    tmp_path: Path
    storage_key: str
    size: int
    sha256: str
    md5: str


class Storage:
    """The archive's file store under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_root = root / "tmp"
        self._root = str(root)
        #: storage folders (``ab/cd``) known to exist
        self._made: set[str] = set()

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
        """Write ``data`` into the session folder, computing its checksums."""
        sha = hashlib.sha256(data).hexdigest()
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        tmp = self.tmp_root / str(session_id) / f"{sha}-{os.getpid()}-{name}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileNotFoundError:
            # the session's first file: make the folder only then, rather than
            # asking for it (a failing mkdir) once per file
            self.session_dir(session_id)
            fd = os.open(tmp, flags, 0o666)
        with open(fd, "wb") as fh:
            fh.write(data)
        return StoredFile(tmp, self.key_for(sha), len(data), sha, md5)

    def copy_stream(self, src: Path, session_id: int) -> StoredFile:
        """Copy a large file into the session folder in chunks, with checksums."""
        sha = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
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
        """Move a session file to its final place (content already there is kept)."""
        # os.path on strings: this runs once per new file in the one recording
        # process, where pathlib's objects cost as much as the system calls.
        key = stored.storage_key
        final = os.path.join(self._root, key)
        if os.path.exists(final):
            stored.tmp_path.unlink(missing_ok=True)
            return
        folder = os.path.dirname(key)
        if folder not in self._made:
            os.makedirs(os.path.join(self._root, folder), exist_ok=True)
            self._made.add(folder)
        os.replace(stored.tmp_path, final)
        os.chmod(final, 0o444)

    def discard(self, stored: StoredFile) -> None:
        """Remove a session file that will not be archived."""
        stored.tmp_path.unlink(missing_ok=True)

    def flush(self) -> None:
        """Make every write to the storage file system durable (``syncfs``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _libc.syncfs(fd) != 0:
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
        keys: list[str] = []
        if not self.root.exists():
            return keys
        for d1 in sorted(self.root.iterdir()):
            if d1.name == "tmp" or not d1.is_dir():
                continue
            for d2 in sorted(d1.iterdir()):
                for f in sorted(d2.iterdir()):
                    keys.append(f"{d1.name}/{d2.name}/{f.name}")
        return keys
