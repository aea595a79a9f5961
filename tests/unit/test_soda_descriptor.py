"""The covering circle a SODA descriptor declares as CIRCLE's MAX."""

from __future__ import annotations

import pytest

from vo_archive.vo.soda_descriptor import _covering_circle


@pytest.mark.parametrize(("pairs", "expected"), [
    ([10.0, 0.0, 10.1, 0.0, 10.1, 0.1, 10.0, 0.1], (10.05, 0.05, 0.0707107)),
    ([359.95, 0.0, 0.05, 0.0, 0.05, 0.1, 359.95, 0.1], (0.0, 0.05, 0.0707107)),
    ([0.0, 89.9, 90.0, 89.9, 180.0, 89.9, 270.0, 89.9], (None, 90.0, 0.1)),
])
def test_covering_circle(pairs: list[float],
                         expected: tuple[float | None, float, float]) -> None:
    ra, dec, radius = _covering_circle(pairs)
    assert 0.0 <= ra < 360.0
    if expected[0] is not None:
        assert ra == pytest.approx(expected[0], abs=1e-6)
    assert dec == pytest.approx(expected[1], abs=1e-6)
    assert radius == pytest.approx(expected[2], abs=1e-6)
