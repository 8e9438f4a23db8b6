"""Where the bits of a hierarchical model go: bits per level from real files, and progressive decoding.

Read by ``evaluate.py --compare_bits``. Each level's bits are the length of its stream in the files
(streams are stored top level first); the header, stream lengths and a variable-rate file's quality
field are the file's remaining bytes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from common.bitstream import unpack
from common.errors import VAEGANError


def level_bits(model, bitstreams: Path) -> dict:
    """Average bits per image of every level (finest first) and of the header, from the .vgan files."""
    files = sorted(bitstreams.glob("*.vgan"))
    if not files:
        raise VAEGANError(f"no compressed files in {bitstreams}")
    per_level = np.zeros(model.L)
    header_bits, pixels = 0.0, 0
    for f in files:
        data = f.read_bytes()
        header, compressed = unpack(data)
        streams = model.level_streams(compressed)  # a variable-rate file's quality field is header
        if len(streams) != model.L:
            raise VAEGANError(f"{f} holds {len(streams)} levels; expected all {model.L}")
        stream_bits = [8 * len(s) for s in streams]  # top level first
        per_level += stream_bits[::-1]
        header_bits += 8 * len(data) - sum(stream_bits)
        pixels += header.size[0] * header.size[1]
    n = len(files)
    total = per_level.sum() + header_bits
    levels = []
    for level in range(model.L):
        scale = 16 << level
        levels.append(
            {
                "level": level,
                "scale": f"1/{scale}",
                "bits_per_image": float(per_level[level] / n),
                "bpp": float(per_level[level] / pixels),
                "share": float(per_level[level] / total),
            }
        )
    return {
        "images": n,
        "levels": levels,
        "header": {
            "bits_per_image": header_bits / n,
            "bpp": header_bits / pixels,
            "share": header_bits / total,
        },
        "bpp": float(total / pixels),
    }


def csv_means(per_image_csv: Path, keys=("bpp", "psnr-rgb", "ms-ssim-rgb", "lpips")) -> dict:
    """Means over the images of each of ``keys`` that the CSV has (LPIPS only when it was measured)."""
    with open(per_image_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: float(np.nanmean([float(r[k]) for r in rows])) for k in keys if rows and k in rows[0]}


def write_report(analysis: list[dict], out: Path) -> None:
    """bit_allocation.json, a Markdown table and one figure per checkpoint."""
    (out / "bit_allocation.json").write_text(json.dumps(analysis, indent=2))
    lines = []
    for a in analysis:
        lines += [
            f"### {a['point']} ({a['checkpoint']})",
            "",
            "| level | scale | bits/image | bpp | share of file |",
            "| --- | --- | --- | --- | --- |",
        ]
        for lv in a["bits"]["levels"][::-1]:
            lines.append(
                f"| {lv['level']} | {lv['scale']} | {lv['bits_per_image']:.0f} | {lv['bpp']:.4f} | {lv['share']:.1%} |"
            )
        h = a["bits"]["header"]
        lines += [f"| header | | {h['bits_per_image']:.0f} | {h['bpp']:.4f} | {h['share']:.1%} |", ""]
        lpips = all("lpips" in p for p in a["progressive"])
        lines += ["| top levels decoded | bpp | PSNR (dB) | MS-SSIM |" + (" LPIPS |" if lpips else "")]
        lines += ["| --- | --- | --- | --- |" + (" --- |" if lpips else "")]
        for p in a["progressive"]:
            row = f"| {p['levels']} | {p['bpp']:.4f} | {p['psnr-rgb']:.2f} | {p['ms-ssim-rgb']:.4f} |"
            lines.append(row + (f" {p['lpips']:.4f} |" if lpips else ""))
        lines.append("")
    (out / "bit_allocation.md").write_text("\n".join(lines))
    for a in analysis:
        _figure(a, out / f"bit_allocation-{a['point']}.png")


def _figure(a: dict, path: Path) -> None:
    from common.plots import new_figure, save_figure

    fig = new_figure((10, 4), dpi=120)
    left, right = fig.subplots(1, 2)
    levels = a["bits"]["levels"]
    bottom = 0.0
    for lv in levels[::-1]:  # top level at the bottom of the bar: it is decoded first
        left.bar(0, lv["bpp"], bottom=bottom, label=f"level {lv['level']} ({lv['scale']}): {lv['share']:.0%}")
        bottom += lv["bpp"]
    left.bar(0, a["bits"]["header"]["bpp"], bottom=bottom, color="grey", label="header")
    left.set_xticks([])
    left.set_ylabel("bits per pixel")
    left.set_title("bits per level")
    left.legend(fontsize=8)
    prog = a["progressive"]
    right.plot([p["bpp"] for p in prog], [p["psnr-rgb"] for p in prog], "o-")
    for p in prog:
        right.annotate(f"top {p['levels']}", (p["bpp"], p["psnr-rgb"]), fontsize=8)
    right.set_xlabel("bpp (real files)")
    right.set_ylabel("PSNR (dB)")
    right.set_title("progressive decoding")
    right.grid(alpha=0.3)
    fig.suptitle(a["point"])
    fig.tight_layout()
    save_figure(fig, path.with_suffix(""), formats=("png",))
