"""Fit a trained VQ-VAE-GAN's index priors by counting, then export the checkpoint with new tables.

    python fit_priors.py --model_path ./output/vq_vae_gan/checkpoints/best_model.pth \
        --data_dir ../data --output ./output/vq_vae_gan/vq_fitted.pth

The encoder and codebooks stay frozen; only the priors change, so the reconstructions are unchanged
and the rate is the cross-entropy of the indices under the new tables. Training learns the priors
by gradient descent on random crops; counting the indices of whole training images is the maximum-
likelihood fit itself. Every prior row (stage 0: per left neighbour; stage s > 0: per index of stage
s - 1) is smoothed towards its stage's marginal with a pseudo-count ``alpha`` chosen per stage on
held-out images (``--val_sets``), then refitted on both sets. A checkpoint trained with an older prior
layout is upgraded: the priors are rebuilt from the config and refitted, every other weight is kept.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.checkpoint import build_model, export_model, read_checkpoint, widen_state  # noqa: E402
from common.cli import HelpFormatter, run_cli  # noqa: E402
from common.datasets import list_images, load_image, resolve_set, to_tensor  # noqa: E402
from common.entropy import LeftContextPrior  # noqa: E402
from common.errors import CheckpointError, DataError  # noqa: E402
from common.layers import pad_to_multiple  # noqa: E402

ALPHAS = (0.25, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0)


def stage_contexts(model, s: int, indices: torch.Tensor) -> torch.Tensor:
    """The prior row of every index of stage s, as the model's compress uses it."""
    if s:
        return indices[s - 1]
    if isinstance(model.priors[0], LeftContextPrior):
        return LeftContextPrior.left_contexts(indices[0])
    return torch.zeros_like(indices[0])


@torch.no_grad()
def count_indices(model, files: list[Path]) -> list[np.ndarray]:
    """Per stage, (contexts, K) counts of each index under each prior row."""
    K = model.config.num_embeddings
    joint = [np.zeros((p.num_contexts, K)) for p in model.priors]
    for path in files:
        x = to_tensor(load_image(path)[0])
        y = model.g_a(pad_to_multiple(x, model.pad_multiple) * 2 - 1)
        idx = model.quantizer.indices(y, len(joint))
        for s, counts in enumerate(joint):
            np.add.at(
                counts, (stage_contexts(model, s, idx).reshape(-1).numpy(), idx[s].reshape(-1).numpy()), 1
            )
    return joint


def probabilities(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Rows of ``counts`` smoothed towards the add-1/2 marginal with ``alpha`` pseudo-counts."""
    K = counts.shape[1]
    marginal = (counts.sum(0) + 0.5) / (counts.sum() + 0.5 * K)
    rows = counts + alpha * marginal[None]
    return rows / rows.sum(1, keepdims=True)


def cross_entropy(probs: np.ndarray, counts: np.ndarray) -> float:
    """Bits per index of the counted indices under ``probs``."""
    return float(-(counts * np.log2(probs)).sum() / max(counts.sum(), 1.0))


def learned_probabilities(prior) -> np.ndarray:
    return torch.softmax(prior.log_probs().detach().double(), -1).numpy()


def set_priors(model, probs: list[np.ndarray]) -> None:
    """Write log-probabilities into the priors' parameters (base = mean log row, delta = the rest)."""
    for prior, p in zip(model.priors, probs):
        log_p = torch.from_numpy(np.log(p)) / prior.logit_scale
        base = log_p.mean(0)
        prior.base.data.copy_(base.float())
        prior.delta.data.copy_((log_p - base).float())
    model.update()


def upgraded_model(path: str):
    """The checkpoint's model with this version's priors (they are refitted, so their old shape may differ)."""
    ckpt = read_checkpoint(path)
    if ckpt["family"] != "vq_vae_gan":
        raise CheckpointError(f"{path} holds a {ckpt['family']} model, but a vq_vae_gan model was expected")
    model = build_model("vq_vae_gan", ckpt["config"])
    state = widen_state(ckpt["model"], model.state_dict())
    weights = {k: v for k, v in state.items() if not k.startswith("priors.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("priors.") for k in missing):
        raise CheckpointError(f"{path}: weights do not fit the vq_vae_gan config")
    model.trained_priors = False
    try:  # the trained priors, when their layout is this version's: to report what counting gains
        model.priors.load_state_dict(
            {k[len("priors.") :]: v for k, v in state.items() if k.startswith("priors.")}
        )
        model.trained_priors = True
    except RuntimeError:
        pass
    return model.eval()


def _files(data_dir: str, sets: list[str]) -> list[Path]:
    files = [f for s in sets for f in list_images(resolve_set(data_dir, s))]
    if not files:
        raise DataError(f"no images in {', '.join(sets)} under {data_dir}")
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "--model_path", "--model-path", dest="model_path", required=True, help="a VQ-VAE-GAN checkpoint"
    )
    parser.add_argument("--output", required=True, help="where to write the checkpoint with fitted priors")
    parser.add_argument(
        "--data_dir", "--data-dir", dest="data_dir", default="../data", help="root of the image sets"
    )
    parser.add_argument(
        "--train_sets",
        "--train-sets",
        dest="train_sets",
        nargs="+",
        default=["bsds500/train"],
        help="images whose indices are counted",
    )
    parser.add_argument(
        "--val_sets",
        "--val-sets",
        dest="val_sets",
        nargs="+",
        default=["bsds500/val"],
        help="held-out images that choose the smoothing and report bits per index",
    )
    parser.add_argument("--half", action="store_true", help="store weights in float16 (as shipped)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = upgraded_model(args.model_path)
    K = model.config.num_embeddings
    train = count_indices(model, _files(args.data_dir, args.train_sets))
    val = count_indices(model, _files(args.data_dir, args.val_sets))
    alphas, before, after = [], [], []
    for s, (t, v) in enumerate(zip(train, val)):
        scores = {a: cross_entropy(probabilities(t, a), v) for a in ALPHAS}
        alphas.append(min(scores, key=scores.get))
        after.append(scores[alphas[-1]])
        if model.trained_priors:
            before.append(cross_entropy(learned_probabilities(model.priors[s]), v))
    print(f"held-out bits per index (stage 0 first) as fitted: {', '.join(f'{b:.3f}' for b in after)}")
    if before:
        print(f"  with the priors as trained: {', '.join(f'{b:.3f}' for b in before)}")
    print(f"fixed-length: {math.log2(K):.3f}; saving {1 - sum(after) / (len(after) * math.log2(K)):.1%}")
    # the shipped tables use every image the model was trained on
    set_priors(model, [probabilities(t + v, a) for t, v, a in zip(train, val, alphas)])
    export_model(
        model, args.output, half=args.half, priors={"alpha": alphas, "sets": args.train_sets + args.val_sets}
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
