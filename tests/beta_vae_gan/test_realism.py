"""The β realism decoder: one file, decoded anywhere from faithful (0) to realistic (1).

Realism 0 must be the base decoder bit for bit and the files must not change (the identity covers
what files depend on), training must move the realism decoder and nothing else, and every entry
point (codec, evaluate.py, the comparison's curves and sliders) must reach both ends.
"""

import json

import numpy as np
import pytest
import torch

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.checkpoint import export_model, load_model, read_checkpoint
from common.codec import compress_image, decompress_bytes
from common.errors import CheckpointError, VAEGANError
from common.losses import feature_matching_loss, per_image_mean
from common.training import Trainer
from tests.conftest import (
    TINY_BETA,
    make_image_splits,
    random_image,
    realism_from,
    run_codec,
    tiny_train_config,
)

VR = dict(TINY_BETA, rate_levels=4, rate_span=400.0)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("realism")
    torch.manual_seed(0)
    base = BetaVAEGAN(BetaVAEGANConfig(**VR)).eval()
    export_model(base, folder / "base.pth", half=True)
    base = load_model(folder / "base.pth")
    export_model(realism_from(base), folder / "realism.pth", half=True)
    return folder / "base.pth", folder / "realism.pth"


def test_realism_zero_is_the_base_decoder_bit_for_bit_and_files_do_not_change(paths, rng):
    base, model = (load_model(p) for p in paths)
    assert model.identity() == base.identity()  # files of either decode with the other
    assert model.weights_digest() != base.weights_digest()
    image = random_image(rng, 80, 96)
    for q in (1, 2.5, 4):
        data = compress_image(base.at_quality(q), image)
        assert compress_image(model.at_quality(q), image) == data
        faithful = decompress_bytes(data, base)
        assert np.array_equal(decompress_bytes(data, model), faithful)  # default: realism 0
        assert np.array_equal(decompress_bytes(data, model, realism=0.0), faithful)
        realistic = decompress_bytes(data, model, realism=1.0)
        assert realistic.shape == faithful.shape and not np.array_equal(realistic, faithful)
        halfway = decompress_bytes(data, model, realism=0.5)
        assert not np.array_equal(halfway, realistic) and not np.array_equal(halfway, faithful)


def test_realism_is_refused_outside_its_range_or_without_a_realism_decoder(paths, rng):
    base, model = (load_model(p) for p in paths)
    data = compress_image(base.at_quality(2), random_image(rng, 64, 64))
    with pytest.raises(VAEGANError, match="between 0 and 1"):
        decompress_bytes(data, model, realism=1.5)
    with pytest.raises(VAEGANError, match="no realism decoder.*base.pth"):
        decompress_bytes(data, base, realism=1.0)


def test_a_realism_file_shipped_beside_a_newer_base_decodes_its_files_and_is_named_for_the_others(
    paths, tmp_path, monkeypatch, rng
):
    """A realism decoder fits only the base it was trained on: when a newer base becomes the
    default, the realism release ships in a subfolder of pretrained/ (zoo.companions). Its files
    still decode from the header at any realism; it is never the default; and --realism on a file of
    the new base names it."""
    import shutil

    from common import zoo

    folder = tmp_path / "beta_vae_gan" / "pretrained"
    (folder / "realism").mkdir(parents=True)
    torch.manual_seed(7)
    export_model(BetaVAEGAN(BetaVAEGANConfig(**VR)).eval(), folder / "new.pth", half=True)
    shutil.copy(paths[1], folder / "realism" / "old-realism.pth")
    monkeypatch.setattr(zoo, "ROOT", tmp_path)
    new, old = load_model(folder / "new.pth"), load_model(paths[1])
    assert new.identity() != old.identity()
    assert zoo.shipped("beta_vae_gan") == ((folder / "new.pth", new.identity()),)
    assert zoo.companions("beta_vae_gan") == ((folder / "realism" / "old-realism.pth", old.identity()),)
    assert zoo.shipped_model("beta_vae_gan").checkpoint_path == str(folder / "new.pth")
    image = random_image(rng, 64, 64)
    data = compress_image(old.at_quality(2), image)
    assert np.array_equal(decompress_bytes(data, realism=1.0), decompress_bytes(data, old, realism=1.0))
    data = compress_image(new.at_quality(2), image)
    decompress_bytes(data)  # found from the header, decoded faithfully
    with pytest.raises(
        VAEGANError,
        match=r"no realism decoder.*new\.pth\); files compressed with --model_path "
        r"beta_vae_gan/pretrained/realism/old-realism\.pth decode at any realism",
    ):
        decompress_bytes(data, realism=1.0)


