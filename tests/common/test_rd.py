"""RD arithmetic: interpolation at equal rate, no extrapolation, gaps over a range."""

import numpy as np

from common.rd import gap_over_range, interpolate


def _curve(bpp, psnr):
    return {"name": "c", "results": {"bpp": bpp, "psnr-rgb": psnr}}


def test_interpolation_is_linear_and_does_not_extrapolate():
    out = interpolate([0.1, 0.3], [20.0, 24.0], np.array([0.05, 0.2, 0.3, 0.4]))
    assert np.isnan(out[0]) and np.isnan(out[3])
    assert out[1] == 22.0 and out[2] == 24.0


def test_gap_over_range_uses_only_the_overlap():
    a = _curve([0.1, 0.5], [25.0, 29.0])
    b = _curve([0.2, 0.8], [23.0, 29.0])
    gap = gap_over_range(a, b, "psnr-rgb", 0.0, 1.0)
    assert gap["overlap"] == (0.2, 0.5)
    # at 0.2: a = 26, b = 23 -> +3 ; at 0.5: a = 29, b = 26 -> +3
    assert abs(gap["min_gap"] - 3.0) < 1e-9 and abs(gap["max_gap"] - 3.0) < 1e-9
    assert gap_over_range(a, _curve([0.6, 0.9], [1, 2]), "psnr-rgb", 0.1, 0.5)["overlap"] is None
