"""Hierarchical VAE-GAN: per-level streams, progressive prefixes, level weights, the discriminator."""

import numpy as np
import pytest
import torch

from common.bitstream import Compressed
from common.checkpoint import export_model, load_model
from common.codec import compress_image, decompress_bytes
from common.datasets import to_tensor
from common.errors import CorruptFileError, VAEGANError
from common.layers import pad_to_multiple
from common.losses import rate_bpp
from hierarchical_vae_gan.model import HierarchicalVAEGAN, HierarchicalVAEGANConfig
from tests.conftest import random_image

TINY_HIER = {"N": 16, "M": 8, "disc_channels": 4, "attention_heads": 2}


def tiny_model(seed: int = 0, **kw) -> HierarchicalVAEGAN:
    torch.manual_seed(seed)
    return HierarchicalVAEGAN(HierarchicalVAEGANConfig(**(TINY_HIER | kw)))


def open_merges(m: HierarchicalVAEGAN) -> HierarchicalVAEGAN:
    """A new level joins through a merge that starts at zero; open it, as training does."""
    with torch.no_grad():
        for merge in m.top_down.merge.values():
            merge.weight.normal_(0, 0.1)
    return m


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("hier") / "tiny_hier.pth"
    m = open_merges(tiny_model()).eval()
    with torch.no_grad():  # open the attention gates so the test covers them
        for mod in m.modules():
            if hasattr(mod, "gate"):
                mod.gate.fill_(0.5)
    export_model(m, path)
    return load_model(path)


def test_training_forward_gives_one_likelihood_per_level_at_its_scale():
    m = tiny_model(num_hierarchies=4).train()
    out = m(torch.rand(2, 3, 256, 128))
    assert out.x_hat.shape == (2, 3, 256, 128)
    shapes = {k: tuple(v.shape) for k, v in out.likelihoods.items()}
    channels = [8, 16, 16, 16]  # y has M channels, the levels above it N
    assert shapes == {f"l{i}": (2, channels[i], 256 // (16 << i), 128 // (16 << i)) for i in range(4)}
    assert all(((v > 0) & (v <= 1)).all() for v in out.likelihoods.values())
    disc = m.build_discriminator().eval()  # spectral norm: no power iteration between the two calls
    logits = disc(out.x_hat, out.cond)
    assert logits.shape[:2] == (2, 4)  # one channel per head, each head weighed equally
    assert torch.equal(disc.features(out.x_hat, out.cond)[-1], logits)


def test_every_level_stream_decodes_to_the_encoders_latents(model, rng):
    x = to_tensor(random_image(rng, 70, 133))
    compressed, enc = model.encode_latents(x)
    assert len(compressed.streams) == model.L and all(len(s) > 0 for s in compressed.streams)
    dec = model.decode_latents(compressed)
    assert len(dec) == len(enc) == model.L
    for a, b in zip(enc, dec):
        assert torch.equal(a, b)
    sizes = model.latent_sizes((70, 133))[::-1]
    assert [tuple(t.shape[-2:]) for t in dec] == sizes


def test_file_round_trip_is_close_to_the_evaluation_forward(model, rng):
    image = random_image(rng, 64, 64)
    decoded = decompress_bytes(compress_image(model, image), model)
    with torch.no_grad():
        ref = model(to_tensor(image)).x_hat.clamp(0, 1)
    assert decoded.shape == image.shape
    np.testing.assert_allclose(decoded / 255.0, ref[0].permute(1, 2, 0).numpy(), atol=3 / 255)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_any_prefix_of_levels_decodes_and_matches_the_full_file(model, rng, k):
    x = to_tensor(random_image(rng, 96, 80))
    full = model.compress(x)
    view = model.with_levels(k)
    part = view.compress(x)
    assert part.streams == full.streams[:k]  # the top levels do not depend on the ones below
    truncated = Compressed(streams=full.streams[:k], size=full.size)
    a, b = model.decompress(truncated), view.decompress(part)
    assert a.shape == (1, 3, 96, 80) and torch.equal(a, b)
    data = compress_image(view, random_image(rng, 96, 80))
    assert decompress_bytes(data, model).shape == (96, 80, 3)  # the full model reads a prefix file
    with torch.no_grad():
        lik = view(pad_to_multiple(x, model.pad_multiple)).likelihoods
    assert sorted(lik) == sorted(f"l{i}" for i in range(model.L - k, model.L))


def test_fewer_levels_give_fewer_bytes(model, rng):
    image = random_image(rng, 128, 128)
    sizes = [len(compress_image(model.with_levels(k), image)) for k in range(1, model.L + 1)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_level_betas_weight_each_levels_rate():
    m = tiny_model(level_betas="0,1,2")
    assert m.rate_weights() == {"l0": 0.0, "l1": 1.0, "l2": 2.0}
    out = m.train()(torch.rand(1, 3, 64, 64))
    rates = rate_bpp(out.likelihoods, 64 * 64)
    assert set(rates) == set(m.rate_weights())
    assert tiny_model().rate_weights() == {"l0": 1.0, "l1": 1.0, "l2": 1.0}


@pytest.mark.parametrize("seed", range(4))
def test_progressive_reconstruction_sees_only_the_top_levels(seed):
    """The partial decode's gradient reaches the posteriors of the levels it keeps, never the others."""
    m = open_merges(tiny_model(num_hierarchies=4, progressive_weight=0.5).train())
    x = torch.rand(1, 3, 128, 128)
    torch.manual_seed(seed)
    kept = int(torch.randint(1, m.L, ()))  # the draw forward makes first: the top `kept` levels
    torch.manual_seed(seed)
    out = m(x)
    x_part, weight = out.extra_reconstructions["progressive"]
    assert weight == 0.5 and x_part.shape == out.x_hat.shape
    assert sorted(out.likelihoods) == [f"l{i}" for i in range(m.L)]  # the full file's rate, as without it
    x_part.square().mean().backward()
    for level in (1, 2):  # the levels between y and the top have posteriors of their own
        grad = m.top_down.post[str(level)][0].weight.grad
        reached = grad is not None and bool(grad.abs().sum() > 0)
        assert reached == (level >= m.L - kept), level


def test_validation_scores_every_progressive_decode_at_its_share_of_the_weight():
    m = tiny_model(num_hierarchies=4, progressive_weight=0.6).eval()
    with torch.no_grad():
        out = m(torch.rand(1, 3, 128, 128))
        extra = out.extra_reconstructions
        assert sorted(extra) == ["progressive_top1", "progressive_top2", "progressive_top3"]
        assert sum(w for _, w in extra.values()) == pytest.approx(0.6)
        for j in (1, 2, 3):  # each is what a file holding the top j levels decodes to
            x = torch.rand(1, 3, 128, 128)
            ref = m.with_levels(j)(x).x_hat
            assert torch.allclose(m(x).extra_reconstructions[f"progressive_top{j}"][0], ref, atol=1e-6)
        assert m.with_levels(2)(torch.rand(1, 3, 128, 128)).extra_reconstructions == {}


def test_progressive_weight_off_adds_nothing():
    out = tiny_model().train()(torch.rand(1, 3, 64, 64))
    assert out.extra_reconstructions == {}


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"num_hierarchies": 1}, "between 2 and 5"),
        ({"progressive_weight": -1.0}, "progressive_weight"),
        ({"num_hierarchies": 9}, "between 2 and 5"),
        ({"level_betas": "1,2"}, "one per level"),
        ({"level_betas": "1,x,2"}, "comma-separated"),
        ({"level_betas": "1,-1,2"}, ">= 0"),
        ({"attention_levels": 3}, "attention_levels"),
        ({"rate_levels": 1}, "rate_levels"),
        ({"M": 9}, "attention_heads"),
    ],
)
def test_bad_configs_get_clear_errors(kw, message):
    with pytest.raises(VAEGANError, match=message):
        tiny_model(**kw)


