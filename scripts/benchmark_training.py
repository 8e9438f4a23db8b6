"""Training efficiency side by side: our β recipe against CompressAI's reference recipe, at equal CPU time.

    python scripts/benchmark_training.py --data_dir ../data --output_dir runs/train_bench \
        --budget_cpu_hours 2 --eval_every_min 10 --result results/benchmarks/training_efficiency.json

Each recipe trains on the same crops (BSDS500 train, 256 px, batch 8, one thread) for the same
process CPU time, one after the other, with the same objective: bpp + λ·255²·MSE, λ = 0.0067 (our
``--beta 1``; CompressAI's quality 3), N = 128 and M = 192:

* ``ours``: the β-VAE-GAN through our training loop (``common.training.Trainer.train_step``) with
  ``--lambda_adv 0`` and our defaults (Adam 1e-4, warm-up then cosine decay over the planned steps,
  gradient clipping 1.0, uniform-noise rates with straight-through rounding for the decoder);
* ``bmshj2018-hyperprior`` and ``mbt2018-mean``: CompressAI's ``ScaleHyperprior`` and
  ``MeanScaleHyperprior`` with its ``RateDistortionLoss``, its auxiliary loss and optimizer (Adam 1e-3
  on the quantiles) and Adam 1e-4, clipping 1.0, as in CompressAI's example trainer (whose
  plateau scheduler never fires within hours, so the rate is constant).

Every ``--eval_every_min`` CPU minutes of training (evaluation is not counted) each model codes
Kodak to real bytes (ours: ``compress``/``decompress`` through our codec; CompressAI's after
``update()``) and the log gets bpp (stream bytes; ours also its file with header), PSNR and the RD
cost bpp + λ·255²·MSE on the decoded 8-bit images. Runs resume: the same command continues every
recipe from its last state, so a budget can span several sessions. ``--result`` collects the
curves and the ratio "CPU time ours needs to reach each reference's final RD cost".

CompressAI is a benchmark-only dependency: see requirements-benchmark.txt for its install.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import HelpFormatter, run_cli  # noqa: E402
from common.datasets import CropDataset, EpochBatches, list_images, load_image, resolve_set  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.files import read_json, write_json  # noqa: E402
from common.machine import describe  # noqa: E402
from common.metrics import file_bpp  # noqa: E402

RECIPES = ("ours", "bmshj2018-hyperprior", "mbt2018-mean")
LAMBDA = 0.0067
SEED = 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument(
        "--data_dir", "--data-dir", dest="data_dir", default="../data", help="holds bsds500/ and kodak/"
    )
    p.add_argument(
        "--output_dir", "--output-dir", dest="output_dir", default="runs/train_bench", help="state and logs"
    )
    p.add_argument(
        "--recipes", nargs="+", default=list(RECIPES), choices=RECIPES, help="recipes, run in this order"
    )
    p.add_argument("--budget_cpu_hours", type=float, default=2.0, help="training CPU time per recipe")
    p.add_argument(
        "--eval_every_min", type=float, default=10.0, help="CPU minutes of training between Kodak scores"
    )
    p.add_argument("--N", type=int, default=128, help="channels inside the transforms")
    p.add_argument("--M", type=int, default=192, help="channels of the latent y")
    p.add_argument("--batch_size", type=int, default=8, help="images per step")
    p.add_argument("--patch_size", type=int, default=256, help="side of the training crops")
    p.add_argument("--kodak_limit", type=int, default=None, help="score on the first N Kodak images only")
    p.add_argument("--result", default=None, help="JSON with every curve and the CPU-time ratios")
    return p


# --------------------------------------------------------------------------------------------------
# The same crops for every recipe


class Batches:
    """Batch ``step`` of the run, in our loop's order (:class:`common.datasets.EpochBatches`), so a
    resumed recipe, and every recipe, sees the same crops in the same order."""

    def __init__(self, dataset: CropDataset, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size
        self.per_epoch = len(dataset) // batch_size

    def __call__(self, step: int) -> torch.Tensor:
        epoch, b = divmod(step, self.per_epoch)
        keys = next(iter(EpochBatches(len(self.dataset), self.batch_size, epoch, SEED, skip=b)))
        return torch.stack([self.dataset[key] for key in keys])


# --------------------------------------------------------------------------------------------------
# Recipes: one training step, state, and Kodak coding


class Ours:
    """The β-VAE-GAN through our own loop: Trainer.train_step with --lambda_adv 0 and the defaults."""

    def __init__(self, folder: Path, args, planned_steps: int):
        from beta_vae_gan.model import BetaVAEGAN, BetaVAEGANConfig
        from common.train_config import TrainConfig
        from common.training import Trainer

        latest = folder / "checkpoints" / "latest.pth"
        cfg = TrainConfig(
            output_dir=str(folder),
            data_dir=args.data_dir,
            train_sets=["bsds500/train"],
            val_sets=["bsds500/train"],
            beta=1.0,
            lambda_adv=0.0,
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            max_steps=planned_steps,
            threads=1,
            device="cpu",
            seed=SEED,
            resume=str(latest) if latest.exists() else None,
        )
        self.trainer = Trainer(BetaVAEGAN, BetaVAEGANConfig(N=args.N, M=args.M), cfg)
        self.model = self.trainer.model

    @property
    def step(self) -> int:
        return self.trainer.step

    def train_step(self, x: torch.Tensor) -> None:
        self.trainer.train_step(x)
        self.trainer.step += 1

    def save(self) -> None:
        self.trainer.save("latest.pth")

    @torch.no_grad()
    def code(self, image: np.ndarray) -> tuple[int, int, np.ndarray]:
        """(stream bytes, file bytes, decoded uint8 image)."""
        from common.bitstream import unpack
        from common.codec import compress_image, decompress_bytes

        data = compress_image(self.model, image)
        _, compressed = unpack(data)
        return sum(len(s) for s in compressed.streams), len(data), decompress_bytes(data, self.model)

    def prepare_eval(self) -> None:
        self.model.eval()
        self.model.update()


class Reference:
    """CompressAI's model, loss, optimizers and step, as its example trainer has them."""

    def __init__(self, name: str, folder: Path, args):
        try:
            from compressai.losses import RateDistortionLoss
            from compressai.models import MeanScaleHyperprior, ScaleHyperprior
        except ImportError as exc:
            raise VAEGANError(
                f"the {name} recipe needs CompressAI ({exc}); install it as requirements-benchmark.txt says"
            ) from None
        torch.manual_seed(SEED)
        cls = ScaleHyperprior if name == "bmshj2018-hyperprior" else MeanScaleHyperprior
        self.model = cls(args.N, args.M)
        self.criterion = RateDistortionLoss(lmbda=LAMBDA)
        main = [p for n, p in self.model.named_parameters() if not n.endswith(".quantiles")]
        aux = [p for n, p in self.model.named_parameters() if n.endswith(".quantiles")]
        self.opt = torch.optim.Adam(main, lr=1e-4)
        self.aux_opt = torch.optim.Adam(aux, lr=1e-3)
        self.path = folder / "state.pth"
        self.step = 0
        if self.path.exists():
            state = torch.load(self.path, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            self.aux_opt.load_state_dict(state["aux_opt"])
            self.step = state["step"]
            torch.set_rng_state(state["rng"])

    def train_step(self, x: torch.Tensor) -> None:
        self.model.train()
        self.opt.zero_grad()
        self.aux_opt.zero_grad()
        out = self.model(x)
        loss = self.criterion(out, x)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        aux_loss = self.model.aux_loss()
        aux_loss.backward()
        self.aux_opt.step()
        self.step += 1

    def save(self) -> None:
        from common.checkpoint import atomic_save

        state = {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict(),
            "step": self.step,
            "rng": torch.get_rng_state(),
        }
        atomic_save(state, self.path)

    def prepare_eval(self) -> None:
        self.model.eval()
        self.model.update(force=True)

    @torch.no_grad()
    def code(self, image: np.ndarray) -> tuple[int, int, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
        h, w = x.shape[-2:]
        ph, pw = (-h) % 64, (-w) % 64
        padded = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="constant", value=0)
        out = self.model.compress(padded)
        nbytes = sum(len(s[0]) for s in out["strings"])
        x_hat = self.model.decompress(out["strings"], out["shape"])["x_hat"]
        x_hat = x_hat[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w].clamp(0, 1)
        decoded = (x_hat[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        return nbytes, nbytes, decoded


# --------------------------------------------------------------------------------------------------
# Scoring and the loop


def score(recipe, images: list[np.ndarray]) -> dict:
    """Kodak with real bytes: bpp (streams; file for ours), PSNR, RD cost bpp + λ·255²·MSE."""
    recipe.prepare_eval()
    bpp, whole, mse = [], [], []
    for image in images:
        stream_bytes, file_bytes, decoded = recipe.code(image)
        bpp.append(file_bpp(stream_bytes, *image.shape[:2]))
        whole.append(file_bpp(file_bytes, *image.shape[:2]))
        mse.append(float(np.mean((decoded.astype(np.float64) - image.astype(np.float64)) ** 2)))
    mean_bpp, mean_mse = float(np.mean(bpp)), float(np.mean(mse))
    return {
        "bpp": round(mean_bpp, 5),
        "file_bpp": round(float(np.mean(whole)), 5),
        "psnr": round(float(np.mean([10 * math.log10(255**2 / max(m, 1e-12)) for m in mse])), 4),
        "rd_cost": round(mean_bpp + LAMBDA * mean_mse, 5),
    }


def run_recipe(name: str, args, images: list[np.ndarray], batches: Batches) -> list[dict]:
    folder = Path(args.output_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "log.json"
    log = read_json(log_path) or {"recipe": name, "points": [], "cpu_s": 0.0, "planned_steps": None}
    budget = args.budget_cpu_hours * 3600
    torch.set_num_threads(1)
    if name == "ours":
        if log["planned_steps"] is None:  # our cosine schedule needs a length: the steps the budget buys
            log["planned_steps"] = _planned_steps(args, batches, budget)
            write_json(log_path, log)
        recipe = Ours(folder, args, log["planned_steps"])
    else:
        recipe = Reference(name, folder, args)
    every = args.eval_every_min * 60
    if not log["points"]:
        log["points"].append({"cpu_s": 0.0, "step": recipe.step, **score(recipe, images)})
        write_json(log_path, log)
    print(f"{name}: step {recipe.step}, {log['cpu_s'] / 60:.1f} of {budget / 60:.0f} CPU min", flush=True)
    while log["cpu_s"] < budget - 1e-6:
        target = min(budget, (math.floor(log["cpu_s"] / every + 1e-9) + 1) * every)
        while log["cpu_s"] < target:
            x = batches(recipe.step)
            t0 = time.process_time()
            recipe.train_step(x)
            log["cpu_s"] += time.process_time() - t0
        recipe.save()
        point = {"cpu_s": round(log["cpu_s"], 1), "step": recipe.step, **score(recipe, images)}
        log["points"].append(point)
        write_json(log_path, log)
        print(f"{name}: {point}", flush=True)
    return log["points"]


def _planned_steps(args, batches: Batches, budget: float) -> int:
    """Our loop's schedule needs a length: the steps the budget buys at the speed of 5 probe steps."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        probe = Ours(Path(tmp), args, 10**6)
        probe.train_step(batches(0))  # warm-up
        t0 = time.process_time()
        for s in range(1, 6):
            probe.train_step(batches(s))
        per_step = (time.process_time() - t0) / 5
    return max(1, int(budget / per_step))


def cpu_to_reach(points: list[dict], cost: float) -> float | None:
    """CPU seconds at which a curve first reaches ``cost`` (linear between scored points), or None."""
    for a, b in zip(points, points[1:]):
        if b["rd_cost"] <= cost:
            if a["rd_cost"] <= cost:
                return a["cpu_s"]
            t = (a["rd_cost"] - cost) / (a["rd_cost"] - b["rd_cost"])
            return a["cpu_s"] + t * (b["cpu_s"] - a["cpu_s"])
    return None


def _summary(points: list[dict]) -> dict:
    """A recipe's final score and its speed: steps per CPU second over the whole budget."""
    last = points[-1]
    return {
        "cpu_s": last["cpu_s"],
        "steps": last["step"],
        "steps_per_cpu_s": round(last["step"] / last["cpu_s"], 4) if last["cpu_s"] else None,
        "final_rd_cost": last["rd_cost"],
        "final_bpp": last["bpp"],
        "final_psnr": last["psnr"],
    }


def _figure(curves: dict[str, list[dict]], path: Path) -> None:
    """RD cost against CPU hours, one line per recipe (log scale: the first minutes fall steeply)."""
    from common.plots import new_figure, save_figure

    fig = new_figure((6.4, 4.2), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    for name, points in curves.items():
        ax.plot([p["cpu_s"] / 3600 for p in points], [p["rd_cost"] for p in points], "o-", ms=3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training CPU hours (one thread)")
    ax.set_ylabel(f"RD cost on Kodak: bpp + {LAMBDA}·255²·MSE")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path.with_suffix(""), formats=("png",))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    files = list_images(resolve_set(args.data_dir, "kodak"))[: args.kodak_limit]
    images = [load_image(f)[0] for f in files]
    crops = CropDataset([resolve_set(args.data_dir, "bsds500/train")], args.patch_size)
    for i in range(len(crops)):  # decode every image now, outside any recipe's CPU time
        crops[(i, 0, SEED)]
    batches = Batches(crops, args.batch_size)
    curves = {name: run_recipe(name, args, images, batches) for name in args.recipes}
    if args.result:
        summary = {
            "command": "python scripts/benchmark_training.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "lambda": LAMBDA,
            "N": args.N,
            "M": args.M,
            "kodak_images": len(images),
            "budget_cpu_hours": args.budget_cpu_hours,
            "machine": describe(),
            "curves": curves,
            "recipes": {name: _summary(points) for name, points in curves.items()},
            "ratios": {},
        }
        ours = curves.get("ours")
        for name, points in curves.items():
            if name == "ours" or not ours:
                continue
            final = points[-1]
            reached = cpu_to_reach(ours, final["rd_cost"])
            summary["ratios"][name] = {
                "reference_final_rd_cost": final["rd_cost"],
                "reference_cpu_s": final["cpu_s"],
                "ours_cpu_s_to_reach": None if reached is None else round(reached, 1),
                "ratio": None if reached is None else round(reached / final["cpu_s"], 3),
            }
        write_json(args.result, summary)
        figure = Path(args.result).with_suffix(".png")
        _figure(curves, figure)
        print(f"wrote {args.result} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
