"""Archived files in an S3-compatible object store (boto3).

The object keys are the local back end's storage keys under the configured
prefix (``<prefix>ab/cd/<sha256>.fits``), so an archive moves between the two
without touching its database. Crash safety follows the local protocol
(:mod:`vo_archive.ingest.storage`), with objects for files:

1. a reader process uploads each new file under a temporary key,
   ``<prefix>tmp/<session>/<sha256>-<random>``; the store checks every piece
   against its MD5 (``Content-MD5``), and the upload is compared, before it is
   completed, with the SHA-256 and MD5 the reader computed; after it, the
   object's size and ETag are checked;
2. the recording process journals the final keys in the database;
3. it copies each temporary object to its final key (server side), checks the
   copy's size and recorded SHA-256, and deletes the temporary object;
4. it records the version rows and clears the journal in one transaction.

A crash leaves at worst temporary objects and final objects that no row names,
never a row without its object; :func:`vo_archive.ingest.recovery.recover`
(run by the next ingest and by ``db check``) removes them, and ``db check``
also removes objects that no version names. Previews are cached in the store
under ``<prefix>previews/``, so every web node shares them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vo_archive.config import StorageConfig
from vo_archive.ingest.storage import CHUNK, Storage, StorageFull, StoredFile

log = logging.getLogger(__name__)

#: Files up to this size are sent in one PUT; larger ones in parts of PART bytes.
SINGLE_PUT = 64 << 20
#: Size of a multipart upload's parts (S3 allows 5 MiB to 5 GiB; at most 10 000).
PART = 16 << 20
#: A server-side copy of an object larger than this goes in parts (S3's limit).
COPY_LIMIT = 5 << 30
#: Key folder of temporary objects (uploads of ingest sessions).
TMP = "tmp/"
#: Key folder of cached previews.
PREVIEWS = "previews/"
#: The form of an archived file's storage key (:meth:`Storage.key_for`).
STORAGE_KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.fits")
#: Object metadata naming the content's SHA-256 (``x-amz-meta-sha256``).
SHA_META = "sha256"


#: boto3 clients by (process, configuration): a reader process gets the storage
#: pickled with each file, and a client (its connection pool) is made once.
_CLIENTS: dict[tuple[int, StorageConfig], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client_for(cfg: StorageConfig) -> Any:
    """Return this process's boto3 S3 client for a configuration."""
    key = (os.getpid(), cfg)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10, read_timeout=120, max_pool_connections=32,
                # the archive checks content itself (Content-MD5, SHA-256);
                # newer default checksums are not understood by every store
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"} if cfg.endpoint_url else {},
            )
            session = boto3.session.Session(profile_name=cfg.profile)
            client = _CLIENTS[key] = session.client(
                "s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region,
                config=config)
    return client


class ChecksumMismatch(OSError):
    """Bytes read for an upload do not have the checksum the archive recorded.

    An ``OSError``: ingest rejects the file as unreadable (it changed while
    being read), and ``storage migrate`` reports it.
    """


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _missing(exc: Exception) -> bool:
    """Whether a boto3 error says the object (or upload) does not exist."""
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


