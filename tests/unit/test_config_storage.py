"""The ``[storage]`` table and the ``VO_ARCHIVE_S3_*`` values."""

from __future__ import annotations

from pathlib import Path

import pytest

from vo_archive.config import ConfigError, StorageConfig, load_settings


def _load(tmp_path: Path, toml: str, **env: str) -> StorageConfig:
    cfg = tmp_path / "archive.toml"
    cfg.write_text(toml)
    return load_settings({"VO_ARCHIVE_HOME": str(tmp_path),
                          "VO_ARCHIVE_CONFIG": str(cfg), **env}).storage


@pytest.mark.parametrize(("toml", "env", "expected"), [
    ("", {}, StorageConfig()),
    ('[storage]\nbackend = "s3"\nbucket = "b"\nendpoint_url = "http://h:1"\n', {},
     StorageConfig("s3", "http://h:1", "b")),
    ('[storage]\nbucket = "b"\nprefix = "/pessto"\n', {},
     StorageConfig("local", None, "b", "pessto/")),
    ('[storage]\nbucket = "b"\n', {"VO_ARCHIVE_STORAGE": "s3",
                                   "VO_ARCHIVE_S3_BUCKET": "c",
                                   "VO_ARCHIVE_S3_PREFIX": "x/y",
                                   "VO_ARCHIVE_S3_ENDPOINT": "http://e",
                                   "VO_ARCHIVE_S3_REGION": "r"},
     StorageConfig("s3", "http://e", "c", "x/y/", "r")),
    ('[storage]\nbackend = "s3"\nbucket = "b"\nprofile = "p"\n', {},
     StorageConfig("s3", None, "b", "", None, "p")),
])
def test_storage_settings(tmp_path: Path, toml: str, env: dict[str, str],
                          expected: StorageConfig) -> None:
    assert _load(tmp_path, toml, **env) == expected


@pytest.mark.parametrize(("toml", "env", "message"), [
    ('[storage]\nbackend = "ftp"\n', {}, "storage backend must be one of"),
    ('[storage]\nbackend = "s3"\n', {}, "needs a bucket"),
    ("", {"VO_ARCHIVE_STORAGE": "s3"}, "needs a bucket"),
])
def test_bad_storage_settings(tmp_path: Path, toml: str, env: dict[str, str],
                              message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, toml, **env)
