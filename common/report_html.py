"""report.html: one self-contained page (figures, tables, before/after sliders as data URIs).

The comparison pipeline (compare_models.py, common/report.py) hands it finished curves, BD rows and
images; nothing here measures anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from common import plots
from common.rd import BD_EXPLAINED, BD_HEADERS, LOWER_IS_BETTER, bd_cells, fmt_value

SLIDER_BUDGET_BYTES = 20 * 2**20  # images in report.html before base64; above it, sliders show crops


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
 padding:0 1em;color:#222;background:#fff}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
code,pre{background:#f4f4f4;padding:.1em .3em;border-radius:3px;font-size:.9em}
pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs img{max-width:560px;width:100%;border:1px solid #eee}
img.wide{max-width:100%;border:1px solid #eee}
.slider{position:relative;display:inline-block;max-width:100%;line-height:0;user-select:none}
.slider img{max-width:100%;display:block}
.slider img.recon{position:absolute;top:0;left:0;width:100%;height:100%}
.slider .bar{position:absolute;top:0;bottom:0;left:50%;width:2px;background:#ff0;pointer-events:none}
.slider .tag{position:absolute;top:4px;padding:2px 6px;background:rgba(0,0,0,.6);color:#fff;
 font-size:12px;line-height:1.4}
.controls{margin:.5em 0}.controls input[type=range]{width:min(600px,90%)}
.note{color:#555}
"""