def test_altered_realism_weights_are_refused_although_the_identity_leaves_them_out(paths, tmp_path):
    ckpt = read_checkpoint(paths[1])
    key = next(k for k in ckpt["model"] if k.startswith("realism_decoder."))
    ckpt["model"][key] = ckpt["model"][key] + 1
    torch.save(ckpt, tmp_path / "altered.pth")
    with pytest.raises(CheckpointError, match="weights were altered"):
        load_model(tmp_path / "altered.pth")


def test_codec_decompresses_one_file_at_both_ends(paths, tmp_path, rng):
    from PIL import Image

    base_path, realism_path = paths
    Image.fromarray(random_image(rng, 64, 80)).save(tmp_path / "in.png")
    done = run_codec(
        "compress", tmp_path / "in.png", tmp_path / "a.vgan", "--model_path", base_path, "--quality", 3
    )
    assert done.returncode == 0, done.stderr
    for w in ("0", "1"):
        done = run_codec(
            "decompress",
            tmp_path / "a.vgan",
            tmp_path / f"w{w}.png",
            "--model_path",
            realism_path,
            "--realism",
            w,
        )
        assert done.returncode == 0, done.stderr
    a, b = (np.asarray(Image.open(tmp_path / f"w{w}.png")) for w in ("0", "1"))
    assert a.shape == b.shape == (64, 80, 3) and not np.array_equal(a, b)
    done = run_codec(
        "decompress", tmp_path / "a.vgan", tmp_path / "x.png", "--model_path", base_path, "--realism", "1"
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no realism decoder" in done.stderr


def test_training_moves_the_realism_decoder_and_nothing_else(paths, tmp_path):
    data_dir = make_image_splits(tmp_path / "data", {"train": 4, "val": 1}, (64, 64))
    cfg = tiny_train_config(
        data_dir,
        tmp_path / "run",
        max_steps=3,
        val_every=3,
        val_images=1,
        lr=1e-2,
        warmup_steps=1,
        lambda_adv=0.5,
        disc_start=0,
        lambda_perceptual=1.0,
        perceptual="feature_matching",
        init_from=str(paths[0]),
    )
    trainer = Trainer(BetaVAEGAN, BetaVAEGANConfig(**VR, realism=True), cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved and all(k.startswith("realism_decoder.") for k in moved)
    trained = load_model(tmp_path / "run" / "checkpoints" / "latest.pth")
    assert trained.identity() == load_model(paths[0]).identity()


def test_a_realism_model_will_not_train_from_scratch(tmp_path):
    data_dir = make_image_splits(tmp_path / "data", {"train": 2, "val": 1}, (64, 64))
    cfg = tiny_train_config(data_dir, tmp_path / "run", max_steps=1)
    with pytest.raises(VAEGANError, match="--init_from"):
        Trainer(BetaVAEGAN, BetaVAEGANConfig(**VR, realism=True), cfg)


def test_each_image_weighs_its_perceptual_and_adversarial_terms_by_its_realism():
    values = torch.tensor([[1.0, 3.0], [10.0, 10.0]])
    assert per_image_mean(values, None) == values.mean()
    assert per_image_mean(values, torch.tensor([1.0, 0.0])) == pytest.approx(1.0)  # (2 * 1 + 10 * 0) / 2
    real = [torch.zeros(2, 3, 4, 4)]
    fake = [torch.stack([torch.ones(3, 4, 4), 3 * torch.ones(3, 4, 4)])]
    assert feature_matching_loss(real, fake) == pytest.approx(2.0)
    assert feature_matching_loss(real, fake, torch.tensor([0.0, 1.0])) == pytest.approx(1.5)


def test_the_discriminator_sees_the_realism(paths):
    model = load_model(paths[1]).train()
    out = model(torch.rand(3, 3, 64, 64))
    assert out.realism.shape == (3,) and ((0 <= out.realism) & (out.realism <= 1)).all()
    assert out.cond.shape[1] == VR["M"] + 1
    assert torch.equal(out.cond[:, -1, 0, 0], out.realism)
    assert model.build_discriminator()(out.x_hat, out.cond).dim() == 4
    model.eval()  # evaluation decodes as the codec does (realism 0) unless a view says otherwise
    assert not model(torch.rand(1, 3, 64, 64)).realism.any()
    views = model.validation_views()  # validation scores the realistic end, the part that trains
    assert [v.realism for v in views] == [1.0] * 3 and [v.quality for v in views] == [1.0, 2.5, 4.0]


def test_evaluate_writes_a_curve_per_end_with_identical_files(paths, tmp_path, rng):
    from PIL import Image

    from beta_vae_gan.evaluate import main

    (tmp_path / "images").mkdir()
    Image.fromarray(random_image(rng, 64, 64)).save(tmp_path / "images" / "a.png")
    out = tmp_path / "eval"
    argv = ["--model_path", str(paths[1]), "--dataset", str(tmp_path / "images"), "--output_dir", str(out)]
    main(argv + ["--quality", "2", "--no_fid"])
    faithful = json.loads((out / "beta_vae_gan-images.json").read_text())
    realistic = json.loads((out / "beta_vae_gan-realism1-images.json").read_text())
    assert faithful["points"] == ["realism-q2"] and realistic["points"] == ["realism-realism1-q2"]
    assert faithful["results"]["bpp"] == realistic["results"]["bpp"]
    a, b = ((out / p / "bitstreams" / "a.vgan").read_bytes() for p in ("realism-q2", "realism-realism1-q2"))
    assert a == b
    with pytest.raises(VAEGANError, match="no realism decoder"):
        main(
            [
                "--model_path",
                str(paths[0]),
                "--dataset",
                str(tmp_path / "images"),
                "--realism",
                "1",
                "--no_fid",
            ]
        )


def test_the_slider_opens_on_one_file_at_both_realisms(tmp_path):
    from common.report_html import same_file_pair, slider_html

    for name, data in (("a", b"same"), ("b", b"other"), ("c", b"same")):
        (tmp_path / f"{name}.vgan").write_bytes(data)
    points = [{"bitstream": str(tmp_path / f"{n}.vgan")} for n in "abc"]
    assert same_file_pair(points) == (0, 2)
    assert same_file_pair(points[:2] + [{"label": "jpeg"}]) is None
    page = slider_html(
        0, "x.png", b"png", [("w0", "w0", b"1"), ("jpeg", "jpeg", b"2"), ("w1", "w1", b"3")], (0, 2)
    )
    left, right = page.split('class="codec"')
    assert '<option value="k0" selected>' in left and '<option value="k2" selected>' in right


def test_the_comparison_draws_both_ends_and_its_slider_opens_on_them(paths, tmp_path, rng):
    from PIL import Image

    import compare_models
    from common.cli import run_cli

    (tmp_path / "images").mkdir()
    Image.fromarray(random_image(rng, 176, 208)).save(tmp_path / "images" / "a.png")
    argv = ["--beta_model_path", str(paths[1]), "--dataset", str(tmp_path / "images"), "--codecs", "jpeg420"]
    argv += [
        "--no_fid",
        "--cache_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(tmp_path / "out"),
        "--quiet",
    ]
    assert run_cli(compare_models.main, argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    curves = {c["name"]: c for c in summary["curves"]}
    assert set(curves) == {"beta_vae_gan", "beta_vae_gan-realism1", "Pillow JPEG 4:2:0"}
    assert curves["beta_vae_gan"]["results"]["bpp"] == curves["beta_vae_gan-realism1"]["results"]["bpp"]
    assert len(curves["beta_vae_gan"]["results"]["bpp"]) == 4  # one point per whole quality
    page = (tmp_path / "out" / "report.html").read_text()
    left = page.split('class="left"')[1].split("</select>")[0]
    right = page.split('class="codec"')[1].split("</select>")[0]
    assert "selected>beta_vae_gan (" in left and "selected>beta_vae_gan-realism1 (" in right


def test_the_base_trains_on_from_a_file_with_a_realism_decoder_which_is_left_out(paths, tmp_path, capsys):
    """README: continuing the shipped model's variable-rate training starts from the shipped file."""
    data_dir = make_image_splits(tmp_path / "data", {"train": 2, "val": 1}, (64, 64))
    cfg = tiny_train_config(data_dir, tmp_path / "run", max_steps=1, lambda_adv=0.0, init_from=str(paths[1]))
    trainer = Trainer(BetaVAEGAN, BetaVAEGANConfig(**VR), cfg)
    assert "left out: realism_decoder" in capsys.readouterr().out
    base = load_model(paths[0])
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in trainer.model.state_dict().items())


def test_measured_points_key_on_the_weights_their_decode_uses(paths):
    """The faithful decode is the base model's (same cache entry); the realistic one depends on the
    realism decoder too, so retraining it must not reuse a stale measurement."""
    from common.report import point_identity

    base, model = (load_model(p) for p in paths)
    assert point_identity(model) == point_identity(base)
    realistic = point_identity(model.at_realism(1.0))
    assert realistic["weights"] == model.weights_digest() and realistic["model_id"] == base.identity().hex()


def test_the_shipped_default_decodes_its_own_files_at_both_ends(rng):
    """The default β file carries the realism decoder: its files (the codec's default) decode faithful
    unasked and at realism 0, and otherwise at realism 1, found from the header."""
    from common import zoo

    (path, _), *rest = zoo.shipped("beta_vae_gan")
    assert not rest and path in zoo.with_realism("beta_vae_gan")
    data = compress_image(zoo.shipped_model("beta_vae_gan", 3), random_image(rng, 64, 96))
    faithful = decompress_bytes(data)
    assert np.array_equal(decompress_bytes(data, realism=0.0), faithful)
    realistic = decompress_bytes(data, realism=1.0)
    assert realistic.shape == faithful.shape == (64, 96, 3) and not np.array_equal(realistic, faithful)