def test_a_file_with_more_levels_than_the_model_is_refused(model, rng):
    x = to_tensor(random_image(rng, 64, 64))
    c = model.compress(x)
    with pytest.raises(CorruptFileError, match="levels"):
        model.decompress(Compressed(streams=c.streams + [b"\0"], size=c.size))
    with pytest.raises(ValueError, match="levels"):
        model.with_levels(model.L + 1)


def test_the_decoder_sees_the_rounded_top_latent_in_training_as_in_a_file():
    """The top level's rate is that of y + U(-1/2, 1/2), but what reaches the decoder is round(y)
    (straight-through), as a file delivers it: no train/test mismatch at the top of the hierarchy."""
    model = tiny_model().train()
    seen = {}
    model.top_down.top_in.register_forward_hook(lambda m, inputs, out: seen.update(y=inputs[0]) or None)
    out = model(torch.rand(2, 3, 64, 64))
    y = seen["y"]
    assert torch.equal(y, torch.round(y)) and y.requires_grad
    # the finest level's rate (its prior comes from the top) still trains the top encoder through the rounding
    out.likelihoods["l0"].log2().sum().neg().backward()
    top = model.down[-1]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in top.parameters())


def test_the_comparison_cache_tells_a_top_k_view_from_the_full_model(model):
    """A cached point of the top 2 levels must never be served for the full model (or the reverse)."""
    from common.report import point_identity

    keys = [point_identity(model)] + [point_identity(model.with_levels(k)) for k in range(1, model.L + 1)]
    assert keys[0]["model_id"] == keys[1]["model_id"]  # one checkpoint, so one identity...
    assert len({str(k) for k in keys[1:]}) == model.L  # ...but a key of its own for every k
