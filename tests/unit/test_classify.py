"""Classification of every product kind of the PESSTO data model (§4)."""

from __future__ import annotations

from typing import Any

import pytest

from vo_archive.ingest.classify import (
    ClassificationError,
    classify,
    split_product_key,
)

E, S = "EFOSC", "SOFI"
SCI = {"OBJECT": "SN2018abc"}

# file name, FILETYPE, instrument, extra cards,
# expected (mode, category, level, product_type, phase3, prodcatg)
Expected = tuple[str, str, str, str, str, str | None]
CASES: list[tuple[str, int, str, dict[str, Any], Expected]] = [
    # EFOSC2 spectroscopy
    ("bias_20180327_Gr13_Free_58737.fits", 21201, E, {"OBJECT": "BIAS"},
     ("spectroscopy", "calib", "final", "bias", "no", None)),
    ("flat_20180327_Gr13_Free_slit1.0_100409189_58737.fits", 21102, E,
     {"OBJECT": "FLAT"},
     ("spectroscopy", "calib", "intermediate", "flat", "no", None)),
    ("nflat_20180327_Gr13_Free_slit1.0_100409189_58737.fits", 21203, E,
     {"OBJECT": "FLAT"},
     ("spectroscopy", "calib", "final", "normalised_flat", "no", None)),
    ("arc_SN2018abc_20180327_Gr13_Free_slit1.0_58737_1.fits", 22104, E,
     {"OBJECT": "LAMP"},
     ("spectroscopy", "calib", "intermediate", "arc", "no", None)),
    ("tSN2018abc_20180327_Gr13_Free_slit1.0_58737_1.fits", 22106, E, SCI,
     ("spectroscopy", "science", "intermediate", "wavecal_2d", "no", None)),
    ("tSN2018abc_20180327_Gr13_Free_slit1.0_58737_1_ex.fits", 22107, E, SCI,
     ("spectroscopy", "science", "intermediate", "extracted_1d", "no", None)),
    ("tLTT3864_20180327_Gr13_Free_slit1.0_58737_1_clean.fits", 22107, E,
     {"OBJECT": "LTT3864"},
     ("spectroscopy", "calib", "intermediate", "extracted_1d", "no", None)),
    ("atmo_tLTT3864_20180327_Gr13_Free_slit1.0_58737_1_ex.fits", 21211, E,
     {"OBJECT": "LTT3864"},
     ("spectroscopy", "calib", "final", "telluric_model", "no", None)),
    ("sens_20180327_Gr11_Free_ltt3864_58737_1.fits", 21212, E, {"OBJECT": "LTT3864"},
     ("spectroscopy", "calib", "final", "sensitivity", "no", None)),
    ("tSN2018abc_20180327_Gr13_Free_slit1.0_58737_1_f.fits", 22208, E, SCI,
     ("spectroscopy", "science", "final", "fluxcal_1d", "no", None)),
    ("tSN2018abc_20180327_Gr13_Free_slit1.0_58737_1_e.fits", 22210, E, SCI,
     ("spectroscopy", "science", "final", "telluric_corrected_1d", "no", None)),
    ("tSN2018abc_20180327_Gr13_Free_slit1.0_58737_1_2df.fits", 22209, E, SCI,
     ("spectroscopy", "science", "final", "fluxcal_2d", "no", None)),
    ("SN2018abc_20180327_Gr13_Free_slit1.0_58737_1_sb.fits", 22210, E, SCI,
     ("spectroscopy", "science", "final", "telluric_corrected_1d", "yes",
      "SCIENCE.SPECTRUM")),
    ("SN2018abc_20180327_Gr13_Free_slit1.0_58737_1_si.fits", 22209, E, SCI,
     ("spectroscopy", "science", "final", "fluxcal_2d", "yes", "ANCILLARY.2DSPECTRUM")),
    # an EFOSC standard observed as science (DPR TYPE = STD) is a calibration
    ("tEG274_20180327_Gr13_Free_slit1.0_58737_1_f.fits", 22208, E,
     {"OBJECT": "EG274", "HIERARCH ESO DPR TYPE": "STD"},
     ("spectroscopy", "calib", "final", "fluxcal_1d", "no", None)),
    # EFOSC2 imaging
    ("bias_20180327_58737.fits", 11201, E, {"OBJECT": "BIAS"},
     ("imaging", "calib", "final", "bias", "no", None)),
    ("flat_20180327_V641_58737.fits", 11202, E, {"OBJECT": "SKY,FLAT"},
     ("imaging", "calib", "final", "flat", "no", None)),
    ("fringing_20180327_i705.fits", 11231, E, {"OBJECT": "FRINGE"},
     ("imaging", "calib", "final", "fringing", "no", None)),
    ("SN2018abc_20180327_V641_58737_1.fits", 12204, E, SCI,
     ("imaging", "science", "final", "prereduced", "flagged", "SCIENCE.IMAGE")),
    ("SN2018abc_20180327_i705_58737_1_fr.fits", 12205, E, SCI,
     ("imaging", "science", "final", "fringe_corrected", "flagged", "SCIENCE.IMAGE")),
    ("acq_SN2018abc_20180327_V641_58737_1.fits", 12204, E, SCI,
     ("imaging", "science", "final", "acquisition", "flagged", "SCIENCE.IMAGE")),
    # SOFI spectroscopy
    ("flat_20180327_GB_58737.fits", 41102, S, {"OBJECT": "FLAT"},
     ("spectroscopy", "calib", "intermediate", "flat", "no", None)),
    ("nflat_20180327_GB_58737.fits", 41203, S, {"OBJECT": "FLAT"},
     ("spectroscopy", "calib", "final", "normalised_flat", "no", None)),
    ("arc_20180327_GB_58737.fits", 41104, S, {"OBJECT": "LAMP"},
     ("spectroscopy", "calib", "intermediate", "arc", "no", None)),
    ("SN2018abc_1_20180327_GB_58737_0.fits", 42104, S, SCI,
     ("spectroscopy", "science", "intermediate", "prereduced", "no", None)),
    ("SN2018abc_1_20180327_GB_58737_0_1.fits", 42115, S, SCI,
     ("spectroscopy", "science", "intermediate", "pair_subtracted", "no", None)),
    ("SN2018abc_20180327_GB_merge_58737_1.fits", 42116, S, SCI,
     ("spectroscopy", "science", "intermediate", "merged", "no", None)),
    ("SN2018abc_20180327_GB_merge_58737_1_ex.fits", 42107, S, SCI,
     ("spectroscopy", "science", "intermediate", "extracted_1d", "no", None)),
    ("senstel_20180327_GB_GBF_1.fits", 42107, S, {"OBJECT": "Hip053982"},
     ("spectroscopy", "calib", "intermediate", "extracted_1d", "no", None)),
    ("sens_LTT3218_20180327_GB_merge_58737_1_f.fits", 42208, S, {"OBJECT": "LTT3218"},
     ("spectroscopy", "calib", "final", "fluxcal_1d", "no", None)),
    ("SN2018abc_20180327_GB_merge_58737_1_f.fits", 42208, S, SCI,
     ("spectroscopy", "science", "final", "fluxcal_1d", "no", None)),
    ("SN2018abc_20180327_GB_merge_58737_1_sc.fits", 42208, S, SCI,
     ("spectroscopy", "science", "final", "fluxcal_1d", "no", None)),
    ("SN2018abc_20180327_GB_merge_58737_1_2df.fits", 42209, S, SCI,
     ("spectroscopy", "science", "final", "fluxcal_2d", "no", None)),
    ("SN2018abc_20180327_GB_merge_58737_1_sb.fits", 42208, S, SCI,
     ("spectroscopy", "science", "final", "fluxcal_1d", "yes", "SCIENCE.SPECTRUM")),
    ("SN2018abc_20180327_GB_merge_58737_1_si.fits", 42209, S, SCI,
     ("spectroscopy", "science", "final", "fluxcal_2d", "yes", "ANCILLARY.2DSPECTRUM")),
    # a telluric standard observed as OBJECT is still a calibration
    ("Hip053982_20180327_GB_merge_58737_1_ex.fits", 42107, S, {"OBJECT": "Hip053982"},
     ("spectroscopy", "calib", "intermediate", "extracted_1d", "no", None)),
    # SOFI imaging
    ("flat_20180327_H_58737.fits", 31202, S, {"OBJECT": "FLAT"},
     ("imaging", "calib", "final", "flat", "no", None)),
    ("illum_20180327_H_58737.fits", 31213, S, {"OBJECT": "ILLUM"},
     ("imaging", "calib", "final", "illumination", "no", None)),
    ("sky_SN2018abc_20180327_H_58737_1.fits", 31117, S, SCI,
     ("imaging", "calib", "intermediate", "sky", "no", None)),
    ("SN2018abc_20180327_H_58737_1.fits", 32104, S, SCI,
     ("imaging", "science", "intermediate", "prereduced", "no", None)),
    ("SN2018abc_20180327_H_58737_1_sky.fits", 32215, S, SCI,
     ("imaging", "science", "final", "sky_subtracted", "no", None)),
    ("SN2018abc_20180327_H_merge_58737_1.fits", 32216, S, SCI,
     ("imaging", "science", "final", "merged", "yes", "SCIENCE.IMAGE")),
    ("SN2018abc_20180327_H_merge_58737_1.weight.fits", 31214, S, SCI,
     ("imaging", "calib", "final", "weight_map", "yes", "ANCILLARY.WEIGHTMAP")),
]