class S3Storage(Storage):
    """The archive's files in a bucket of an S3-compatible object store.

    ``root`` stays a local folder: large files are staged there while they
    are read and checksummed, before their upload.

    Parameters
    ----------
    root
        Local staging folder (``$VO_ARCHIVE_HOME/storage``).
    cfg
        The ``[storage]`` configuration (bucket, prefix, endpoint).
    """

    backend = "s3"

    def __init__(self, root: Path, cfg: StorageConfig) -> None:
        super().__init__(root)
        if not cfg.bucket:
            raise ValueError("an S3 storage needs a bucket")
        self.cfg = cfg
        self.bucket: str = cfg.bucket
        self.prefix = cfg.prefix

    def __reduce__(self) -> tuple[type[S3Storage], tuple[Path, StorageConfig]]:
        """Pickle as the configuration (reader processes make their own client)."""
        return (S3Storage, (self.root, self.cfg))

    @property
    def client(self) -> Any:
        """The boto3 S3 client of this process (made on first use)."""
        return _client_for(self.cfg)

    def object_key(self, storage_key: str) -> str:
        """Return the object key of a storage key (the prefix added)."""
        return self.prefix + storage_key

    def describe(self) -> str:
        """Say where the files are."""
        where = self.cfg.endpoint_url or "AWS"
        return f"s3://{self.bucket}/{self.prefix} at {where}"

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn a write the store refuses (or cannot be reached for) into StorageFull.

        Raises
        ------
        StorageFull
            When the store answers a write with an error or does not answer:
            every later file would meet the same, and ingest stops.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with super().writing():
                yield
        except (BotoCoreError, ClientError) as exc:
            raise StorageFull(self.describe(), str(exc), "object store") from exc

    # -- plain object operations ---------------------------------------------
    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return head

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            yield from page.get("Contents", [])

    def make_root(self) -> None:
        """Create the local staging folder and check that the bucket answers.

        Raises
        ------
        StorageFull
            When the bucket does not exist or the store does not answer.
        """
        super().make_root()
        with self.writing():
            self.client.head_bucket(Bucket=self.bucket)

    def upload(self, source: Path | bytes, key: str, sha256: str,
               md5: str | None = None) -> int:
        """Upload a local file (or bytes) to ``key``, verified; return its size.

        The store checks each piece's ``Content-MD5``; the SHA-256 (and MD5)
        of what was sent is compared with ``sha256`` (and ``md5``) before the
        object is made, so an object never exists with other content; the
        object's size and ETag are checked afterwards.

        Raises
        ------
        ChecksumMismatch
            If the bytes read do not have the expected checksums (nothing is
            left in the store).
        """
        meta = {SHA_META: sha256}
        sha = hashlib.sha256()
        whole = hashlib.md5(usedforsecurity=False)
        size = len(source) if isinstance(source, bytes) else source.stat().st_size

        def check() -> None:
            if sha.hexdigest() != sha256 or (md5 is not None
                                             and whole.hexdigest() != md5):
                raise ChecksumMismatch(f"{source if isinstance(source, Path) else key}"
                                       ": content does not match its recorded "
                                       "checksum")

        if size <= SINGLE_PUT:
            data = source if isinstance(source, bytes) else source.read_bytes()
            sha.update(data)
            whole.update(data)
            check()
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                   ContentMD5=_b64(whole.digest()), Metadata=meta)
            expected = whole.hexdigest()
            size = len(data)
        else:
            expected, size = self._upload_parts(source, key, meta, sha, whole, check)
        head = self._head(key)
        etag = str((head or {}).get("ETag", "")).strip('"')
        if head is None or head["ContentLength"] != size or etag != expected:
            raise StorageFull(self.describe(), f"{key}: the stored object does not "
                              "match what was sent", "object store")
        return size

    def _upload_parts(self, source: Path | bytes, key: str, meta: dict[str, str],
                      sha: Any, whole: Any, check: Any) -> tuple[str, int]:
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                     Metadata=meta)
        uid = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        digests: list[bytes] = []
        size = 0
        try:
            with (open(source, "rb") if isinstance(source, Path)
                  else contextlib.nullcontext(None)) as fh:
                while True:
                    piece = fh.read(PART) if fh is not None else \
                        source[size:size + PART]  # type: ignore[index]
                    if not piece:
                        break
                    size += len(piece)
                    sha.update(piece)
                    whole.update(piece)
                    digest = hashlib.md5(piece, usedforsecurity=False).digest()
                    digests.append(digest)
                    n = len(parts) + 1
                    r = self.client.upload_part(Bucket=self.bucket, Key=key,
                                                UploadId=uid, PartNumber=n, Body=piece,
                                                ContentMD5=_b64(digest))
                    parts.append({"ETag": r["ETag"], "PartNumber": n})
            check()
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=uid,
                MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=uid)
            raise
        composite = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
        return f"{composite}-{len(parts)}", size

    def has_copy(self, storage_key: str, size: int, sha256: str) -> bool:
        """Whether the store holds a file with this size and recorded SHA-256."""
        head = self._head(self.object_key(storage_key))
        return (head is not None and head["ContentLength"] == size
                and head.get("Metadata", {}).get(SHA_META) == sha256)

    def abort_uploads(self, prefix: str) -> int:
        """Abort unfinished multipart uploads under ``prefix``; return how many."""
        n = 0
        with contextlib.suppress(Exception):  # a store without the listing
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for up in page.get("Uploads", []):
                    with contextlib.suppress(Exception):
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                        n += 1
        return n

    # -- ingest ---------------------------------------------------------------
    def _tmp_key(self, session_id: int, sha256: str) -> str:
        return f"{self.prefix}{TMP}{session_id}/{sha256}-{uuid.uuid4().hex[:16]}"

    def copy_in(self, data: bytes, session_id: int, name: str) -> StoredFile:
        """Upload ``data`` under a temporary key of the session, verified.

        Raises
        ------
        StorageFull
            When the store refuses the upload or does not answer.
        """
        sha = hashlib.sha256(data).hexdigest()
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        tmp_key = self._tmp_key(session_id, sha)
        with self.writing():
            self.upload(data, tmp_key, sha, md5)
        placeholder = self.tmp_root / str(session_id) / f"{sha}-{os.getpid()}-{name}"
        return StoredFile(placeholder, self.key_for(sha), len(data), sha, md5, tmp_key)

    def copy_stream(self, src: Path, session_id: int) -> StoredFile:
        """Stage a large file locally with its checksums, then upload it verified.

        Raises
        ------
        StorageFull
            When the staging folder or the store takes no more files.
        """
        staged = super().copy_stream(src, session_id)
        tmp_key = self._tmp_key(session_id, staged.sha256)
        try:
            with self.writing():
                self.upload(staged.tmp_path, tmp_key, staged.sha256, staged.md5)
        finally:
            staged.tmp_path.unlink(missing_ok=True)
        return StoredFile(staged.tmp_path, staged.storage_key, staged.size,
                          staged.sha256, staged.md5, tmp_key)

    def place(self, stored: StoredFile) -> None:
        """Copy a session's temporary object to its final key, check it, drop the tmp.

        Raises
        ------
        StorageFull
            When the store refuses the copy, or the copy is not the file.
        """
        final = self.object_key(stored.storage_key)
        with self.writing():
            if not self.has_copy(stored.storage_key, stored.size, stored.sha256):
                if stored.tmp_key is None:
                    raise StorageFull(self.describe(), f"{final}: no uploaded "
                                      "object to place", "object store")
                source = {"Bucket": self.bucket, "Key": stored.tmp_key}
                if stored.size <= COPY_LIMIT:
                    self.client.copy_object(Bucket=self.bucket, Key=final,
                                            CopySource=source,
                                            MetadataDirective="COPY")
                else:
                    self.client.copy(source, self.bucket, final, ExtraArgs={
                        "Metadata": {SHA_META: stored.sha256},
                        "MetadataDirective": "REPLACE"})
                if not self.has_copy(stored.storage_key, stored.size, stored.sha256):
                    raise StorageFull(self.describe(), f"{final}: the copy does not "
                                      "match the uploaded file", "object store")
            self.discard(stored)

    def discard(self, stored: StoredFile) -> None:
        """Remove a session's temporary object (and any staged file)."""
        stored.tmp_path.unlink(missing_ok=True)
        if stored.tmp_key is not None:
            with self.writing():
                self._delete(stored.tmp_key)

    def flush(self) -> None:
        """Nothing to do: a store's answer to a write means the object is kept."""

    def remove_session(self, session_id: int) -> None:
        """Remove a session's staging folder, temporary objects and unfinished parts."""
        super().remove_session(session_id)
        prefix = f"{self.prefix}{TMP}{session_id}/"
        with self.writing():
            for obj in list(self._list(prefix)):
                self._delete(obj["Key"])
        self.abort_uploads(prefix)

    def tmp_session_ids(self) -> set[int]:
        """Return the sessions with staged files or temporary objects."""
        ids = super().tmp_session_ids()
        with self.writing():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + TMP, Delimiter="/")
            for page in pages:
                for cp in page.get("CommonPrefixes", []):
                    name = cp["Prefix"][len(self.prefix + TMP):].rstrip("/")
                    if name.isdigit():
                        ids.add(int(name))
        return ids

    def remove_unreferenced(self, storage_key: str) -> bool:
        """Delete a stored object; return whether it existed."""
        key = self.object_key(storage_key)
        with self.writing():
            if self._head(key) is None:
                return False
            self._delete(key)
        return True

    # -- reading ---------------------------------------------------------------
    def object_sizes(self) -> dict[str, int]:
        """Return {storage key: size} of every archived file (one listing).

        Only keys of the archive's form (``ab/cd/<sha256>.fits``) count: other
        objects under the prefix (a shared bucket) are never taken for orphans.
        """
        out: dict[str, int] = {}
        with self.writing():  # an unreachable store: one clear error
            for obj in self._list(self.prefix):
                key = str(obj["Key"])[len(self.prefix):]
                if STORAGE_KEY.fullmatch(key):
                    out[key] = int(obj["Size"])
        return out

    def size_of(self, storage_key: str) -> int | None:
        """Return a stored object's size, or None when it is not there."""
        head = self._head(self.object_key(storage_key))
        return None if head is None else int(head["ContentLength"])

    def read_chunks(self, storage_key: str, size: int, start: int = 0
                    ) -> Iterator[bytes]:
        """Yield ``size`` bytes of an object from ``start`` (one ranged GET).

        Only :data:`CHUNK` bytes are held at a time; closing the generator
        closes the connection to the store.

        Raises
        ------
        OSError
            If the object ends before ``size`` bytes.
        """
        if size <= 0:
            return
        resp = self.client.get_object(Bucket=self.bucket,
                                      Key=self.object_key(storage_key),
                                      Range=f"bytes={start}-{start + size - 1}")
        body = resp["Body"]
        left = size
        try:
            for chunk in body.iter_chunks(CHUNK):
                if len(chunk) > left:
                    chunk = chunk[:left]
                left -= len(chunk)
                yield chunk
                if left == 0:
                    break
        finally:
            body.close()
        if left:
            raise OSError(f"{storage_key}: object is shorter than the archive records")

    @contextlib.contextmanager
    def local_path(self, storage_key: str) -> Iterator[Path]:
        """Yield a temporary local copy of an object, removed on exit.

        Raises
        ------
        FileNotFoundError
            If the store has no such object.
        """
        size = self.size_of(storage_key)
        if size is None:
            raise FileNotFoundError(f"{self.describe()}{storage_key}")
        with tempfile.TemporaryDirectory(prefix="vo-archive-s3-") as folder:
            path = Path(folder) / os.path.basename(storage_key)
            with open(path, "wb") as fh:
                for chunk in self.read_chunks(storage_key, size):
                    fh.write(chunk)
            yield path

    # -- derived files (previews) ----------------------------------------------
    def get_cached(self, name: str) -> bytes | None:
        """Return a cached derived file (``previews/...``), or None."""
        from botocore.exceptions import ClientError

        try:
            resp = self.client.get_object(Bucket=self.bucket,
                                          Key=self.prefix + PREVIEWS + name)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        data: bytes = resp["Body"].read()
        return data

    def put_cached(self, name: str, data: bytes, content_type: str) -> None:
        """Keep a derived file in the store, for every node to find."""
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + PREVIEWS + name,
                               Body=data, ContentType=content_type,
                               ContentMD5=_b64(hashlib.md5(
                                   data, usedforsecurity=False).digest()))