JS = """
function setSplit(box, v){
  box.dataset.split=v;
  box.querySelectorAll('img').forEach(function(i){
    i.style.clipPath=i.classList.contains('right')?'inset(0 0 0 '+v+'%)':'none';});
  box.querySelector('.bar').style.left=v+'%';
}
function choose(box){
  /* left side: the original or any reconstruction; right side: any reconstruction, drawn over it */
  var l=document.querySelector('select.left[data-target="'+box.id+'"]');
  var r=document.querySelector('select.codec[data-target="'+box.id+'"]');
  box.querySelectorAll('img').forEach(function(i){
    var k=i.dataset.key, isRight=(k===r.value), isLeft=(k===l.value)&&!isRight;
    i.classList.toggle('right',isRight&&l.value!==r.value);
    i.style.zIndex=isRight?2:1;
    if(k==='orig'){i.style.visibility=(isLeft||isRight)?'':'hidden';}
    else{i.style.display=(isLeft||isRight)?'':'none';}
  });
  box.querySelector('.tag.left').textContent=l.options[l.selectedIndex].text;
  box.querySelector('.tag.right').textContent=r.options[r.selectedIndex].text;
  setSplit(box, box.dataset.split||50);
}
document.querySelectorAll('select.codec, select.left').forEach(function(s){
  var box=document.getElementById(s.dataset.target);
  s.addEventListener('change',function(){choose(box);});choose(box);});
document.querySelectorAll('input.split').forEach(function(r){
  var box=document.getElementById(r.dataset.target);
  r.addEventListener('input',function(){setSplit(box,r.value);});setSplit(box,r.value);
});
function checkImages(){
  var imgs=Array.prototype.slice.call(document.images);
  var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0);});
  document.body.dataset.imagesTotal=imgs.length;
  document.body.dataset.imagesLoaded=bad.length?('missing:'+bad.length):'all';
  if(!bad.length){document.title=document.title+' [all '+imgs.length+' images loaded]';}
}
if(document.readyState==='complete'){checkImages();}else{window.addEventListener('load',checkImages);}
"""


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{html.escape(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _best(results: dict, key: str) -> str:
    values = [v for v in results.get(key, []) if v is not None and v == v]
    best = min if key in LOWER_IS_BETTER else max
    return fmt_value(best(values), ".3f") if values else "—"


def curves_table(curves: list[dict]) -> str:
    rows = []
    for c in curves:
        r = c["results"]
        rows.append(
            [
                c["name"],
                c["kind"],
                str(len(r["bpp"])),
                f"{min(r['bpp']):.3f} – {max(r['bpp']):.3f}",
                _best(r, "psnr-rgb"),
                _best(r, "ms-ssim-rgb"),
                _best(r, "lpips"),
                c.get("description", ""),
            ]
        )
    return _table(
        ["curve", "kind", "points", "bpp range", "best PSNR dB", "best MS-SSIM", "best LPIPS", "description"],
        rows,
        {2, 4, 5, 6},
    )


def slider_html(
    index: int,
    image_name: str,
    original: bytes,
    recons: list[tuple[str, str, bytes]],
    pair: tuple[int, int] | None = None,
) -> str:
    """Two images either side of a draggable split: the original (or any reconstruction, e.g. the
    same file decoded at another realism) on the left, the chosen reconstruction on the right."""
    box = f"slider{index}"
    left, right = pair if pair else (None, 0)

    def options(chosen):
        return "".join(
            f'<option value="k{j}"{" selected" if j == chosen else ""}>{html.escape(label)}</option>'
            for j, (label, _, _) in enumerate(recons)
        )

    layers = "".join(
        f'<img class="recon" data-key="k{j}" alt="{html.escape(label)}" src="{data_uri(png, "image/png")}">'
        for j, (label, _, png) in enumerate(recons)
    )
    return (
        f"<h3>{html.escape(image_name)}</h3>"
        f'<div class="controls">left: <select class="left" data-target="{box}">'
        f'<option value="orig">original</option>{options(left)}</select> '
        f'right: <select class="codec" data-target="{box}">{options(right)}</select> '
        f'split: <input class="split" type="range" min="0" max="100" value="50" data-target="{box}"></div>'
        f'<div class="slider" id="{box}"><img class="orig" data-key="orig" alt="original {html.escape(image_name)}" '
        f'src="{data_uri(original, "image/png")}">{layers}<div class="bar"></div>'
        '<span class="tag left" style="left:4px">original</span><span class="tag right" style="right:4px"></span></div>'
    )


def report_html(
    title: str,
    command: str,
    notes: list[str],
    curves: list[dict],
    figures: list[tuple[str, bytes]],
    bd_md_rows: list[dict],
    bd_notes: list[str],
    crops: list[tuple[str, bytes]],
    sliders: list[str],
    slider_note: str,
) -> str:
    bd_table = _table(BD_HEADERS, [bd_cells(r) for r in bd_md_rows], {3, 4})
    figs = "".join(
        f'<img alt="{html.escape(name)}" title="{html.escape(name)}" src="{data_uri(png, "image/png")}">'
        for name, png in figures
    )
    crop_html = "".join(
        f'<h3>{html.escape(name)}</h3><img class="wide" alt="side by side {html.escape(name)}" '
        f'src="{data_uri(png, "image/png")}">'
        for name, png in crops
    )
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Every bpp counts every byte of a real file (header included); metrics are computed on the decoded
8-bit images. Learned models: solid lines with markers; classical codecs: dashed; published curves: dotted.</p>
<pre>{html.escape(command)}</pre>
<ul class="note">{note_items}</ul>
<h2>Curves</h2>{curves_table(curves)}
<h2>Rate-distortion</h2><div class="figs">{figs}</div>
<h2>BD-rate</h2>
<p>{html.escape(BD_EXPLAINED)}</p>{bd_table}
<ul class="note">{"".join(f"<li>{html.escape(n)}</li>" for n in bd_notes)}</ul>
<h2>Side by side at matched bitrate</h2>{crop_html}
<h2>Before / after</h2><p class="note">{html.escape(slider_note)}</p>{"".join(sliders)}
<script>{JS}</script>
</body></html>
"""


def images_shown(slider_sets: list, total: int) -> str:
    """Which images the side-by-sides and sliders show, said in the report."""
    names = ", ".join(name for name, _, _ in slider_sets)
    if len(slider_sets) == total:
        return f"Every image of the set ({names})."
    return (
        f"{len(slider_sets)} of the {total} images ({names}), chosen with --crop_images "
        "(the first two by default; --crop_images all shows every one)."
    )


def slider_sections(slider_sets: list) -> tuple[list[str], str, str]:
    """Before/after sliders with full images as PNG, or with 512 px detail crops when those exceed the budget."""

    def encoded(region):
        out = []
        for name, image, recon in slider_sets:
            box = region(image)
            items = [
                (
                    f"{p['label']} ({p['setting']}): {p['bpp']:.3f} bpp, {p['psnr-rgb']:.2f} dB",
                    p["label"],
                    png_bytes(plots.crop(r, box)),
                )
                for p, r in recon
            ]
            out.append(
                (name, png_bytes(plots.crop(image, box)), items, same_file_pair([p for p, _ in recon]))
            )
        return out

    mode, sets = "full", encoded(lambda image: (0, 0, *image.shape[:2]))
    if sum(len(o) + sum(len(i[2]) for i in items) for _, o, items, _ in sets) > SLIDER_BUDGET_BYTES:
        mode, sets = "crops", encoded(lambda image: plots.detail_box(image, 512))
    note = {
        "full": "Full images as lossless PNG. Drag the split: original (or the reconstruction chosen as "
        "left) on the left, reconstruction on the right.",
        "crops": "Full images would make this file too large, so each slider shows the most detailed 512 px "
        "square, as lossless PNG. Drag the split: original (or the reconstruction chosen as left) on the "
        "left, reconstruction on the right.",
    }[mode]
    sliders = [slider_html(i, name, orig, items, pair) for i, (name, orig, items, pair) in enumerate(sets)]
    return sliders, note, mode


def same_file_pair(points: list[dict]) -> tuple[int, int] | None:
    """The first two points decoded from byte-identical files (one file at two decode-time settings,
    e.g. realism 0 and 1): the slider opens with them either side. None when no file is shared."""
    seen = {}
    for j, p in enumerate(points):
        path = p.get("bitstream")
        if not path or not Path(path).is_file():
            continue
        key = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if key in seen:
            return seen[key], j
        seen[key] = j
    return None