@pytest.mark.parametrize(("filename", "filetype", "instrument", "cards", "expected"),
                         CASES, ids=[c[0] for c in CASES])
def test_classification_of_each_kind(filename: str, filetype: int, instrument: str,
                                     cards: dict[str, Any],
                                     expected: tuple[str, ...]) -> None:
    header = {"INSTRUME": instrument, "FILETYPE": filetype, **cards}
    c = classify(filename, header)
    got = (c.mode.value, c.category.value, c.level.value, c.product_type,
           c.phase3.value, c.prodcatg)
    assert got == expected
    assert c.instrument.value == instrument
    assert c.filetype == filetype
    assert c.description.startswith(f"{instrument} {c.mode.value}: ")


def test_raw_frames_are_classified_from_dpr_keywords() -> None:
    c = classify("EFOSC.2018-03-28T07:15:31.333.fits", {
        "INSTRUME": "EFOSC", "HIERARCH ESO DPR CATG": "SCIENCE",
        "ESO DPR CATG": "SCIENCE", "ESO DPR TYPE": "OBJECT", "ESO DPR TECH": "SPECTRUM",
    })
    assert (c.level.value, c.category.value, c.mode.value) == \
        ("raw", "science", "spectroscopy")
    c = classify("SOFI.2018-03-28T07:15:31.333.fits", {
        "INSTRUME": "SOFI", "ESO DPR CATG": "CALIB", "ESO DPR TYPE": "FLAT",
        "ESO DPR TECH": "IMAGE"})
    assert (c.level.value, c.category.value, c.mode.value) == \
        ("raw", "calib", "imaging")


