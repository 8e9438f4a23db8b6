"""Evaluate hierarchical VAE-GAN checkpoints on Kodak (default), CLIC, DIV2K or any folder, with real files.

    python evaluate.py --model_path ./output/hierarchical_vae_gan/checkpoints/best_model.pth \
        --output_dir ./eval_results/hierarchical_vae_gan --data_dir ../data --compare_bits

``--compare_bits`` also reports the bits of every level (absolute and share of the file) and decodes
each checkpoint from its top k levels only (k = 1 .. L, the levels below at their prior means):
``bit_allocation.{json,md}`` and one figure per checkpoint. The CompressAI JSON keeps one point per
checkpoint (all levels); the progressive points are in ``bit_allocation.json``.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import run_cli  # noqa: E402
from common.evaluation import build_parser, checkpoint_points, evaluate_main  # noqa: E402
from hierarchical_vae_gan.bit_allocation import csv_means, level_bits, write_report  # noqa: E402

FAMILY = "hierarchical_vae_gan"


def main(argv=None) -> int:
    parser = build_parser(FAMILY)
    parser.add_argument(
        "--compare_bits",
        "--compare-bits",
        dest="compare_bits",
        action="store_true",
        help="bits per level and progressive decoding from the top k levels",
    )
    plan = []  # (checkpoint, rate point, its view, point name, levels decoded)
    parsed = {}  # the arguments evaluate_main parsed

    def points_of(args, models):
        """Each rate point of each checkpoint (a variable-rate one: each quality), and with
        --compare_bits its decodes from the top k levels too."""
        parsed["args"] = args
        points = []
        for path, view, name, prefix in checkpoint_points(args, models):
            levels = range(1, view.L + 1) if args.compare_bits else [view.L]
            for k in levels:
                point = name if k == view.L else f"{name}-top{k}"
                plan.append((str(path), name, view, point, k))
                points.append((path, view.with_levels(k), point, prefix))
        return points

    result, _ = evaluate_main(FAMILY, argv, parser, points_of)
    args = parsed["args"]
    if not args.compare_bits:
        return 0
    out = Path(args.output_dir)
    analysis = []
    for path, rate_point, model, name, k in plan:
        if k != model.L:
            continue
        progressive = [
            {"levels": j, **csv_means(out / n / "per_image.csv")} for _, r, _, n, j in plan if r == rate_point
        ]
        bits = level_bits(model, out / name / "bitstreams")
        analysis.append({"checkpoint": path, "point": name, "bits": bits, "progressive": progressive})
        print(
            f"{name}: "
            + ", ".join(f"level {lv['level']} ({lv['scale']}) {lv['share']:.1%}" for lv in bits["levels"])
            + f", header {bits['header']['share']:.1%} of {bits['bpp']:.4f} bpp"
        )
    write_report(analysis, out)
    # the main curve: one point per checkpoint, all levels
    keep = [i for i, n in enumerate(result["points"]) if n in {a["point"] for a in analysis}]
    for key in ("checkpoints", "points"):
        result[key] = [result[key][i] for i in keep]
    result["results"] = {k: [v[i] for i in keep] for k, v in result["results"].items()}
    json_path = out / f"{FAMILY}-{Path(args.dataset).name}.json"
    json_path.write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'bit_allocation.md'} and {json_path} (all levels only)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
