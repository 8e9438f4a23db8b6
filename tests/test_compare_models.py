"""compare_models.py: every output on two small images, the cache, bad input, and report.html in Chromium."""

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import compare_models
from common import baselines, rd, report, report_html
from common.cli import run_cli
from tests.conftest import ROOT, random_image

# LPIPS is there offline (common/lpips_weights.py): its figure and BD rows are part of every comparison.
FIGURES = ("rd_psnr", "rd_psnr_0-1bpp", "rd_ms_ssim", "rd_ms_ssim_db", "rd_lpips")
CODECS = ("jpeg420", "webp")


def compare_args(images: Path, out: Path, cache: Path, beta: Path) -> list[str]:
    return [
        "--beta_model_path",
        str(beta),
        "--dataset",
        str(images),
        "--codecs",
        *CODECS,
        "--no_fid",
        "--cache_dir",
        str(cache),
        "--output_dir",
        str(out),
        "--target_bpp",
        "0.5",
        "--quiet",
    ]


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_beta_path):
    """One full run on two 176 x 208 images (MS-SSIM needs 161 px): (args, output folder)."""
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(7)
    (root / "images").mkdir()
    for name in ("a", "b"):
        Image.fromarray(random_image(rng, 176, 208)).save(root / "images" / f"{name}.png")
    published = {"name": "paper X", "results": {"bpp": [0.2, 0.5, 1.0], "psnr-rgb": [26.0, 30.0, 34.0]}}
    (root / "paper.json").write_text(json.dumps(published))
    args = compare_args(root / "images", root / "out", root / "cache", tiny_beta_path)
    args += ["--results", str(root / "paper.json")]
    assert run_cli(compare_models.main, args) == 0
    return args, root / "out"


