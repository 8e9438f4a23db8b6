"""scripts/benchmark_training.py: our recipe's budgeted loop, its resume, the ratio, and CompressAI's absence."""

import importlib.util
import json

import pytest

from common.cli import run_cli
from tests.conftest import ROOT, make_image_splits


def _script():
    spec = importlib.util.spec_from_file_location(
        "benchmark_training", ROOT / "scripts" / "benchmark_training.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def data_dir(tmp_path):
    root = tmp_path / "data"
    make_image_splits(root / "bsds500", {"train": 4}, (80, 80))
    make_image_splits(root, {"kodak": 1}, (64, 64))
    return root


def _args(data_dir, out, budget: float) -> list[str]:
    return [
        "--data_dir", str(data_dir), "--output_dir", str(out), "--recipes", "ours", "--N", "8", "--M", "8",
        "--batch_size", "2", "--patch_size", "64", "--budget_cpu_hours", str(budget), "--eval_every_min", "0.02",
    ]  # fmt: skip


def test_ours_trains_to_its_cpu_budget_scores_real_bytes_and_resumes(data_dir, tmp_path):
    bench = _script()
    out = tmp_path / "bench"
    assert run_cli(bench.main, _args(data_dir, out, 0.001)) == 0  # 3.6 CPU seconds
    log = json.loads((out / "ours" / "log.json").read_text())
    assert log["cpu_s"] >= 3.6 and log["planned_steps"] >= 1
    points = log["points"]
    assert points[0]["cpu_s"] == 0 and len(points) >= 3
    assert all(p["bpp"] > 0 and p["file_bpp"] > p["bpp"] and p["rd_cost"] > p["bpp"] for p in points)
    steps = points[-1]["step"]
    result = tmp_path / "result.json"
    args = _args(data_dir, out, 0.002) + ["--result", str(result)]
    assert run_cli(bench.main, args) == 0  # a larger budget continues the run
    log = json.loads((out / "ours" / "log.json").read_text())
    assert log["cpu_s"] >= 7.2 and log["points"][-1]["step"] > steps
    assert [p["step"] for p in log["points"]] == sorted(p["step"] for p in log["points"])
    summary = json.loads(result.read_text())
    assert summary["curves"]["ours"] == log["points"] and summary["machine"]["cpu_cores"] >= 1
    ours = summary["recipes"]["ours"]
    last = log["points"][-1]
    assert ours["steps"] == last["step"] and ours["final_rd_cost"] == last["rd_cost"]
    assert ours["steps_per_cpu_s"] == pytest.approx(last["step"] / last["cpu_s"], rel=1e-3)
    assert result.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_to_reach_interpolates_between_scores():
    bench = _script()
    points = [{"cpu_s": 0, "rd_cost": 10.0}, {"cpu_s": 100, "rd_cost": 6.0}, {"cpu_s": 200, "rd_cost": 5.0}]
    assert bench.cpu_to_reach(points, 8.0) == pytest.approx(50.0)
    assert bench.cpu_to_reach(points, 5.0) == pytest.approx(200.0)
    assert bench.cpu_to_reach(points, 4.0) is None


def test_the_reference_recipes_say_how_to_install_compressai(data_dir, tmp_path, capsys):
    pytest.importorskip("torch")
    try:
        import compressai  # noqa: F401

        pytest.skip("CompressAI is installed here")
    except ImportError:
        pass
    bench = _script()
    args = _args(data_dir, tmp_path / "bench", 0.001)
    args[args.index("ours")] = "mbt2018-mean"
    assert run_cli(bench.main, args) == 2
    assert "requirements-benchmark.txt" in capsys.readouterr().err
