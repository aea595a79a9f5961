"""Settings read from the configuration file and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from vo_archive.config import ConfigError, load_settings


@pytest.mark.parametrize(("toml", "env", "expected"), [
    ("", {}, 0),
    ("[service]\ntrusted_proxies = 1\n", {}, 1),
    ("[service]\ntrusted_proxies = 1\n", {"VO_ARCHIVE_TRUSTED_PROXIES": "2"}, 2),
    ("", {"VO_ARCHIVE_TRUSTED_PROXIES": "1"}, 1),
])
def test_trusted_proxies(tmp_path: Path, toml: str, env: dict[str, str],
                         expected: int) -> None:
    (tmp_path / "archive.toml").write_text(toml)
    settings = load_settings({"VO_ARCHIVE_HOME": str(tmp_path), **env})
    assert settings.trusted_proxies == expected


def test_trusted_proxies_must_be_a_number(tmp_path: Path) -> None:
    (tmp_path / "archive.toml").write_text('[service]\ntrusted_proxies = "nginx"\n')
    with pytest.raises(ConfigError):
        load_settings({"VO_ARCHIVE_HOME": str(tmp_path)})
