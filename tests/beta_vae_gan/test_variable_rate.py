"""Variable-rate β-VAE-GAN: one checkpoint, any quality, the quality in the file, --bpp rate control."""

import struct

import numpy as np
import pytest
import torch

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common import zoo
from common.bitstream import pack, unpack
from common.checkpoint import export_model, load_model
from common.codec import compress_image, compress_to_bpp, decompress_bytes
from common.errors import CheckpointError, CorruptFileError, VAEGANError
from common.metrics import file_bpp
from common.registry import family_code
from tests.conftest import TINY_BETA, make_image_splits, random_image, run_codec, tiny_train_config


def smooth_image(rng, h=96, w=80) -> np.ndarray:
    """Low-frequency content, so the rate depends smoothly on the quality."""
    base = random_image(rng, h // 8 + 1, w // 8 + 1).astype(np.float32)
    up = torch.nn.functional.interpolate(
        torch.from_numpy(base).permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False
    )
    return up[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def variable_path(tmp_path_factory):
    torch.manual_seed(0)
    model = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA, rate_levels=4, rate_span=400.0)).eval()
    path = tmp_path_factory.mktemp("vr") / "tiny_variable.pth"
    export_model(model, path)
    return path


def bpp(data: bytes, image: np.ndarray) -> float:
    return file_bpp(len(data), *image.shape[:2])


def test_one_checkpoint_codes_every_quality_and_the_file_alone_says_which(variable_path, rng):
    model = load_model(variable_path)
    image = smooth_image(rng)
    sizes = []
    for q in (1, 1.5, 2.25, 3, 4):
        data = compress_image(model.at_quality(q), image)
        _, compressed = unpack(data)
        assert struct.unpack("<H", compressed.streams[0])[0] == round(q * 1000)
        # the plain model (no view) decodes it: the quality comes from the file
        out = decompress_bytes(data, model)
        assert out.shape == image.shape
        again = model.at_quality(q).decompress(compressed)
        assert np.array_equal(out, (again[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        sizes.append(len(data))
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]


def test_decoding_at_another_quality_differs(variable_path, rng):
    """The file's quality, not the view's, decides the decoding: a mismatch would be silent otherwise."""
    model = load_model(variable_path)
    image = smooth_image(rng)
    data = compress_image(model.at_quality(4), image)
    _, compressed = unpack(data)
    wrong = list(compressed.streams)
    wrong[0] = struct.pack("<H", 2000)
    a = model.decompress(compressed)
    b = model.decompress(type(compressed)(streams=wrong, size=compressed.size))
    assert not torch.equal(a, b)


@pytest.mark.parametrize("field", [b"", b"\x01", struct.pack("<H", 0), struct.pack("<H", 4001)])
def test_a_damaged_quality_field_is_a_clear_error(variable_path, rng, field):
    model = load_model(variable_path)
    data = compress_image(model.at_quality(2), smooth_image(rng))
    _, compressed = unpack(data)
    bad = pack(
        type(compressed)(streams=[field, *compressed.streams[1:]], size=compressed.size),
        family_code(model.family),
        model.identity(),
    )
    with pytest.raises(CorruptFileError, match="quality|damaged"):
        decompress_bytes(bad, model)


def test_quality_outside_the_range_is_refused(variable_path):
    model = load_model(variable_path)
    with pytest.raises(CheckpointError, match="between 1 and 4"):
        zoo.at_quality(model, 4.5)
    assert zoo.at_quality(model, 2.5).quality == 2.5


def test_rate_control_meets_the_target_or_says_the_nearest(variable_path, rng):
    model = load_model(variable_path)
    image = smooth_image(rng, 128, 128)
    lo = bpp(compress_image(model.at_quality(1), image), image)
    hi = bpp(compress_image(model.at_quality(4), image), image)
    for target in np.geomspace(lo * 1.2, hi / 1.2, 4):
        data, quality, note = compress_to_bpp(model, image, float(target))
        assert note is None and abs(bpp(data, image) / target - 1) <= 0.03, (target, bpp(data, image))
        assert decompress_bytes(data, model).shape == image.shape
        assert struct.unpack("<H", unpack(data)[1].streams[0])[0] == round(quality * 1000)
    data, quality, note = compress_to_bpp(model, image, hi * 3)
    assert quality == 4 and "highest rate" in note
    data, quality, note = compress_to_bpp(model, image, lo / 3)
    assert quality == 1 and "lowest rate" in note


def test_fixed_rate_models_are_unchanged_and_refuse_a_bpp_target(tiny_beta_path, rng):
    model = load_model(tiny_beta_path)
    assert (
        model.quality_range() is None
        and len(unpack(compress_image(model, smooth_image(rng)))[1].streams) == 2
    )
    with pytest.raises(VAEGANError, match="variable-rate"):
        compress_to_bpp(model, smooth_image(rng), 0.5)
    with pytest.raises(CheckpointError, match="one rate"):
        zoo.at_quality(model, 2)


def test_codec_cli_bpp_and_float_quality(variable_path, tiny_beta_path, rng, tmp_path):
    from PIL import Image

    src = tmp_path / "img.png"
    Image.fromarray(smooth_image(rng, 128, 128)).save(src)
    r = run_codec("compress", src, tmp_path / "a.vgan", "--model_path", variable_path, "--quality", "2.5")
    assert r.returncode == 0, r.stderr
    r = run_codec("compress", src, tmp_path / "b.vgan", "--model_path", variable_path, "--bpp", "100")
    assert r.returncode == 0 and "quality 4" in r.stdout and "highest rate" in r.stdout, r.stdout + r.stderr
    r = run_codec("decompress", tmp_path / "b.vgan", tmp_path / "b.png", "--model_path", variable_path)
    assert r.returncode == 0, r.stderr
    r = run_codec("compress", src, tmp_path / "c.vgan", "--model_path", tiny_beta_path, "--bpp", "0.5")
    assert r.returncode != 0 and "variable-rate" in r.stderr and "Traceback" not in r.stderr
    r = run_codec(
        "compress", src, tmp_path / "d.vgan", "--model_path", variable_path, "--bpp", "1", "--quality", "2"
    )
    assert r.returncode != 0 and "not both" in r.stderr and "Traceback" not in r.stderr


def test_variable_rate_training_weighs_each_image_at_its_own_rate(tmp_path):
    """A fixed-rate checkpoint fine-tunes into a variable-rate one (the gains start fresh, said so)."""
    from common.training import Trainer

    data = make_image_splits(tmp_path / "data", {"train": 4, "val": 2}, (64, 64))
    fixed = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA)).eval()
    export_model(fixed, tmp_path / "fixed.pth")
    cfg = tiny_train_config(
        data, tmp_path / "run", max_steps=2, lambda_adv=0.0, init_from=str(tmp_path / "fixed.pth")
    )
    trainer = Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA, rate_levels=3), cfg)
    for name in ("g_a.0.weight", "h_s.0.weight"):
        assert torch.equal(trainer.model.state_dict()[name], fixed.state_dict()[name])
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    out = trainer.model.train()(x)
    assert out.rate_scale.shape == (2,) and not torch.equal(out.rate_scale[0], out.rate_scale[1])
    loss, logs = trainer.loss(x, out, trainer.model.rate_weights())
    from common.losses import rate_bpp

    per_image = rate_bpp({k: v.float() for k, v in out.likelihoods.items()}, 64 * 64, per_image=True)
    rate = sum((out.rate_scale * r).mean() for r in per_image.values())
    assert torch.allclose(loss, trainer.cfg.lambda_d * logs["distortion"] + cfg.beta * rate)
    trainer.fit()
    assert load_model(tmp_path / "run" / "checkpoints" / "latest.pth").quality_range() == (1.0, 3.0)


