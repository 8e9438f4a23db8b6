"""β's checkerboard context: two passes over y, the halves as two streams, bits as the prior says."""

import numpy as np
import pytest
import torch

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.bitstream import pack, unpack
from common.checkpoint import export_model, load_model
from common.codec import compress_image, decompress_bytes
from common.entropy import CheckerboardContext, checkerboard
from common.errors import CheckpointError, CorruptFileError
from common.registry import family_code
from common.training import Trainer
from tests.conftest import TINY_BETA, make_image_splits, random_image, tiny_train_config

VR = dict(TINY_BETA, rate_levels=4, rate_span=400.0)


def _stir(model: BetaVAEGAN, seed: int = 0) -> BetaVAEGAN:
    """A context that says something: the zero-initialised refinement given random weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.context_model.refine[-1].parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctx")
    torch.manual_seed(0)
    base = BetaVAEGAN(BetaVAEGANConfig(**VR)).eval()
    export_model(base, folder / "base.pth")
    with_context = BetaVAEGAN(BetaVAEGANConfig(**VR, context="checkerboard")).eval()
    with_context.load_state_dict(base.state_dict(), strict=False)
    export_model(_stir(with_context), folder / "context.pth")
    fixed = BetaVAEGAN(BetaVAEGANConfig(**TINY_BETA, context="checkerboard")).eval()
    export_model(_stir(fixed, 1), folder / "fixed.pth")
    return folder


def test_the_checkerboard_reads_only_anchors_and_starts_as_the_hyperprior():
    anchor = checkerboard(4, 5)
    assert anchor.sum() == 10 and bool(anchor[0, 0]) and not bool(anchor[0, 1])
    ctx = CheckerboardContext(3)
    y = torch.randn(1, 3, 6, 6)
    scales, means = torch.rand(1, 3, 6, 6) + 0.5, torch.randn(1, 3, 6, 6)
    s, m = ctx(y, scales, means)
    assert torch.equal(s, scales) and torch.equal(m, means)  # zero-initialised refinement
    torch.nn.init.normal_(ctx.refine[-1].weight)
    s1, m1 = ctx(y, scales, means)
    mask = checkerboard(6, 6)
    assert torch.equal(s1[..., mask], scales[..., mask]) and not torch.equal(s1, scales)
    # changing a non-anchor of y changes nothing: the decoder has not decoded it when it needs these
    y2 = y.clone()
    y2[..., ~mask] += 10
    assert torch.equal(ctx(y2, scales, means)[0], s1)


@pytest.mark.parametrize("name", ["context.pth", "fixed.pth"])
def test_files_hold_two_halves_of_y_and_decode_to_what_the_model_computes(paths, rng, name):
    model = load_model(paths / name)
    view = model.at_quality(2.5) if model.config.rate_levels else model
    image = random_image(rng, 80, 96)
    data = compress_image(view, image)
    _, compressed = unpack(data)
    assert len(compressed.streams) == (4 if model.config.rate_levels else 3)
    decoded = decompress_bytes(data, model)
    assert decoded.shape == image.shape
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    padded = torch.nn.functional.pad(x, (0, 128 - 96, 0, 128 - 80), mode="replicate")
    with torch.no_grad():
        x_hat = view(padded).x_hat[..., :80, :96].clamp(0, 1)
    expected = (x_hat[0].permute(1, 2, 0).numpy() * 255).round()
    # the same y_hat up to a rare rounding flip (the coder's means are float64, the forward's float32)
    assert np.abs(decoded.astype(float) - expected).mean() < 0.5


def test_the_bytes_are_the_bits_the_prior_gives(paths, rng):
    """The coder uses the context's refined (mu, sigma): real y bytes match the model's own estimate."""
    model = load_model(paths / "context.pth").at_quality(3)
    image = random_image(rng, 128, 128)
    _, compressed = unpack(compress_image(model, image))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        estimate = float(-torch.log2(model(x).likelihoods["y"]).sum()) / 8
    real = len(compressed.streams[1]) + len(compressed.streams[2])
    assert abs(real - estimate) <= 0.05 * estimate + 16


def test_the_context_saves_bits_a_plain_hyperprior_spends():
    """On a smooth latent the hyperprior cannot see, the anchors predict their neighbours: a few
    training steps of the context cut the bits of the other half."""
    from common.entropy import GaussianConditional

    torch.manual_seed(0)
    field = torch.nn.functional.interpolate(torch.randn(1, 4, 5, 5) * 20, size=(16, 16), mode="bilinear")
    scales, means = torch.full_like(field, 20.0), torch.zeros_like(field)
    prior, ctx = GaussianConditional().eval(), CheckerboardContext(4)
    opt = torch.optim.Adam(ctx.parameters(), lr=1e-2)

    def bits() -> torch.Tensor:
        """Of the non-anchors: the anchors' bits are the hyperprior's by construction."""
        anchors, _ = prior(field, scales, means)
        s, m = ctx(anchors, scales, means)
        return -torch.log2(prior(field, s, m)[1])[..., ~checkerboard(16, 16)].sum()

    before = float(bits())
    for _ in range(150):
        loss = bits()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(bits()) < 0.7 * before


def test_a_file_missing_a_half_is_a_clear_error(paths, rng):
    model = load_model(paths / "context.pth")
    data = compress_image(model.at_quality(2), random_image(rng, 64, 64))
    _, compressed = unpack(data)
    short = type(compressed)(streams=[compressed.streams[0], *compressed.streams[2:]], size=compressed.size)
    bad = pack(short, family_code(model.family), model.identity())
    with pytest.raises(CorruptFileError, match="damaged"):
        decompress_bytes(bad, model)


@pytest.mark.parametrize("part", ["context", "entropy"])
def test_a_train_part_trains_and_leaves_the_decoder(paths, tmp_path, part):
    data_dir = make_image_splits(tmp_path / "data", {"train": 4, "val": 1}, (64, 64))
    cfg = tiny_train_config(
        data_dir, tmp_path / "run", max_steps=2, val_every=2, val_images=1, lr=1e-2, warmup_steps=1,
        lambda_adv=0.0, init_from=str(paths / "base.pth"),
    )  # fmt: skip
    config = BetaVAEGANConfig(**VR, context="checkerboard", train_part=part)
    trainer = Trainer(BetaVAEGAN, config, cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    moved = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert moved == {"context_model"} if part == "context" else {"context_model", "h_s"} <= moved
    assert not moved & {"g_a", "g_s", "log_gain", "log_inverse_gain"}


def test_a_train_part_needs_a_trained_model_and_the_context_part_a_context(tmp_path):
    data_dir = make_image_splits(tmp_path / "data", {"train": 2, "val": 1}, (64, 64))
    cfg = tiny_train_config(data_dir, tmp_path / "run", max_steps=1)
    with pytest.raises(Exception, match="--init_from"):
        Trainer(BetaVAEGAN, BetaVAEGANConfig(**TINY_BETA, train_part="entropy"), cfg)
    with pytest.raises(ValueError, match="--context checkerboard"):
        BetaVAEGANConfig(**TINY_BETA, train_part="context")


def test_a_hierarchical_model_will_not_start_from_a_context_model(paths, tmp_path):
    from hierarchical_vae_gan.model import HierarchicalVAEGAN, HierarchicalVAEGANConfig

    data_dir = make_image_splits(tmp_path / "data", {"train": 2, "val": 1}, (64, 64))
    cfg = tiny_train_config(data_dir, tmp_path / "run", max_steps=1, init_from=str(paths / "context.pth"))
    config = HierarchicalVAEGANConfig(N=16, M=24, disc_channels=8, rate_levels=4, rate_span=400.0)
    with pytest.raises(CheckpointError, match="context"):
        Trainer(HierarchicalVAEGAN, config, cfg)


def test_a_file_written_in_another_process_on_other_threads_decodes_bit_exactly(paths, rng, tmp_path):
    """The decoder derives the refined (mu, sigma) from what it decoded: whatever the process and thread
    count, it must get the coder's, or the second half of y decodes to garbage."""
    import subprocess
    import sys
    import textwrap

    from tests.conftest import ROOT

    image = random_image(rng, 96, 112)
    np.save(tmp_path / "in.npy", image)
    script = textwrap.dedent(f"""
        import sys, torch, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        torch.set_num_threads(1)
        from common.checkpoint import load_model
        from common.codec import compress_image, decompress_bytes
        model = load_model({str(paths / "context.pth")!r})
        data = compress_image(model.at_quality(3.3), np.load({str(tmp_path / "in.npy")!r}))
        open({str(tmp_path / "f.vgan")!r}, "wb").write(data)
        np.save({str(tmp_path / "out.npy")!r}, decompress_bytes(data, model))
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    torch.set_num_threads(2)
    model = load_model(paths / "context.pth")
    here = decompress_bytes((tmp_path / "f.vgan").read_bytes(), model)
    assert np.array_equal(here, np.load(tmp_path / "out.npy"))
