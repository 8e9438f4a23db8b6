"""VQ-VAE-GAN: the index API, entropy-coded files, dead codes, rate control by stages, checkpoints."""

import math

import numpy as np
import pytest
import torch

from common.bitstream import unpack
from common.checkpoint import export_model, load_model
from common.codec import compress_image, decompress_bytes
from common.datasets import to_tensor
from common.entropy import CategoricalPrior
from common.errors import CheckpointError, ModelMismatchError
from common.layers import pad_to_multiple
from tests.conftest import random_image
from vq_vae_gan.model import VQVAEGAN, VQVAEGANConfig
from vq_vae_gan.quantizer import ResidualVQ, VectorQuantizerEMA

TINY_VQ = {"num_embeddings": 16, "embedding_dim": 8, "channels": 8, "disc_channels": 4, "downsample": 4}


def tiny_model(seed: int = 0, **kw) -> VQVAEGAN:
    torch.manual_seed(seed)
    return VQVAEGAN(VQVAEGANConfig(**(TINY_VQ | kw)))


@pytest.fixture(scope="module")
def trained_path(tmp_path_factory):
    """A tiny model after a few training forwards (codebooks re-seeded from data), with tables."""
    model = tiny_model().train()
    torch.manual_seed(1)
    for _ in range(3):
        model(torch.rand(2, 3, 32, 32))
        model.apply_batch_statistics()  # what the loop does once a step is taken
    path = tmp_path_factory.mktemp("vq") / "tiny_vq.pth"
    export_model(model.eval(), path)
    return path


@pytest.fixture(scope="module")
def model(trained_path):
    return load_model(trained_path)


def test_indices_codes_indices_round_trip_exactly():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(32, 6)
    idx = torch.randint(0, 32, (2, 5, 7))
    assert torch.equal(vq.indices(vq.codes(idx)), idx)
    rvq = ResidualVQ(3, 32, 6)
    for s, stage in enumerate(rvq.stages):
        stage.embed.mul_(0.05**s)  # residual codebooks shrink stage by stage, as trained ones do
    indices = torch.stack([torch.randint(0, 32, (2, 5, 7)) for _ in range(3)])
    assert torch.equal(rvq.indices(rvq.codes(indices)), indices)


def test_categorical_prior_fits_and_codes_with_contexts():
    torch.manual_seed(0)
    K, C = 8, 8
    prior = CategoricalPrior(K, C)
    contexts = torch.randint(0, C, (4000,))
    symbols = (contexts + torch.randint(0, 2, (4000,))) % K  # each context allows two symbols
    opt = torch.optim.Adam(prior.parameters(), lr=1e-3)
    for _ in range(100):
        bits = -torch.log2(prior(symbols, contexts)).mean()
        opt.zero_grad()
        bits.backward()
        opt.step()
    assert float(bits.detach()) < 1.2  # close to the 1 bit of the true conditional, far below log2(8) = 3
    prior.update()
    data = prior.compress(symbols, contexts)
    assert 8 * len(data) / len(symbols) < 1.3
    assert torch.equal(prior.decompress(data, symbols.shape, contexts), symbols)


def test_rate_gradient_reaches_only_the_priors():
    model = tiny_model().train()
    out = model(torch.rand(2, 3, 16, 16))
    rate = -sum(torch.log2(v).sum() for v in out.likelihoods.values())
    rate.backward()
    assert all(p.grad is None for p in model.g_a.parameters())
    assert model.priors[0].base.grad.abs().sum() > 0 and model.priors[1].delta.grad.abs().sum() > 0
    assert set(out.likelihoods) == {"s0", "s1"} and out.cond is None and "vq_commitment" in out.extra_losses


def test_file_decodes_to_the_same_indices_and_image(model, rng):
    image = random_image(rng, 37, 50)
    x = to_tensor(image)
    with torch.no_grad():
        indices = model.quantizer.indices(model.g_a(pad_to_multiple(x, model.pad_multiple) * 2 - 1))
    data = compress_image(model, image)
    _, compressed = unpack(data)
    assert len(compressed.streams) == 2
    decoded_indices = model.decompress_indices(compressed)
    assert torch.equal(decoded_indices, indices)
    expected = ((model.g_s(model.quantizer.codes(indices)) + 1) / 2)[..., :37, :50].clamp(0, 1)
    assert torch.equal(model.decompress(compressed), expected.detach())
    with torch.no_grad():
        forward = model(pad_to_multiple(x, model.pad_multiple)).x_hat[..., :37, :50].clamp(0, 1)
    assert torch.allclose(forward, expected, atol=1e-5)  # training-time reconstruction = decoded file


