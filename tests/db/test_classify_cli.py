"""``vo-archive classify``: files and archived products, table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from classify.synth import template_spectrum
from classify.templates import load_library
from tests.conftest import Archive
from vo_archive.cli import main


def _env(monkeypatch: pytest.MonkeyPatch, archive: Archive) -> None:
    monkeypatch.setenv("VO_ARCHIVE_HOME", str(archive.settings.home))
    assert archive.settings.dsn is not None
    monkeypatch.setenv("VO_ARCHIVE_DSN", archive.settings.dsn)
    monkeypatch.delenv("VO_ARCHIVE_CONFIG", raising=False)


@pytest.fixture
def ia_file(tmp_path: Path) -> Path:
    lib = load_library()
    rows = np.flatnonzero(lib.sn == "sn1994D")
    i = int(rows[np.argmin(np.abs(lib.phase[rows]))])
    spec = template_spectrum(lib, i, 0.05, snr=20.0)
    path = tmp_path / "sn1994D.txt"
    np.savetxt(path, np.column_stack([spec.wave, spec.flux]))
    return path


def test_files_as_json_and_table(ia_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_text("not a spectrum\n")
    assert main(["classify", str(ia_file), str(bad), "--json", "--quiet"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out[0]["good"] is True and out[0]["type"] == "Ia"
    assert abs(out[0]["z"] - 0.05) < 0.005 and out[0]["spectrum"] == "sn1994D.txt"
    assert "not a spectrum" in out[1]["error"]
    assert main(["classify", str(ia_file), "--top", "3", "--zmax", "0.3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:6] == ["spectrum", "type", "subtype", "frac", "z",
                                    "z_err"]
    assert table[1].split()[:3] == ["sn1994D.txt", "Ia", "Ia-norm"]


@pytest.mark.parametrize("args", [
    ["--zmin", "0.5", "--zmax", "0.1"],
    ["--top", "0"],
])
def test_bad_options_are_one_line(ia_file: Path, args: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(ia_file), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vo-archive: error:") and len(err.splitlines()) == 1


def test_types_restrict_the_answer(ia_file: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(ia_file), "--json", "--types", "II,Ib"]) == 0
    out = json.loads(capsys.readouterr().out)[0]
    assert out["type"] in (None, "II", "Ib")
    assert all(m["type"] in ("II", "Ib") for m in out["matches"])


def test_product_ids_are_read_from_storage(demo_archive: Archive,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    _env(monkeypatch, demo_archive)
    with demo_archive.engine.connect() as conn:
        pid, filename = conn.execute(text(
            "SELECT p.product_id, v.filename FROM archive.product p "
            "JOIN archive.version v ON v.product_id = p.product_id AND v.is_current "
            "WHERE v.filename LIKE '%\\_sb.fits' ORDER BY p.product_id LIMIT 1"
        )).one()
        missing = conn.execute(text(
            "SELECT coalesce(max(product_id), 0) + 1000 FROM archive.product"
        )).scalar_one()
    assert main(["classify", str(pid), str(missing), "--json", "--quiet"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out[0]["spectrum"] == f"{pid}:{filename}"
    assert isinstance(out[0]["good"], bool) and out[0]["library_version"]
    assert out[1] == {"spectrum": str(missing), "error": f"no product {missing}"}
