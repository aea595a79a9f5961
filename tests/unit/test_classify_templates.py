"""The template library: the .lnw parser, the shipped file, user libraries."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from classify.core import classify_spectrum
from classify.synth import template_spectrum
from classify.templates import (
    DEFAULT_LIBRARY,
    LIBRARY_ENV,
    TemplateError,
    build,
    build_arrays,
    canonical_sn,
    configured_library,
    load_library,
    main_type,
    parse_lnw,
    read_npz,
)

ROOT = Path(__file__).resolve().parents[2]


def _shared_templates() -> Path | None:
    env = os.environ.get("VO_ARCHIVE_SHARED_DATA")
    candidates = [Path(env)] if env else [p / "shared" / "data" for p in ROOT.parents]
    for c in candidates:
        if (c / "snid-templates" / "sn1981B.lnw").exists():
            return c / "snid-templates"
    return None


SHARED = _shared_templates()
needs_shared = pytest.mark.skipif(SHARED is None,
                                  reason="../shared/data/snid-templates is not here")

# A two-epoch, 16-bin template written by hand: header, knot count line (with the
# per-epoch knot count and mean), two knot rows, the phase row, 16 bin rows.
_WAVES = 2500.0 * np.exp((np.arange(16) + 0.5) * np.log(4.0) / 16)
HAND = "\n".join([
    "    2   16   2500.00  10000.00      2     sn2099zz      1.10  Ia-91T     1  3",
    "      2  2     -1.00000  3     -2.00000",
    "      1  1.0000   0.1000  1.0000   0.2000",
    "      2  2.0000   0.3000  2.0000   0.4000",
    "       0   -5.000   12.500",
    *(f" {w:8.2f}  {0.001 * k:7.3f}  {-0.5 if k == 7 else 0.0:7.3f}"
      for k, w in enumerate(_WAVES)),
]) + "\n"


def test_parse_a_hand_written_template() -> None:
    t = parse_lnw(HAND, "hand.lnw")
    assert (t.name, t.subtype, t.type_code, t.subtype_code) == ("sn2099zz", "Ia-91T",
                                                               1, 3)
    assert t.dm15 == 1.10 and (t.w0, t.w1) == (2500.0, 10000.0)
    assert t.phases.tolist() == [-5.0, 12.5]
    assert t.flux.shape == (2, 16)
    np.testing.assert_allclose(t.wave, np.round(_WAVES, 2))
    np.testing.assert_allclose(t.flux[0], 0.001 * np.arange(16))
    assert t.flux[1, 7] == -0.5 and np.count_nonzero(t.flux[1]) == 1


@needs_shared
def test_parse_sn1981b_as_checked_by_hand() -> None:
    assert SHARED is not None
    t = parse_lnw((SHARED / "sn1981B.lnw").read_text(), "sn1981B.lnw")
    assert (t.name, t.subtype, t.type_code, t.subtype_code, t.dm15) == (
        "sn1981B", "Ia-norm", 1, 2, 0.91)
    assert t.phases.tolist() == [-1.5, 15.4, 18.3, 22.3, 26.3, 33.2, 92.9, 113.7,
                                 266.8]
    assert t.flux.shape == (9, 1024)
    assert (t.wave[0], t.wave[1], t.wave[-1]) == (2501.69, 2505.08, 9993.24)
    row = int(np.flatnonzero(t.wave == 4817.28)[0])  # line 500 of the file
    assert (t.flux[0, row], t.flux[1, row], t.flux[8, row]) == (-0.203, -0.153,
                                                                -0.240)


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("not a template\n", "header"),
    ("    2   16   2500.00  10000.00      2     snX  1.0  Ia-norm  1  2\n1 2\n",
     "lines, expected"),
    (HAND.replace("   -5.000   12.500", "   -5.000"), "epochs"),
    (HAND.replace("    0.000  ", "    x.000  ", 1), "non-numeric"),
    (HAND.replace("   16   ", "    4   "), "implausible"),
])
def test_bad_templates_are_refused(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse_lnw(text, "bad.lnw")


@pytest.mark.parametrize(("name", "canonical"), [
    ("sn02bo", "sn2002bo"),
    ("sn2002bo", "sn2002bo"),
    ("sn94D", "sn1994d"),
    ("sn1994D", "sn1994d"),
    ("sn03U", "sn2003u"),
    ("sn00cx_bsnip", "sn2000cx"),
    ("PTF10vgv", "ptf10vgv"),
])
def test_one_spelling_per_supernova(name: str, canonical: str) -> None:
    assert canonical_sn(name) == canonical


@pytest.mark.parametrize(("subtype", "code", "main"), [
    ("Ia-norm", 1, "Ia"), ("IIb", 2, "Ib"), ("Ic-broad", 3, "Ic"), ("IIP", 4, "II"),
    ("AGN", 5, "NotSN"), ("SLSN-I", 0, "SLSN"),
])
def test_main_type_follows_snid_codes(subtype: str, code: int, main: str) -> None:
    assert main_type(subtype, code) == main


def test_shipped_library_is_read_once_and_documented() -> None:
    lib = load_library()
    assert lib is load_library() is load_library(DEFAULT_LIBRARY)
    assert len(lib) == 4998 and lib.flux.shape == (4998, 1024)
    assert lib.flux.dtype == np.float32 and (lib.w0, lib.w1) == (2500.0, 10000.0)
    assert lib.version.startswith("snid-lnw-")
    assert "MIT" in lib.licence and "astrodash" in lib.source
    assert (DEFAULT_LIBRARY.parent / "LICENCE-astrodash.txt").exists()
    assert DEFAULT_LIBRARY.stat().st_size < 8_000_000
    assert set(lib.type.tolist()) == {"Ia", "Ib", "Ic", "II"}


@needs_shared
def test_shipped_file_is_what_the_build_makes() -> None:
    assert SHARED is not None
    built = build_arrays(SHARED)
    shipped = read_npz(DEFAULT_LIBRARY)
    assert set(built) == set(shipped)
    for key, value in built.items():
        np.testing.assert_array_equal(shipped[key], value, err_msg=key)


def test_build_command_writes_a_loadable_library(tmp_path: Path) -> None:
    src = tmp_path / "lnw"
    src.mkdir()
    (src / "a.lnw").write_text(HAND)
    (src / "b.lnw").write_text(HAND.replace("sn2099zz", "sn2099zy"))
    (src / "notes.txt").write_text("not a template")
    meta = build(src, tmp_path / "lib.npz")
    assert meta["supernovae"] == 2 and meta["epochs"] == 4
    lib = load_library(tmp_path / "lib.npz")
    assert len(lib) == 4 and lib.sn.tolist() == ["sn2099zz"] * 2 + ["sn2099zy"] * 2
    assert lib.version == meta["version"]
    np.testing.assert_allclose(lib.flux[0], 0.001 * np.arange(16), atol=1e-6)


def test_a_folder_without_templates_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"no \.lnw"):
        load_library(tmp_path)
    with pytest.raises(TemplateError, match="no such"):
        load_library(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TemplateError, match="not a template library"):
        load_library(tmp_path / "junk.npz")


@needs_shared
def test_a_users_folder_of_templates_classifies(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    assert SHARED is not None
    for name in ("sn1994D.lnw", "sn2004et.lnw", "sn2011dh.lnw"):
        shutil.copy(SHARED / name, tmp_path / name)
    own = configured_library({"classify": {"templates": str(tmp_path)}})
    assert set(own.sn.tolist()) == {"sn1994D", "sn2004et", "sn2011dh"}
    monkeypatch.setenv(LIBRARY_ENV, str(tmp_path))
    assert configured_library() is own
    monkeypatch.delenv(LIBRARY_ENV)
    assert configured_library() is load_library()
    i = int(np.flatnonzero(own.sn == "sn2004et")[10])
    v = classify_spectrum(template_spectrum(own, i, 0.03, snr=20.0), library=own)
    assert v.good and v.type == "II" and v.library_version == own.version
    assert v.z is not None and abs(v.z - 0.03) < 0.005