def test_every_output_is_written(compared):
    _, out = compared
    for stem in FIGURES:
        for ext in ("png", "svg"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"
    assert sorted(p.name for p in (out / "crops").glob("*.png")) == ["a.png", "b.png"]
    summary = json.loads((out / "summary.json").read_text())
    names = [c["name"] for c in summary["curves"]]
    assert names == ["beta_vae_gan", "Pillow JPEG 4:2:0", "WebP", "paper X"]
    assert [c["kind"] for c in summary["curves"]] == ["model", "codec", "codec", "published"]
    beta = summary["curves"][0]["results"]
    assert len(beta["bpp"]) == 1 and beta["bpp"][0] > 0 and "ms-ssim-db" in beta
    assert "--beta_model_path" in summary["command"]
    # the matched points are the closest settings to the target and say what they are
    for side in summary["side_by_side"]:
        assert [p["label"] for p in side["points"]] == ["beta_vae_gan", "Pillow JPEG 4:2:0", "WebP"]
        jpeg = side["points"][1]
        assert jpeg["setting"].startswith("quality ") and abs(jpeg["bpp"] - 0.5) < 0.5
    with open(out / "bd_rate.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    pairs = {(r["anchor"], r["test"], r["metric"]) for r in rows}
    assert ("Pillow JPEG 4:2:0", "WebP", "psnr-rgb") in pairs
    assert ("Pillow JPEG 4:2:0", "beta_vae_gan", "ms-ssim-rgb") in pairs
    assert ("Pillow JPEG 4:2:0", "paper X", "psnr-rgb") in pairs  # overlaid curves are compared too
    assert ("Pillow JPEG 4:2:0", "WebP", "lpips") in pairs and "lpips" in beta
    webp_lpips = next(r for r in rows if r["test"] == "WebP" and r["metric"] == "lpips")
    assert webp_lpips["bd_rate_percent"] != "" and webp_lpips["note"] == ""
    assert 0 < float(webp_lpips["metric_low"]) < float(webp_lpips["metric_high"]) < 1
    webp = next(r for r in rows if r["test"] == "WebP" and r["metric"] == "psnr-rgb")
    assert float(webp["bd_rate_percent"]) < 0  # WebP beats JPEG 4:2:0 on these images
    assert float(webp["metric_low"]) < float(webp["metric_high"]) and webp["note"] == ""
    beta = next(r for r in rows if r["test"] == "beta_vae_gan" and r["metric"] == "psnr-rgb")
    assert beta["bd_rate_percent"] == "" and "at least 2 RD points" in beta["note"]  # one checkpoint
    md = (out / "bd_rate.md").read_text()
    assert "| Pillow JPEG 4:2:0 | WebP | psnr-rgb |" in md and "'hevc' is not among the curves" in md
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    assert page.count("<img") == len(FIGURES) + 2 + 2 * (1 + 3)  # figures, crops, sliders (no paper X)


def test_second_run_reads_every_cache(compared, monkeypatch, tmp_path):
    args, out = compared

    def fail(*a, **k):
        raise AssertionError("recomputed although cached")

    for name in CODECS:
        monkeypatch.setitem(baselines.CODECS, name, dataclasses.replace(baselines.CODECS[name], encode=fail))
    monkeypatch.setattr(report, "evaluate_checkpoint", fail)
    again = tmp_path / "again"
    args = [a if a != str(out) else str(again) for a in args]
    assert run_cli(compare_models.main, args) == 0
    first = json.loads((out / "summary.json").read_text())
    second = json.loads((again / "summary.json").read_text())
    assert second["curves"] == first["curves"] and second["side_by_side"] == first["side_by_side"]


def test_published_codec_sweeps_stand_in_for_the_sweep_cache(compared, monkeypatch, tmp_path):
    """--codec_results: the run_baselines.py JSONs of the same sweep key are used, nothing is encoded."""
    args, out = compared
    cache = Path(args[args.index("--cache_dir") + 1])
    shutil.copytree(cache, tmp_path / "cache")
    shutil.rmtree(tmp_path / "cache" / "codecs")  # model points and crops stay cached
    first = json.loads((out / "summary.json").read_text())
    (tmp_path / "pub").mkdir()
    for curve in first["curves"]:
        if curve["kind"] == "codec":
            published = {k: v for k, v in curve.items() if k not in ("kind", "id")}
            (tmp_path / "pub" / f"{curve['id']}.json").write_text(json.dumps(published))

    def fail(*a, **k):
        raise AssertionError("a codec sweep ran although a published one matched")

    for name in CODECS:
        monkeypatch.setitem(baselines.CODECS, name, dataclasses.replace(baselines.CODECS[name], encode=fail))
    swap = {str(cache): str(tmp_path / "cache"), str(out): str(tmp_path / "out")}
    again = [swap.get(a, a) for a in args] + ["--codec_results", str(tmp_path / "pub")]
    assert run_cli(compare_models.main, again) == 0
    second = json.loads((tmp_path / "out" / "summary.json").read_text())
    for curve in first["curves"] + second["curves"]:
        curve.pop("point_dirs", None)  # where the model points are cached: the copied cache
    assert second["curves"] == first["curves"]


def test_bad_checkpoints_give_one_line_and_exit_2(tmp_path, tiny_beta_path, capsys):
    """A non-checkpoint file, then the wrong family through the real script run from another folder."""
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    assert run_cli(compare_models.main, ["--vq_model_path", str(junk), "--codecs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: --vq_model_path") and "cannot read checkpoint" in err[0]
    )
    r = subprocess.run(
        [sys.executable, str(ROOT / "compare_models.py"), "--vq_model_path", str(tiny_beta_path), "--codecs"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --vq_model_path")
    assert "holds a beta_vae_gan model, but a vq_vae_gan model was expected" in lines[0]


def test_unknown_codec_crop_image_and_results_are_one_line_errors(compared, capsys, tmp_path):
    args, _ = compared
    assert run_cli(compare_models.main, args + ["--codecs", "nosuchcodec"]) == 2
    assert "unknown codec 'nosuchcodec'" in capsys.readouterr().err
    assert run_cli(compare_models.main, args + ["--crop_images", "zzz"]) == 2
    assert "--crop_images: 'zzz'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "results": {"psnr-rgb": [30]}}')
    assert run_cli(compare_models.main, args + ["--results", str(bad)]) == 2
    assert "not a CompressAI results file" in capsys.readouterr().err
    bad.write_text('{"name": "x", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [30]}}')
    assert run_cli(compare_models.main, args + ["--results", str(bad)]) == 2
    assert "'psnr-rgb' has 1 values for 2 bpp values" in capsys.readouterr().err


def test_missing_dataset_falls_back_to_sample_photos(tmp_path):
    args = SimpleNamespace(dataset="kodak", data_dir=str(tmp_path / "nodata"), limit=2)
    files, name, notes = report.resolve_files(args, tmp_path / "cache")
    assert [f.name for f in files] == ["astronaut.png", "chelsea.png"]
    assert name == "sample_images" and len(notes) == 1 and "scikit-image" in notes[0]
    assert np.asarray(Image.open(files[0])).shape == (512, 512, 3)
    args.dataset = "nosuchset"  # an unknown name is a mistake, not a reason to substitute photos
    with pytest.raises(report.DataError):
        report.resolve_files(args, tmp_path / "cache")


def test_report_renders_in_headless_chromium(compared, tmp_path):
    """Every <img> decodes (the page's own check sets data-images-loaded) and the page is not blank."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("VAEGAN_REQUIRE_CHROMIUM"):
            pytest.fail("VAEGAN_REQUIRE_CHROMIUM is set but chromium is not installed")
        pytest.skip("chromium not installed (scripts/test.sh installs it)")
    _, out = compared
    url = (out / "report.html").resolve().as_uri()
    base = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
    ]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert 'data-images-loaded="all"' in dom.stdout, dom.stderr[-2000:]
    images = len(FIGURES) + 2 + 2 * (1 + 3)  # figures, crops, sliders: as test_every_output_is_written
    assert f'data-images-total="{images}"' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1280,2000", url], capture_output=True, timeout=180
    )
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500


def test_vq_checkpoints_give_one_point_per_residual_stage(tiny_beta_path):
    """Same points (and names) as vq_vae_gan/evaluate.py --stages 1 2; other families give one."""
    from common.checkpoint import load_model
    from vq_vae_gan.model import VQVAEGAN, VQVAEGANConfig

    vq = VQVAEGAN(
        VQVAEGANConfig(num_embeddings=16, embedding_dim=8, channels=8, disc_channels=4, downsample=4)
    )
    points = report.rate_points(Path("run/best.pth"), vq)
    assert [name for _, name in points] == ["best-stages1", "best-stages2"]
    assert [view.coded_layers() for view, _ in points] == [1, 2]
    beta = load_model(tiny_beta_path)
    assert report.rate_points(tiny_beta_path, beta) == [(beta, "tiny_beta")]


def test_bd_rows_put_the_models_first():
    curve = lambda name, kind, shift: {  # noqa: E731
        "id": name,
        "name": name,
        "kind": kind,
        "results": {"bpp": [0.1, 0.2, 0.4, 0.8], "psnr-rgb": [v + shift for v in (25.0, 27.0, 29.0, 31.0)]},
    }
    curves = [curve("hevc", "codec", 1), curve("webp", "codec", 0.5), curve("ours", "model", 0)]
    rows, _ = rd.bd_rows(curves, ["hevc"])
    assert [r["test"] for r in rows] == ["ours", "webp"] and rows[0]["kind"] == "model"


def test_the_report_says_which_images_it_shows(compared):
    _, out = compared
    assert "Every image of the set (a.png, b.png)." in (out / "report.html").read_text()
    files = [Path(f"kodim{i:02d}.png") for i in range(1, 25)]
    assert report.choose_images(files, ["all"]) == files
    sets = [(f.name, None, []) for f in report.choose_images(files, None)]
    assert report_html.images_shown(sets, 24).startswith("2 of the 24 images (kodim01.png, kodim02.png)")
    assert "--crop_images all" in report_html.images_shown(sets, 24)


def test_spread_keeps_both_ends_and_spaces_the_rest():
    assert baselines.spread(range(14), 5) == [0, 3, 6, 10, 13]
    assert baselines.spread([1, 2, 3], 5) == [1, 2, 3] and baselines.spread([1, 2], None) == [1, 2]


def test_rate_points_thins_every_curve_and_keys_its_own_cache(compared, tmp_path, capsys):
    """The first command's quick look: fewer points per codec and per checkpoint (and timed steps)."""
    from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
    from common.checkpoint import export_model

    args, _ = compared
    out = tmp_path / "out"
    variable = tmp_path / "variable.pth"  # four rate points
    export_model(BetaVAEGAN(BetaVAEGANConfig(N=16, M=24, disc_channels=8, rate_levels=4)).eval(), variable)
    thin = [a if a != str(compared[1]) else str(out) for a in args] + ["--rate_points", "3"]
    thin[thin.index("--beta_model_path") + 1] = str(variable)
    assert run_cli(compare_models.main, thin) == 0
    assert "time: " in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    full = json.loads((compared[1] / "summary.json").read_text())
    model = next(c for c in summary["curves"] if c["kind"] == "model")
    assert model["points"] == ["variable-q1", "variable-q3", "variable-q4"]
    for curve in summary["curves"]:
        if curve["kind"] == "codec":
            assert len(curve["results"]["bpp"]) == 3
            other = next(c for c in full["curves"] if c["id"] == curve["id"])
            assert len(other["results"]["bpp"]) > 3 and curve["sweep"]["key"] != other["sweep"]["key"]
    assert summary["seconds"] and all(v >= 0 for v in summary["seconds"].values())
    assert run_cli(compare_models.main, thin[:-1] + ["1"]) == 2
    assert "--rate_points must be at least 2" in capsys.readouterr().err