@pytest.mark.parametrize(("filename", "header", "reason"), [
    ("x.fits", {"FILETYPE": 22210}, "no INSTRUME"),
    ("x.fits", {"INSTRUME": "FORS2", "FILETYPE": 22210}, "unknown instrument"),
    ("x.fits", {"INSTRUME": "EFOSC"}, "no FILETYPE"),
    ("x.fits", {"INSTRUME": "EFOSC", "FILETYPE": 99999}, "not a PESSTO product code"),
    ("x.fits", {"INSTRUME": "EFOSC", "FILETYPE": 42208}, "SOFI code"),
    ("x.fits", {"INSTRUME": "SOFI", "FILETYPE": 42299}, "unknown product type"),
])
def test_unclassifiable_files(
    filename: str, header: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ClassificationError, match=reason):
        classify(filename, header)


@pytest.mark.parametrize(("filename", "key", "rmjd"), [
    ("tSN2018abc_20180327_Gr13_Free_slit1.0_58737_1_e.fits",
     "tSN2018abc_20180327_Gr13_Free_slit1.0_1_e", 58737),
    ("bias_20180327_58737.fits", "bias_20180327", 58737),
    ("SN2018abc_20180327_H_merge_58737_1.weight.fits",
     "SN2018abc_20180327_H_merge_1.weight", 58737),
    ("tSN2018abc_20180327_Gr13_Free_slit1.0_1_f.fits",
     "tSN2018abc_20180327_Gr13_Free_slit1.0_1_f", None),
    ("flat_20180327_Gr13_Free_slit1.0_100409189_58737.fits",
     "flat_20180327_Gr13_Free_slit1.0_100409189", 58737),
    ("fringing_20180327_i705.fits", "fringing_20180327_i705", None),
])
def test_product_key_drops_the_reduction_mjd(filename: str, key: str,
                                             rmjd: int | None) -> None:
    assert split_product_key(filename) == (key, rmjd)
