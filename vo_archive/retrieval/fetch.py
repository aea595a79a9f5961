r"""Client side: download a bundle or file and verify it against its checksums.

A bundle (tar or zip) carries ``MANIFEST.sha256``; every member it names must be
present with that SHA-256, and no other file may be present. A single file is
checked against the ``X-Checksum-SHA256`` (or ``Repr-Digest``) header the
archive sends with it. The same check works without this tool::

    curl -fO http://HOST/runs/RUN/download && tar xf RUN.tar && \
        (cd RUN && sha256sum -c MANIFEST.sha256)
"""

from __future__ import annotations

import base64
import hashlib
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from vo_archive.retrieval.bundle import CHUNK, MANIFEST_NAME, parse_manifest


@dataclass(slots=True)
class Verification:
    """The outcome of checking a download."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every checksum matched and nothing was missing or extra."""
        return not self.problems and self.checked > 0


def _sha256(fh: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _members(path: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: zf.open(info)  # type: ignore[misc]
        return
    with tarfile.open(path, "r:*") as tf:
        for ti in tf:
            if ti.isfile():
                yield ti.name, lambda ti=ti: tf.extractfile(ti)  # type: ignore[misc]


def verify_bundle(path: Path) -> Verification:
    """Check every member of a tar or zip bundle against its manifest.

    Raises
    ------
    ValueError
        If the file is not a tar or zip archive or holds no manifest.
    """
    if not zipfile.is_zipfile(path) and not tarfile.is_tarfile(path):
        raise ValueError(f"{path} is neither a tar nor a zip archive")
    result = Verification()
    digests: dict[str, str] = {}
    manifest: dict[str, str] | None = None
    root = ""
    for name, opener in _members(path):
        with opener() as fh:
            if name == MANIFEST_NAME or name.endswith("/" + MANIFEST_NAME):
                root = name[: -len(MANIFEST_NAME)]
                manifest = parse_manifest(fh.read().decode())
            else:
                digests[name] = _sha256(fh)
    if manifest is None:
        raise ValueError(f"{path} holds no {MANIFEST_NAME}")
    for name, sha in manifest.items():
        got = digests.pop(root + name, None)
        if got is None:
            result.problems.append(f"missing: {name}")
        elif got != sha:
            result.problems.append(f"checksum mismatch: {name} (expected {sha}, "
                                   f"got {got})")
        else:
            result.checked += 1
    result.problems += [f"not in the manifest: {n}" for n in sorted(digests)]
    return result


def expected_sha256(headers: dict[str, str]) -> str | None:
    """Return the SHA-256 the server announced for a single file, if any."""
    low = {k.lower(): v for k, v in headers.items()}
    if "x-checksum-sha256" in low:
        return low["x-checksum-sha256"].strip().lower()
    m = re.search(r"sha-256=:([A-Za-z0-9+/=]+):", low.get("repr-digest", ""))
    if m:
        return base64.b64decode(m.group(1)).hex()
    return None


def verify_file(path: Path, sha256: str) -> Verification:
    """Check a single downloaded file against a SHA-256."""
    with open(path, "rb") as fh:
        got = _sha256(fh)
    result = Verification(checked=1)
    if got != sha256:
        result.problems.append(f"checksum mismatch: {path.name} (expected {sha256}, "
                               f"got {got})")
    return result
