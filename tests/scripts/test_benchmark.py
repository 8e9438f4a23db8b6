"""scripts/benchmark.py: runs on a tiny model and writes a complete, consistent JSON report."""

import importlib.util
import json

import pytest
import torch

from common.cli import run_cli
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def bench_script():
    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)  # the script sets the thread count of this process


def test_benchmark_writes_a_consistent_report(bench_script, tiny_beta_path, tmp_path):
    out = tmp_path / "bench.json"
    argv = [
        "--model_path", str(tiny_beta_path), "--devices", "cpu", "--threads", "1",
        "--width", "96", "--height", "64", "--data_dir", str(tmp_path / "none"),
        "--repeats", "2", "--warmup", "0", "--train_size", "64", "--train_batch", "2",
        "--output", str(out),
    ]  # fmt: skip
    assert bench_script.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["threads"] == 1 and report["machine"]["torch"] == torch.__version__
    assert report["machine"]["cpu"] and report["command"].endswith(f"--output {out}")
    assert report["image"].startswith("synthetic") and report["image_size"] == [96, 64]
    (row,) = report["results"]
    assert row["family"] == "beta_vae_gan" and row["device"] == "cpu" and row["model"] == str(tiny_beta_path)
    assert len(row["runs"]["encode_s"]) == 2 and len(row["train_runs_s"]) == 2
    # the parts add up; the coder saw every latent symbol: y (M x H/16 x W/16), z (N x H/64 x W/64)
    assert 0 < row["encode_entropy_s"] < row["encode_s"] and 0 < row["decode_entropy_s"] < row["decode_s"]
    assert abs(row["encode_network_s"] + row["encode_entropy_s"] - row["encode_s"]) < 1e-3
    assert row["symbols_per_image"] == 24 * 4 * 8 + 16 * 1 * 2  # padded to 64 x 128
    assert row["entropy_encode_symbols_per_s"] > 0 and row["encode_mpix_per_s"] > 0
    assert row["train_images_per_s"] > 0 and row["stream_bpp"] > 0 and row["psnr_db"] > 0
    # the wrappers that timed the coder are gone again
    from common.checkpoint import load_model

    model = load_model(tiny_beta_path)
    assert all("compress" not in vars(m) for m in model.entropy_models())


def test_unknown_family_is_a_one_line_error(bench_script, capsys):
    assert run_cli(bench_script.main, ["--families", "nope", "--skip_train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown family 'nope'") and err.count("\n") == 1


def test_realism_settings_are_timed_one_row_each_on_the_same_file(
    bench_script, tiny_beta_path, tmp_path, capsys
):
    from common.checkpoint import export_model, load_model
    from tests.conftest import realism_from

    export_model(realism_from(load_model(tiny_beta_path)), tmp_path / "realism.pth")
    out = tmp_path / "bench.json"
    argv = ["--model_path", str(tmp_path / "realism.pth"), "--devices", "cpu", "--threads", "1", "--width", "96",
            "--height", "64", "--data_dir", str(tmp_path / "none"), "--repeats", "1", "--warmup", "0",
            "--skip_train", "--realism", "0", "1", "--output", str(out)]  # fmt: skip
    assert bench_script.main(argv) == 0
    faithful, realistic = json.loads(out.read_text())["results"]
    assert (faithful["realism"], realistic["realism"]) == (0.0, 1.0)
    assert faithful["stream_bpp"] == realistic["stream_bpp"] and faithful["psnr_db"] != realistic["psnr_db"]
    argv[1] = str(tiny_beta_path)
    assert run_cli(bench_script.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --realism: ") and "no realism decoder" in err and err.count("\n") == 1
