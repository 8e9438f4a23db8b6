"""scripts/rd_gap.py: the gap at equal bpp, and one-line errors for files that are not curves."""

import json
import sys

import pytest

from common.cli import run_cli
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import rd_gap  # noqa: E402


def _curve(tmp_path, name, bpp, psnr):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "results": {"bpp": bpp, "psnr-rgb": psnr}}))
    return path


def test_gap_is_interpolated_at_equal_bpp(tmp_path, capsys):
    a = _curve(tmp_path, "a", [0.1, 0.5], [25.0, 31.0])
    b = _curve(tmp_path, "b", [0.2, 0.6], [24.0, 28.0])
    assert run_cli(rd_gap.main, [str(a), str(b), "--range", "0.1", "1.0"]) == 0
    out = capsys.readouterr().out
    # overlap 0.2-0.5: a is 26.5 and 31, b is 24 and 27, so the gap runs from +2.5 to +4
    assert "over 0.200-0.500 bpp" in out and "min +2.500 (at 0.200 bpp), max +4.000" in out
    # and the Bjøntegaard averages of a against b: a needs fewer bits at equal PSNR
    from common.rd import bd_rate

    value = bd_rate(json.loads(b.read_text()), json.loads(a.read_text()))["value"]
    assert value < 0 and f"BD-rate {value:+.1f}% and BD-psnr-rgb +" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"curves": []}, "summary.json holds several"),
        ({"results": {"bpp": [0.1], "kid": [0.2]}}, "has no 'psnr-rgb'; it has: kid"),
        ([1, 2], "not a CompressAI results file"),
        ({"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30.0]}}, "'psnr-rgb' has 1 values for 2 bpp values"),
    ],
)
def test_a_file_that_is_not_a_curve_is_a_one_line_error(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    good = _curve(tmp_path, "good", [0.1, 0.5], [25.0, 31.0])
    assert run_cli(rd_gap.main, [str(bad), str(good)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_empty_range_is_a_usage_error(tmp_path):
    good = _curve(tmp_path, "good", [0.1, 0.5], [25.0, 31.0])
    with pytest.raises(SystemExit) as exit_info:
        rd_gap.main([str(good), str(good), "--range", "0.5", "0.1"])
    assert exit_info.value.code == 2


def test_values_at_a_rate_and_at_a_multiple_of_it(tmp_path, capsys):
    """HiFiC's claim, read off two curves: a at b against b at 2b; lower is better for LPIPS."""
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"name": "a", "results": {"bpp": [0.1, 0.3], "lpips": [0.3, 0.1]}}))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"name": "b", "results": {"bpp": [0.2, 0.6], "lpips": [0.25, 0.05]}}))
    argv = [str(a), str(b), "--metric", "lpips", "--at", "0.1", "0.2", "--rate_factor", "2"]
    assert run_cli(rd_gap.main, argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "lpips: a at 0.1 bpp 0.3000, b at 0.2 bpp 0.2500: b better"
    assert lines[1] == "lpips: a at 0.2 bpp 0.2000, b at 0.4 bpp 0.1500: b better"
    assert run_cli(rd_gap.main, argv[:4] + ["--at", "0.35", "--rate_factor", "1"]) == 1  # a ends at 0.3
    assert "outside a curve's measured range" in capsys.readouterr().out