def test_rate_balance_weighs_each_image_loss_by_its_beta_multiplier(tmp_path):
    from common.losses import distortion, rate_bpp
    from common.training import Trainer

    data = make_image_splits(tmp_path / "data", {"train": 4, "val": 2}, (64, 64))
    cfg = tiny_train_config(data, tmp_path / "run", max_steps=1, lambda_adv=0.0)
    trainer = Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA, rate_levels=3, rate_balance=0.25), cfg)
    x = torch.rand(3, 3, 64, 64)
    out = trainer.model.train()(x)
    assert torch.allclose(out.image_weight, out.rate_scale**-0.25)
    loss, _ = trainer.loss(x, out, trainer.model.rate_weights())
    rate = sum(rate_bpp(out.likelihoods, 64 * 64, per_image=True).values())
    d = distortion(x, out.x_hat, "mse", per_image=True)
    assert d.shape == (3,) and torch.allclose(d.mean(), distortion(x, out.x_hat, "mse"))
    expected = (out.image_weight * (trainer.cfg.lambda_d * d + cfg.beta * out.rate_scale * rate)).mean()
    assert torch.allclose(loss, expected)


def test_validation_averages_the_lowest_middle_and_highest_quality(tmp_path):
    """best_model.pth is chosen on every rate a variable-rate model serves, not on its middle one."""
    from common.training import Trainer

    data = make_image_splits(tmp_path / "data", {"train": 2, "val": 2}, (64, 64))
    cfg = tiny_train_config(data, tmp_path / "run", max_steps=1, lambda_adv=0.0, val_images=2)
    trainer = Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA, rate_levels=3, rate_balance=0.25), cfg)
    views = trainer.model.eval().validation_views()
    assert [v.quality for v in views] == [1.0, 2.0, 3.0]

    def row(view, x):
        return trainer.loss.validation_row(x, view(x), view.rate_weights())[0]

    rows = [[row(v, trainer.val_set[i][None]) for i in range(2)] for v in views]
    bpp = [sum(r["bpp"] for r in per_view) / 2 for per_view in rows]
    assert bpp[0] <= bpp[1] <= bpp[2] and bpp[0] < bpp[2]  # three rates, not one three times
    totals = trainer.validate()
    assert totals["bpp"] == pytest.approx(sum(bpp) / 3)
    assert totals["loss"] == pytest.approx(sum(r["loss"] for per_view in rows for r in per_view) / 6)


def test_evaluation_points_follow_quality_and_refuse_one_out_of_range(variable_path):
    import argparse

    from common.evaluation import checkpoint_points

    model = load_model(variable_path)
    args = argparse.Namespace(model_path=[str(variable_path)], quality=[1, 2.5])
    assert [name for _, _, name, _ in checkpoint_points(args, [model])] == [
        "tiny_variable-q1",
        "tiny_variable-q2.5",
    ]
    args.quality = None
    assert len(checkpoint_points(args, [model])) == 4  # one per whole quality
    args.quality = [5]
    with pytest.raises(VAEGANError, match="tiny_variable.pth: --quality must be between 1 and 4"):
        checkpoint_points(args, [model])
