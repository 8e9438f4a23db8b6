"""RD arithmetic: interpolation at equal rate, no extrapolation, gaps over a range, Bjøntegaard deltas."""

import numpy as np

from common.rd import bd_metric, bd_rate, gap_over_range, interpolate


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


# --------------------------------------------------------------------------------------------
# Bjøntegaard deltas

_BPP = [0.1, 0.2, 0.4, 0.8, 1.6]
_PSNR = [26.0, 28.5, 31.2, 34.0, 37.1]


def test_bd_rate_of_a_curve_against_itself_is_zero():
    out = bd_rate(_curve(_BPP, _PSNR), _curve(_BPP, _PSNR))
    assert abs(out["value"]) < 1e-12 and out["reason"] is None
    assert out["metric_range"] == (26.0, 37.1)
    assert abs(out["bpp_range"][0] - 0.1) < 1e-12 and abs(out["bpp_range"][1] - 1.6) < 1e-12


def test_bd_rate_of_rates_scaled_by_0_9_is_minus_10_percent():
    out = bd_rate(_curve(_BPP, _PSNR), _curve([0.9 * r for r in _BPP], _PSNR))
    assert abs(out["value"] - (-10.0)) < 1e-6
    back = bd_rate(_curve([0.9 * r for r in _BPP], _PSNR), _curve(_BPP, _PSNR))
    assert abs(back["value"] - 100.0 * (1 / 0.9 - 1)) < 1e-6


def test_bd_psnr_of_a_curve_shifted_by_one_db_is_plus_one():
    out = bd_metric(_curve(_BPP, _PSNR), _curve(_BPP, [p + 1.0 for p in _PSNR]), "psnr-rgb")
    assert abs(out["value"] - 1.0) < 1e-9
    assert np.allclose(out["bpp_range"], (0.1, 1.6), rtol=1e-12)


def test_bd_rate_uses_only_the_overlap_and_a_higher_curve_saves_rate():
    # test is 1 dB better everywhere, measured over a narrower range
    test = _curve(_BPP[1:4], [p + 1.0 for p in _PSNR[1:4]])
    out = bd_rate(_curve(_BPP, _PSNR), test)
    assert out["value"] < 0
    assert out["metric_range"] == (29.5, 35.0)


def test_lower_is_better_metrics_are_handled():
    anchor = {"name": "a", "results": {"bpp": _BPP, "lpips": [0.5, 0.4, 0.3, 0.2, 0.1]}}
    worse = {"name": "t", "results": {"bpp": [2 * r for r in _BPP], "lpips": [0.5, 0.4, 0.3, 0.2, 0.1]}}
    assert abs(bd_rate(anchor, worse, "lpips")["value"] - 100.0) < 1e-6
    shifted = {"name": "t", "results": {"bpp": _BPP, "lpips": [v + 0.05 for v in [0.5, 0.4, 0.3, 0.2, 0.1]]}}
    assert abs(bd_metric(anchor, shifted, "lpips")["value"] - 0.05) < 1e-9


def test_points_off_the_rd_front_are_dropped():
    # a costlier point with lower PSNR (0.5 bpp, 30 dB) and an unsorted input must not change the result
    noisy = _curve([0.8, 0.1, 0.5, 0.2, 1.6, 0.4], [34.0, 26.0, 30.0, 28.5, 37.1, 31.2])
    out = bd_rate(_curve(_BPP, _PSNR), noisy)
    assert abs(out["value"]) < 1e-12 and out["dropped"] == (0, 1) and out["points"] == (5, 5)


def test_no_overlap_or_too_few_points_gives_none_with_a_reason():
    far = _curve([2.0, 3.0], [40.0, 42.0])
    for fn in (bd_rate, bd_metric):
        out = fn(_curve(_BPP, _PSNR), far)
        assert out["value"] is None and "overlap" in out["reason"]
        out = fn(_curve(_BPP, _PSNR), _curve([0.3], [30.0]))
        assert out["value"] is None and "at least 2" in out["reason"]
        out = fn(_curve(_BPP, _PSNR), _curve(_BPP, _PSNR), "lpips")
        assert out["value"] is None and "lpips" in out["reason"]
