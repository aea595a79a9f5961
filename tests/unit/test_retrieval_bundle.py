"""Streaming tar and zip writers."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from datetime import date
from pathlib import Path

import pytest

from vo_archive.retrieval import bundle
from vo_archive.retrieval.params import ArchiveFormat
from vo_archive.retrieval.query import ProductFile


def product(tmp: Path, pid: int, name: str, data: bytes, vno: int = 1) -> ProductFile:
    sha = hashlib.sha256(data).hexdigest()
    key = f"{sha[:2]}/{sha}.fits"
    (tmp / key).parent.mkdir(parents=True, exist_ok=True)
    (tmp / key).write_bytes(data)
    return ProductFile(pid, vno, vno == 1, name, key, len(data), sha,
                       hashlib.md5(data).hexdigest(), "EFOSC", "spectroscopy",  # noqa: S324
                       "science", "final", "fluxcal_1d", "d", "no", None, "run1",
                       "SN1", date(2018, 3, 23), 1.0, 2.0, True)


@pytest.fixture
def files(tmp_path: Path) -> list[ProductFile]:
    sizes = [0, 1, 511, 512, 513, 3 * bundle.CHUNK + 7]
    out = [product(tmp_path, i + 1, f"f{i}_" + "x" * (120 if i == 2 else 3) + ".fits",
                   os.urandom(n)) for i, n in enumerate(sizes)]
    # the same file name twice (two versions): the second goes to its own folder
    out.append(product(tmp_path, 1, out[0].filename, b"second version", vno=2))
    return out


@pytest.mark.parametrize("fmt", list(ArchiveFormat))
def test_bundle_unpacks_with_valid_manifest(tmp_path: Path, files: list[ProductFile],
                                            fmt: ArchiveFormat) -> None:
    members = bundle.build_members(files, tmp_path)
    data = b"".join(bundle.stream(fmt, members, "run1", mtime=1_700_000_000))
    if fmt is ArchiveFormat.TAR:
        assert len(data) == bundle.tar_length(members, "run1", 1_700_000_000)
        assert len(data) % bundle.RECORD == 0
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            content = {m.name: tf.extractfile(m).read() for m in tf  # type: ignore[union-attr]
                       if m.isfile()}
    else:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert zf.testzip() is None
            content = {n: zf.read(n) for n in zf.namelist()}
    manifest = bundle.parse_manifest(content.pop("run1/MANIFEST.sha256").decode())
    assert set(manifest) == {n.removeprefix("run1/") for n in content}
    for name, sha in manifest.items():
        assert hashlib.sha256(content["run1/" + name]).hexdigest() == sha
    names = bundle.arcnames(files)
    assert names[-1] == f"v2/p1/{files[0].filename}"
    for f, name in zip(files, names, strict=True):
        assert content["run1/" + name] == (tmp_path / f.storage_key).read_bytes()
    assert "run1/PRODUCTS.csv" in content


def test_closing_the_stream_closes_the_file(tmp_path: Path, files: list[ProductFile]
                                            ) -> None:
    def open_fds() -> set[str]:
        fds = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue
        return fds

    members = bundle.build_members(files, tmp_path)
    big = str(tmp_path / files[5].storage_key)
    gen = bundle.stream(ArchiveFormat.TAR, members, "run1", 0)
    for chunk in gen:
        if len(chunk) == bundle.CHUNK:  # inside the big file
            break
    assert big in open_fds()
    gen.close()  # what the WSGI server does when the client goes away
    assert big not in open_fds()


def test_short_file_fails_instead_of_corrupting(tmp_path: Path,
                                                files: list[ProductFile]) -> None:
    members = bundle.build_members(files, tmp_path)
    path = tmp_path / files[4].storage_key
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(OSError, match="shorter"):
        b"".join(bundle.stream(ArchiveFormat.TAR, members, "run1", 0))


@pytest.mark.parametrize("line", ["abc  x", "0" * 64 + " x", "g" * 64 + "  x"])
def test_parse_manifest_rejects(line: str) -> None:
    with pytest.raises(ValueError, match="manifest line 1"):
        bundle.parse_manifest(line)
