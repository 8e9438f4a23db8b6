"""Where a comparison point's time goes: seconds per image for the codec and each metric, one thread.

    python scripts/metric_cost.py --images ~/.cache/vaegan/sample_images --output metric_cost.json

Times one mid-quality WebP point over the images: encode + decode, PSNR, SSIM, MS-SSIM, LPIPS
(AlexNet) and the patch-FID features of the reconstruction (what compare_models computes per point;
the originals' features are cached there, so they are left out here too).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.baselines import get_codec  # noqa: E402
from common.cli import HelpFormatter, run_cli  # noqa: E402
from common.datasets import list_images, load_image  # noqa: E402
from common.files import write_json  # noqa: E402
from common.metrics import (  # noqa: E402
    PatchFID,
    extract_patches,
    load_lpips,
    lpips_distance,
    ms_ssim,
    psnr,
    ssim,
)

METRICS = {  # name -> work(image, decoded, lpips_model, fid, original features)
    "psnr": lambda a, b, lp, fid, orig: psnr(a, b),
    "ssim": lambda a, b, lp, fid, orig: ssim(a, b),
    "ms_ssim": lambda a, b, lp, fid, orig: ms_ssim(a, b),
    "lpips": lambda a, b, lp, fid, orig: lpips_distance(lp, a, b),
    "fid_features": lambda a, b, lp, fid, orig: fid.update(a, b, original_features=orig),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--images", required=True, help="a folder of images")
    p.add_argument("--output", default=None, help="JSON with the seconds per image")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    images = [load_image(f)[0] for f in list_images(Path(args.images).expanduser())]
    codec = get_codec("webp")
    lpips_model = load_lpips("cpu", net="alex")
    fid = PatchFID()
    seconds = dict.fromkeys(("codec", *METRICS), 0.0)
    for image in images:
        t = time.perf_counter()
        decoded = codec.decode(codec.encode(image, codec.qualities[len(codec.qualities) // 2]))
        seconds["codec"] += time.perf_counter() - t
        originals = fid.features(extract_patches(image, fid.patch_size))  # cached in compare_models
        for name, work in METRICS.items():
            t = time.perf_counter()
            work(image, decoded, lpips_model, fid, originals)
            seconds[name] += time.perf_counter() - t
    per_image = {k: round(v / len(images), 3) for k, v in seconds.items()}
    print(f"seconds per image over {len(images)} images, one thread: {per_image}")
    if args.output:
        write_json(args.output, {"images": len(images), "threads": 1, "seconds_per_image": per_image})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
