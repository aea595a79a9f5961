"""Pure functions of the pages: the search box, coordinates, previews, the viewer."""

from __future__ import annotations

import numpy as np
import pytest

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.web.pages.objectpage import sexagesimal
from vo_archive.web.pages.search import parse_search
from vo_archive.web.pages.viewer import line_position, normalise, thin
from vo_archive.web.previews import readable


@pytest.mark.parametrize(("text", "radius", "expected"), [
    ("SN 2012fr", None, ("SN 2012fr", None, None, 10.0)),
    ("199.D-0143(G)", None, ("199.D-0143(G)", None, None, 10.0)),
    ("10:30:00 -20:15:00", None, ("10:30:00 -20:15:00", 157.5, -20.25, 10.0)),
    ("10 30 00.0 +20 15 00 30", None, ("10 30 00.0 +20 15 00 30", 157.5, 20.25, 30.0)),
    ("157.5 -20.25", "60", ("157.5 -20.25", 157.5, -20.25, 60.0)),
    ("157.5, -20.25, 5", None, ("157.5, -20.25, 5", 157.5, -20.25, 5.0)),
])
def test_parse_search(text: str, radius: str | None,
                      expected: tuple[str, float | None, float | None, float]) -> None:
    s = parse_search(text, radius)
    assert s.text == expected[0]
    assert s.radius_arcsec == expected[3]
    if expected[1] is None:
        assert not s.is_position
    else:
        assert s.ra == pytest.approx(expected[1])
        assert s.dec == pytest.approx(expected[2])


@pytest.mark.parametrize(("text", "radius"), [
    ("", None), ("   ", None), ("400 10", None), ("10 95", None),
    ("10 20", "0"), ("10 20", "7200"), ("10 20", "wide"),
])
def test_parse_search_refuses(text: str, radius: str | None) -> None:
    with pytest.raises(UsageFault):
        parse_search(text, radius)


@pytest.mark.parametrize(("ra", "dec", "expected"), [
    (0.0, 0.0, ("00:00:00.00", "+00:00:00.0")),
    (157.5, -20.25, ("10:30:00.00", "-20:15:00.0")),
    (301.160798, -75.383515, ("20:04:38.59", "-75:23:00.7")),
    (359.9999999, -0.00001, ("00:00:00.00", "-00:00:00.0")),
    (15.0, 89.99999999, ("01:00:00.00", "+90:00:00.0")),
])
def test_sexagesimal(ra: float, dec: float, expected: tuple[str, str]) -> None:
    assert sexagesimal(ra, dec) == expected


@pytest.mark.parametrize(("shape", "expected"), [
    ((100, 100), (100, 100)),      # an image stays
    ((300, 100), (300, 100)),      # 3:1 stays
    ((475, 16), (128, 475)),       # a standing 2D spectrum lies down, 475:128
    ((10, 2000), (500, 2000)),     # a lying one is widened to 4:1
])
def test_readable_previews(shape: tuple[int, int], expected: tuple[int, int]) -> None:
    img = np.arange(shape[0] * shape[1], dtype=float).reshape(shape)
    out = readable(img)
    assert out.shape == expected
    if shape[0] > 4 * shape[1]:
        # the dispersion (rows of the standing frame) runs along x, same direction
        assert list(out[0]) == list(img[:, 0])


@pytest.mark.parametrize(("rest", "z", "v", "rest_frame", "expected"), [
    (6562.8, 0.0, 0.0, False, 6562.8),
    (6562.8, 0.1, 0.0, False, 7219.08),
    (6355.0, 0.0, 11000.0, True, 6355.0 * (1 - 11000 / 299792.458)),
    (6355.0, 0.05, 11000.0, False, 6355.0 * (1 - 11000 / 299792.458) * 1.05),
    (6355.0, 0.05, 0.0, True, 6355.0),
])
def test_line_position(rest: float, z: float, v: float, rest_frame: bool,
                       expected: float) -> None:
    assert line_position(rest, z, v, rest_frame) == pytest.approx(expected)


def test_thin_and_normalise() -> None:
    wave = np.linspace(3000.0, 9000.0, 10_001)
    flux = np.full_like(wave, 4e-16)
    flux[5] = np.nan
    w, f = thin(wave, flux, limit=4000)
    assert w.dtype == np.float32 and len(w) <= 4000 and np.isfinite(f).all()
    assert normalise(f) == pytest.approx(np.ones_like(f))
    assert normalise(np.zeros(3, dtype=np.float32)).tolist() == [0.0, 0.0, 0.0]
