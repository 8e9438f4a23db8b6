"""Compare the VAE-GAN families with classical codecs on one image set.

    python compare_models.py --output_dir results/demo
    python compare_models.py --beta_model_path beta_vae_gan/pretrained --vq_model_path RUN/checkpoints \
        --data_dir ../data --dataset kodak --codecs jpeg420 webp hevc --output_dir comparison_results

Writes RD figures (PNG + SVG), bd_rate.md/.csv, side-by-side crops at --target_bpp, a self-contained
report.html and summary.json into --output_dir. With no model flag it uses every family's shipped
checkpoints; with no Kodak under --data_dir it uses scikit-image's sample photos. ``main`` below is
the whole pipeline, step by step; the steps live in common/report.py (images, model points, cache),
common/baselines.py (codecs), common/rd.py (BD tables), common/plots.py and common/report_html.py.
See --help for every flag.
"""

import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import plots  # noqa: E402
from common.baselines import available_codecs, get_codec, sweep_cached  # noqa: E402
from common.cli import run_cli  # noqa: E402
from common.datasets import file_fingerprints  # noqa: E402
from common.errors import VAEGANError  # noqa: E402
from common.evaluation import perceptual_metrics  # noqa: E402
from common.files import write_json  # noqa: E402
from common.rd import bd_rows, write_bd_tables  # noqa: E402
from common.report import (  # noqa: E402
    FIGURES,
    SAMPLE_RATE_POINTS,
    SAMPLE_SET,
    build_parser,
    choose_images,
    decode_variants,
    digest,
    load_families,
    load_results_file,
    model_curve,
    resolve_files,
    side_by_sides,
)
from common.report_html import images_shown, report_html, slider_sections  # noqa: E402


class Stopwatch:
    """Wall time per pipeline step, so every run says what its minutes went to."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, label: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0

    def line(self) -> str:
        total = sum(self.seconds.values())
        parts = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        return f"time: {total:.0f} s in all; " + ", ".join(f"{k} {v:.0f} s" for k, v in parts)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    timed = Stopwatch()
    argv_used = sys.argv[1:] if argv is None else list(argv)
    command = "python compare_models.py " + shlex.join(argv_used)
    progress = not args.quiet
    cache_root = Path(args.cache_dir).expanduser()
    out = Path(args.output_dir)
    if args.target_bpp <= 0:
        raise VAEGANError(f"--target_bpp must be positive, got {args.target_bpp}")
    if args.limit is not None and args.limit < 1:
        raise VAEGANError(f"--limit must be at least 1, got {args.limit}")
    if args.rate_points is not None and args.rate_points < 2:
        raise VAEGANError(f"--rate_points must be at least 2 (a curve), got {args.rate_points}")

    installed = available_codecs()
    codecs = installed if args.codecs is None else args.codecs
    for name in codecs:
        get_codec(name)  # unknown names fail here, listing the known ones
        if name not in installed:
            get_codec(name).library()  # raises the install hint
    extra = [load_results_file(p) for p in args.results]
    with timed("checkpoints and images"):
        families, notes = load_families(args)
        files, set_name, data_notes = resolve_files(args, cache_root)
    notes = data_notes + notes
    max_points = args.rate_points
    if max_points is None and set_name == SAMPLE_SET:
        max_points = SAMPLE_RATE_POINTS
        notes.append(f"sample photos: at most {max_points} rate points per curve (--rate_points to change)")
        print(notes[-1])
    crop_files = choose_images(files, args.crop_images)
    fingerprint = digest(file_fingerprints(files))

    metric_args = SimpleNamespace(
        device=args.device, lpips_net=args.lpips_net, no_fid=args.no_fid, cache_dir=cache_root / "fid_stats"
    )
    with timed("metric models and FID reference"):
        lpips_model, fid_reference = perceptual_metrics(metric_args, files)
    if lpips_model is None:
        notes.append("LPIPS not measured: its backbone weights are not available offline")
    if fid_reference is None:
        notes.append(
            "FID/KID not measured" + (" (--no_fid)" if args.no_fid else ": Inception weights missing")
        )

    curves = []
    for family, checkpoints in families.items():
        for variant, views in decode_variants(checkpoints).items():  # e.g. a realism decoder's ends
            with timed(family + variant):
                curves.append(
                    model_curve(
                        family,
                        views,
                        files,
                        cache_root / "models",
                        lpips_model,
                        fid_reference,
                        progress,
                        variant,
                        max_points,
                    )
                )
    for name in codecs:
        with timed(name):
            curve = sweep_cached(
                name,
                files,
                cache_root / "codecs" / f"{set_name}-{fingerprint}",
                progress=progress,
                lpips_model=lpips_model,
                fid_reference=fid_reference,
                published=args.codec_results,
                max_points=max_points,
            )
        curves.append(curve | {"kind": "codec", "id": name})
    curves += extra
    if not curves:
        raise VAEGANError("nothing to compare: no model checkpoints, no codecs and no --results files")
    for c in curves:
        if "ms-ssim-rgb" in c["results"]:
            c["results"]["ms-ssim-db"] = plots.ms_ssim_db(c["results"]["ms-ssim-rgb"])

    with timed("figures, BD tables and crops"):
        out.mkdir(parents=True, exist_ok=True)
        figures = []
        for stem, metric, bpp_range, title in FIGURES:
            fig = plots.rd_figure(curves, metric, bpp_range, f"{title} ({set_name}, {len(files)} images)")
            if fig is None:
                continue
            plots.save_figure(fig, out / stem)
            figures.append((stem, plots.figure_png(fig)))
        print(f"figures: {', '.join(s for s, _ in figures)} (.png and .svg) in {out}")

        rows, bd_notes = bd_rows(curves, args.anchors)
        write_bd_tables(rows, bd_notes, out)

        crops, side_info, slider_sets = side_by_sides(curves, crop_files, args.target_bpp, cache_root, out)
        sliders, slider_note, slider_mode = slider_sections(slider_sets)
        slider_note = images_shown(slider_sets, len(files)) + " " + slider_note

    title = f"Learned vs classical compression on {set_name} ({len(files)} images)"
    page = report_html(title, command, notes, curves, figures, rows, bd_notes, crops, sliders, slider_note)
    (out / "report.html").write_text(page)
    summary = {
        "command": command,
        "argv": argv_used,
        "dataset": set_name,
        "files": [str(f) for f in files],
        "notes": notes,
        "target_bpp": args.target_bpp,
        "curves": curves,
        "bd_rate": rows,
        "bd_rate_notes": bd_notes,
        "side_by_side": side_info,
        "figures": [s for s, _ in figures],
        "report_html_bytes": len(page.encode()),
        "slider_images": slider_mode,
        "seconds": timed.seconds,
    }
    write_json(out / "summary.json", summary)
    print(f"wrote {out / 'report.html'} ({len(page.encode()) / 2**20:.1f} MB), bd_rate.md/.csv, summary.json")
    print(timed.line())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
