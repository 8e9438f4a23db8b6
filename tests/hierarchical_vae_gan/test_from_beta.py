"""The hierarchical model as a β model with more levels: it starts from β weights, codes every rate
with one checkpoint, and can train its levels above y alone."""

import pytest
import torch

from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
from common.bitstream import Compressed
from common.checkpoint import export_model, init_weights, load_model
from common.codec import compress_image, decompress_bytes
from common.datasets import to_tensor
from common.errors import CheckpointError, CorruptFileError, VAEGANError
from common.training import Trainer
from hierarchical_vae_gan.bit_allocation import level_bits
from hierarchical_vae_gan.model import HierarchicalVAEGAN, HierarchicalVAEGANConfig
from tests.conftest import make_image_splits, random_image, tiny_train_config
from vq_vae_gan.model import VQVAEGAN, VQVAEGANConfig

SHAPES = {"N": 16, "M": 8, "rate_levels": 3, "rate_span": 100.0}
TINY = SHAPES | {"disc_channels": 4, "attention_heads": 2}


@pytest.fixture(scope="module")
def beta_path(tmp_path_factory):
    torch.manual_seed(1)
    beta = BetaVAEGAN(BetaVAEGANConfig(disc_channels=4, **SHAPES))
    path = tmp_path_factory.mktemp("beta") / "tiny_beta.pth"
    export_model(beta.eval(), path)
    return path


def hier_from(path, **kw) -> HierarchicalVAEGAN:
    torch.manual_seed(0)
    model = HierarchicalVAEGAN(HierarchicalVAEGANConfig(**(TINY | kw)))
    init_weights(path, model, model.build_discriminator(), say=lambda *a: None)
    return model


def test_a_three_level_model_from_beta_weights_starts_with_all_of_them(beta_path, rng):
    """β's transforms, hyper-transforms, entropy models and gains, under our names: so the top level
    codes β's z stream byte for byte, and a merge that joins nothing gives β's y stream and decode."""
    beta = load_model(beta_path)
    hier = hier_from(beta_path).eval()
    beta_state = beta.state_dict()
    for b_key, h_key in [
        ("g_a.0.weight", "g_a.0.weight"),
        ("g_s.6.bias", "g_s.6.bias"),
        ("h_a.4.weight", "down.1.1.weight"),
        ("h_s.2.weight", "top_down.up.0.0.weight"),
        ("h_s.4.bias", "top_down.prior.0.bias"),
        ("log_gain", "log_gain"),
    ]:
        assert torch.equal(beta_state[b_key], hier.state_dict()[h_key]), h_key
    hier.update()
    image = random_image(rng, 96, 80)
    x = to_tensor(image)
    with torch.no_grad():
        hier.top_down.merge["1"].weight.zero_()  # the middle level joins nothing: β's hyperprior exactly
        hier.top_down.merge["1"].bias.zero_()
    for q in (1.0, 2.25, 3.0):
        b, h = beta.at_quality(q).compress(x), hier.at_quality(q).compress(x)
        q_b, y_b, z_b = b.streams
        q_h, z_h, w_h, y_h = h.streams  # the quality, then the levels top first
        assert (q_h, z_h, y_h) == (q_b, z_b, y_b) and len(w_h) > 0
        assert torch.equal(beta.decompress(b), hier.decompress(h))
    data = compress_image(hier.at_quality(2.0), image)
    assert decompress_bytes(data, hier).shape == image.shape


def test_beta_weights_fit_only_a_model_of_their_shapes(beta_path, tmp_path):
    with pytest.raises(CheckpointError, match="--num_hierarchies 3"):
        hier_from(beta_path, num_hierarchies=4)
    with pytest.raises(CheckpointError, match="same N, M, rate_levels"):
        hier_from(beta_path, M=12)
    vq = VQVAEGAN(VQVAEGANConfig(num_embeddings=16, embedding_dim=8, channels=16, disc_channels=4))
    export_model(vq.eval(), tmp_path / "vq.pth")
    with pytest.raises(CheckpointError, match="holds a vq_vae_gan model; this script trains hierarchical"):
        hier_from(tmp_path / "vq.pth")


def test_variable_rate_files_carry_their_quality_and_decode_from_any_prefix(beta_path, rng):
    hier = hier_from(beta_path).eval()
    with torch.no_grad():  # open the new level's merge, as training does
        hier.top_down.merge["1"].weight.normal_(0, 0.1)
    hier.update()
    x = to_tensor(random_image(rng, 128, 128))
    sizes = [sum(map(len, hier.at_quality(q).compress(x).streams)) for q in (1.0, 2.0, 3.0)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    full = hier.at_quality(2.5).compress(x)
    assert hier.file_quality(full) == 2.5
    for k in (1, 2, 3):  # the quality stream and the top k levels: what with_levels(k) writes
        part = hier.at_quality(2.5).with_levels(k).compress(x)
        assert part.streams == full.streams[: k + 1]
        assert hier.decompress(part).shape == (1, 3, 128, 128)
    with pytest.raises(CorruptFileError, match="quality"):
        hier.decompress(Compressed(streams=[b"\xff\xff"] + full.streams[1:], size=full.size))
    with pytest.raises(CorruptFileError, match="quality field"):
        hier.decompress(Compressed(streams=[b"\x01"] + full.streams[1:], size=full.size))


def test_level_bits_leave_the_quality_field_to_the_header(beta_path, rng, tmp_path):
    hier = hier_from(beta_path).eval()
    hier.update()
    (tmp_path / "bits").mkdir()
    data = compress_image(hier.at_quality(3.0), random_image(rng, 64, 64))
    (tmp_path / "bits" / "a.vgan").write_bytes(data)
    bits = level_bits(hier, tmp_path / "bits")
    streams = hier.level_streams(hier.at_quality(3.0).compress(to_tensor(random_image(rng, 64, 64))))
    assert len(bits["levels"]) == len(streams) == 3
    assert bits["header"]["bits_per_image"] >= 16  # the 2-byte quality field at least
    assert sum(lv["bits_per_image"] for lv in bits["levels"]) + bits["header"]["bits_per_image"] == 8 * len(
        data
    )


def test_frozen_transforms_train_only_the_levels_above_y(beta_path, tmp_path):
    data = make_image_splits(tmp_path / "data", {"train": 4, "val": 1}, (64, 64))
    cfg = tiny_train_config(data, tmp_path / "run", max_steps=2, lambda_adv=0.0, init_from=str(beta_path))
    trainer = Trainer(HierarchicalVAEGAN, HierarchicalVAEGANConfig(**TINY, freeze_transforms=True), cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    frozen = [k for k in before if k.startswith(("g_a.", "g_s.", "log_gain", "log_inverse_gain"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    moved = [k for k in before if k.startswith("top_down.") and not torch.equal(before[k], after[k])]
    assert moved
    fresh = tiny_train_config(data, tmp_path / "run2", max_steps=1, lambda_adv=0.0)
    with pytest.raises(VAEGANError, match="--init_from"):
        Trainer(HierarchicalVAEGAN, HierarchicalVAEGANConfig(**TINY, freeze_transforms=True), fresh)