def test_fewer_stages_decode_and_give_fewer_bytes(model, rng):
    image = random_image(rng, 48, 64)
    sizes = {}
    for k in (1, 2):
        data = compress_image(model.with_stages(k), image)
        assert len(unpack(data)[1].streams) == k
        out = decompress_bytes(data, model)  # k comes from the file, not from the model
        assert out.shape == image.shape
        sizes[k] = len(data)
    assert sizes[1] < sizes[2]
    _, compressed = unpack(compress_image(model.with_stages(1), image))
    indices = model.decompress_indices(compressed)
    expected = ((model.g_s(model.quantizer.codes(indices)) + 1) / 2).clamp(0, 1)
    assert torch.equal(model.decompress(compressed), expected[..., :48, :64].detach())
    for bad in (0, 3):
        with pytest.raises(ValueError):
            model.with_stages(bad)


@pytest.mark.parametrize("size", [(1, 1), (3, 65), (17, 33), (100, 37)])
def test_codec_round_trip_for_odd_sizes(model, rng, size):
    image = random_image(rng, *size)
    data = compress_image(model, image)
    out = decompress_bytes(data, model)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, decompress_bytes(data, load_model(model.checkpoint_path)))


def test_entropy_coding_beats_fixed_length_indices_after_fitting(tmp_path, rng):
    model = tiny_model(num_quantizers=1).train()
    with torch.no_grad():
        model.priors[0].base.copy_(torch.linspace(0, -0.1, 16))  # a skewed prior: code 0 most likely
        model.quantizer.stages[0].embed.copy_(torch.randn(16, 8) * 100)
        model.quantizer.stages[0].embed[0].zero_()  # every latent lands on code 0
    path = tmp_path / "skewed.pth"
    export_model(model.eval(), path)
    model = load_model(path)
    _, compressed = unpack(compress_image(model, random_image(rng, 64, 64)))
    bits_per_index = 8 * len(compressed.streams[0]) / (16 * 16)
    assert bits_per_index < 0.5 * math.log2(16)


def test_dead_codes_are_reseeded_after_a_collapse():
    def collapsed(threshold):
        torch.manual_seed(0)
        vq = VectorQuantizerEMA(16, 4, dead_code_threshold=threshold)
        vq.embed.copy_(100 + torch.randn(16, 4))
        vq.embed[0].zero_()
        vq.embed_avg.copy_(vq.embed)
        return vq

    z = torch.randn(4, 4, 8, 8)
    for threshold, alive in ((1.0, 8), (0.0, 1)):
        vq = collapsed(threshold)
        assert len(vq.indices(z).unique()) == 1  # the collapse: one code for everything
        vq.train()(z)
        vq.apply()
        used = len(vq.indices(z).unique())
        assert used >= alive if threshold else used == alive


def test_validation_stats_count_every_eval_forward_and_reset():
    model = tiny_model().eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 16, 16))
        model(torch.rand(1, 3, 16, 16))
    assert float(model.usage[0].sum()) == 2 * 16
    stats = model.validation_stats()
    assert set(stats) == {"codebook_usage_s0", "perplexity_s0", "codebook_usage_s1", "perplexity_s1"}
    assert 1.0 <= stats["perplexity_s0"] <= 16 and 0 < stats["codebook_usage_s0"] <= 1
    assert float(model.usage.sum()) == 0


def test_quantizer_dropout_uses_fewer_stages_for_some_images():
    model = tiny_model(num_quantizers=3, quantizer_dropout=1.0).train()
    torch.manual_seed(0)
    keep = model._keep(64, "cpu")
    assert keep.min() == 1 and keep.max() == 3
    assert model.eval()._keep(64, "cpu") is None


def test_wrong_family_checkpoint_and_file_are_refused(trained_path, tiny_beta_path, rng):
    with pytest.raises(CheckpointError, match="beta_vae_gan"):
        load_model(tiny_beta_path, expect_family="vq_vae_gan")
    beta = load_model(tiny_beta_path)
    data = compress_image(beta, random_image(rng, 16, 16))
    with pytest.raises(ModelMismatchError, match="beta_vae_gan"):
        decompress_bytes(data, load_model(trained_path))


def test_config_is_checked():
    from common.errors import VAEGANError

    with pytest.raises(VAEGANError, match="power of two"):
        tiny_model(downsample=12)
