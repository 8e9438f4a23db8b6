"""Speed of every family on this machine: encode and decode megapixels/s (transforms and entropy
coding timed apart), entropy-coder symbols/s, training images/s, peak memory; a JSON report.

    python scripts/benchmark.py --output benchmark.json                 # all families, all cores
    python scripts/benchmark.py --model_path ckpt.pth --threads 1 --devices cpu
    python scripts/benchmark.py --families beta_vae_gan --realism 0 1 --skip_train  # both decode ends

Models: each ``--model_path``; otherwise per family its default shipped checkpoint (common.zoo), or,
when it has none, a freshly initialised model with the default config (the report says which).
The entropy coder's share is measured by timing every ``compress``/``decompress`` call of the
model's entropy models; the rest of ``model.compress``/``model.decompress`` is the network
(including the float64 CPU hyper-decoder that picks the coding tables). Each figure is the median of
``--repeats`` runs after ``--warmup`` runs; peak memory comes from a separate, untimed run.
Next to wall-clock seconds the report gives this process's CPU seconds (``*_cpu_s``): on a machine
shared with other jobs, the CPU seconds of a ``--threads 1`` run are what one quiet core would take.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import zoo  # noqa: E402
from common.checkpoint import load_model  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.datasets import IMAGE_EXTENSIONS, load_image, to_tensor  # noqa: E402
from common.errors import CheckpointError, VAEGANError  # noqa: E402
from common.machine import describe, load_average  # noqa: E402
from common.registry import FAMILIES, model_class  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", "--model-path", nargs="+", default=None, help="checkpoints to time")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), help="families (without --model_path)")
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all)")
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--image", default=None, help="image to code (default: a Kodak image of that size)")
    p.add_argument("--data_dir", "--data-dir", default="data", help="where kodak/ is looked for")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--train_size", "--train-size", type=int, default=256)
    p.add_argument("--train_batch", "--train-batch", type=int, default=8)
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="training step only")
    p.add_argument("--channels_last", "--channels-last", action="store_true", help="training step only")
    p.add_argument("--skip_train", "--skip-train", action="store_true")
    p.add_argument(
        "--realism",
        type=float,
        nargs="+",
        default=None,
        help="time decoding at these realism settings (models with a realism decoder; one row each)",
    )
    p.add_argument("--output", default=None, help="JSON report")
    return p


# --------------------------------------------------------------------------------------------------
# Measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EntropyTimer:
    """Wraps every entropy model's compress/decompress: seconds spent and symbols coded."""

    def __init__(self, model):
        self.seconds = {"compress": 0.0, "decompress": 0.0}
        self.symbols = {"compress": 0, "decompress": 0}
        self._undo = []
        for module in model.entropy_models():
            for name in ("compress", "decompress"):
                self._wrap(module, name)

    def _wrap(self, module, name: str) -> None:
        inner = getattr(module, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            result = inner(*args, **kwargs)
            self.seconds[name] += time.perf_counter() - t0
            if name == "compress":  # the symbols are the first tensor argument
                self.symbols[name] += next(a.numel() for a in args if torch.is_tensor(a))
            else:  # the decoded symbols are the result
                self.symbols[name] += result.numel()
            return result

        setattr(module, name, timed)
        self._undo.append((module, name))

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.symbols = dict.fromkeys(self.symbols, 0)

    def remove(self) -> None:
        for module, name in self._undo:
            delattr(module, name)


@contextmanager
def peak_memory(device: torch.device):
    """Yields a dict that holds, on exit, the peak memory above the start in MB (CUDA: allocator
    peak; CPU: resident set size sampled every millisecond, since torch's allocations are outside
    tracemalloc's view)."""
    out: dict = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["peak_mb"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
        out["kind"] = "torch.cuda.max_memory_allocated above start"
        return
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join()
        peak[0] = max(peak[0], rss())
        out["peak_mb"] = round((peak[0] - base) / 2**20, 1)
        out["kind"] = "resident set size above start (sampled each ms)"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def time_coding(model, x: torch.Tensor, device: torch.device, repeats: int, warmup: int) -> dict:
    timer = EntropyTimer(model)
    enc, dec, enc_ec, dec_ec, enc_cpu, dec_cpu = [], [], [], [], [], []
    try:
        for i in range(warmup + repeats):
            timer.reset()
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            compressed = model.compress(x)
            _sync(device)
            t1, c1 = time.perf_counter(), time.process_time()
            x_hat = model.decompress(compressed)
            _sync(device)
            t2, c2 = time.perf_counter(), time.process_time()
            if i >= warmup:
                enc.append(t1 - t0)
                dec.append(t2 - t1)
                enc_cpu.append(c1 - c0)
                dec_cpu.append(c2 - c1)
                enc_ec.append(timer.seconds["compress"])
                dec_ec.append(timer.seconds["decompress"])
        symbols = dict(timer.symbols)
        with peak_memory(device) as mem_enc:
            compressed = model.compress(x)
        with peak_memory(device) as mem_dec:
            x_hat = model.decompress(compressed)
    finally:
        timer.remove()
    h, w = x.shape[-2:]
    mp = h * w / 1e6
    e, d, ee, de = map(_median, (enc, dec, enc_ec, dec_ec))
    mse = float(((x_hat.float().cpu() - x.float().cpu()) ** 2).mean())
    return {
        "encode_s": round(e, 4),
        "decode_s": round(d, 4),
        "encode_plus_decode_s": round(e + d, 4),
        "encode_cpu_s": round(_median(enc_cpu), 4),
        "decode_cpu_s": round(_median(dec_cpu), 4),
        "encode_network_s": round(e - ee, 4),
        "encode_entropy_s": round(ee, 4),
        "decode_network_s": round(d - de, 4),
        "decode_entropy_s": round(de, 4),
        "encode_mpix_per_s": round(mp / e, 3),
        "decode_mpix_per_s": round(mp / d, 3),
        "encode_network_mpix_per_s": round(mp / max(e - ee, 1e-9), 3),
        "decode_network_mpix_per_s": round(mp / max(d - de, 1e-9), 3),
        "entropy_encode_symbols_per_s": round(symbols["compress"] / max(ee, 1e-9)),
        "entropy_decode_symbols_per_s": round(symbols["decompress"] / max(de, 1e-9)),
        "symbols_per_image": symbols["compress"],
        "stream_bpp": round(8 * sum(len(s) for s in compressed.streams) / (h * w), 4),
        "psnr_db": round(10 * np.log10(1 / max(mse, 1e-12)), 2),
        "encode_peak_memory_mb": mem_enc["peak_mb"],
        "decode_peak_memory_mb": mem_dec["peak_mb"],
        "memory_kind": mem_enc["kind"],
        # what the codec checks against $VAEGAN_MAX_MEMORY before running (CompressionModel.memory_bytes)
        "memory_estimate_mb": round(model.memory_bytes((h, w)) / 2**20, 1),
        "runs": {"encode_s": [round(v, 4) for v in enc], "decode_s": [round(v, 4) for v in dec]},
    }


def time_training(model, device: torch.device, args) -> dict:
    """Seconds per generator + discriminator step (adversarial on) of the real training loop."""
    from PIL import Image

    from common.train_config import TrainConfig
    from common.training import Trainer

    size, batch = args.train_size, args.train_batch
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        (Path(tmp) / "train").mkdir()
        for i in range(batch):
            img = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            Image.fromarray(img).resize((size, size), Image.BILINEAR).save(Path(tmp) / "train" / f"{i}.png")
        cfg = TrainConfig(
            output_dir=str(Path(tmp) / "out"),
            data_dir=tmp,
            train_sets=["train"],
            val_sets=["train"],
            batch_size=batch,
            patch_size=size,
            disc_start=0,
            lambda_adv=0.1,
            threads=args.threads,
            device=str(device),
            amp=args.amp,
            channels_last=args.channels_last,
        )
        trainer = Trainer(type(model), model.config, cfg)
        x = torch.stack([trainer.train_set[(i, 0, 0)] for i in range(batch)]).to(device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        times, cpu = [], []
        for i in range(args.warmup + args.repeats):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.train_step(x)
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        with peak_memory(device) as mem:
            trainer.train_step(x)
            _sync(device)
    step = _median(times)
    return {
        "train_step_s": round(step, 4),
        "train_step_cpu_s": round(_median(cpu), 4),
        "train_images_per_s": round(batch / step, 3),
        "train_batch": batch,
        "train_size": size,
        "train_amp": args.amp,
        "train_channels_last": args.channels_last,
        "train_peak_memory_mb": mem["peak_mb"],
        "train_runs_s": [round(v, 4) for v in times],
    }


# --------------------------------------------------------------------------------------------------
# What to time


def models_to_time(args) -> tuple[list[tuple[str, object]], list[str]]:
    """[(source description, model)], and notes on families that were skipped."""
    notes = []
    if args.model_path:
        return [(str(p), load_model(p)) for p in args.model_path], notes
    out = []
    for family in args.families:
        if family not in FAMILIES:
            raise VAEGANError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
        try:
            cls = model_class(family)
        except CheckpointError as exc:
            notes.append(f"{family}: skipped, its module does not import ({exc})")
            print(f"note: {notes[-1]}")
            continue
        try:
            path = zoo.default_checkpoint(family)
            out.append((f"shipped checkpoint {path.relative_to(zoo.ROOT)}", load_model(path)))
        except CheckpointError:
            torch.manual_seed(0)
            model = cls(cls.Config()).eval()
            model.update()
            out.append(("freshly initialised model, default config (no shipped checkpoint)", model))
    return out, notes


def test_image(args) -> tuple[torch.Tensor, str]:
    """A Kodak image of the requested size if one is at hand, else a smooth synthetic image."""
    w, h = args.width, args.height
    candidates = [Path(args.image)] if args.image else sorted((Path(args.data_dir) / "kodak").glob("*"))
    for path in candidates:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        array, _ = load_image(path)
        if array.shape[:2] == (h, w) or args.image:
            return to_tensor(np.ascontiguousarray(array[:h, :w])), str(path)
    rng = np.random.default_rng(0)
    from PIL import Image

    base = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    array = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
    return to_tensor(array), f"synthetic smooth random image {w}x{h} (no Kodak image found)"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise VAEGANError("--repeats and --threads must be at least 1, --warmup at least 0")
    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for d in devices:
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise VAEGANError(f"--devices {d}: no CUDA device is available")
    image, image_source = test_image(args)
    report = {
        "machine": describe(),
        "threads": args.threads,
        "image": image_source,
        "image_size": [args.width, args.height],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "command": " ".join(
            ["python", "scripts/benchmark.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "results": [],
    }
    models, report["skipped"] = models_to_time(args)
    for source, model in models:
        for name in devices:
            device = torch.device(name)
            model.to(device).eval()
            x = image.to(device)
            # decoding above realism 0 runs the realism decoder too, so each setting is timed apart
            views = [(zoo.at_realism(model, w), w) for w in args.realism] if args.realism else [(model, None)]
            for i, (view, realism) in enumerate(views):
                row = {
                    "family": model.family,
                    "model": source,
                    "config": asdict(model.config),
                    "device": name,
                }
                where = "" if realism is None else f", realism {realism:g}"
                print(f"{model.family} on {name} ({source}{where}) ...", flush=True)
                if realism is not None:
                    row["realism"] = realism
                row |= time_coding(view, x, device, args.repeats, args.warmup)
                if not args.skip_train and i == 0:  # training does not depend on the decode setting
                    row |= time_training(model, device, args)
                report["results"].append(row)
                print(_summary(row), flush=True)
        model.to("cpu")
    load = load_average()
    if load is not None:
        report["machine"]["load_average_at_end"] = load
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


def _summary(row: dict) -> str:
    text = (
        f"  CPU seconds: encode {row['encode_cpu_s']:.3f}, decode {row['decode_cpu_s']:.3f}\n"
        f"  encode {row['encode_s']:.3f} s ({row['encode_mpix_per_s']:.3f} MP/s; entropy coding "
        f"{row['encode_entropy_s']:.3f} s), decode {row['decode_s']:.3f} s ({row['decode_mpix_per_s']:.3f} MP/s; "
        f"entropy coding {row['decode_entropy_s']:.3f} s), coder {row['entropy_encode_symbols_per_s']:,} / "
        f"{row['entropy_decode_symbols_per_s']:,} symbols/s, peak {row['encode_peak_memory_mb']} / "
        f"{row['decode_peak_memory_mb']} MB"
    )
    if "train_images_per_s" in row:
        text += (
            f"\n  training {row['train_images_per_s']:.2f} images/s ({row['train_size']} px, batch "
            f"{row['train_batch']}; {row['train_step_cpu_s']:.3f} CPU s per step), "
            f"peak {row['train_peak_memory_mb']} MB"
        )
    return text


if __name__ == "__main__":
    sys.exit(run_cli(main))
