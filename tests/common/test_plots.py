"""common/plots.py: RD figures, error maps, detail crops, grids, the one-model helper."""

import numpy as np
import pytest
from PIL import Image

from common import plots
from tests.conftest import random_image


def curve(name, bpp, psnr, kind="codec", **more):
    return {"name": name, "kind": kind, "results": {"bpp": bpp, "psnr-rgb": psnr, **more}}


def test_rd_figure_draws_one_line_per_curve_with_the_metric():
    curves = [
        curve("model", [0.1, 0.3], [25.0, 28.0], kind="model", **{"ms-ssim-rgb": [0.9, 0.99]}),
        curve("jpeg", [0.2, 0.5, 1.0], [24.0, 29.0, 33.0]),
    ]
    fig = plots.rd_figure(curves, "psnr-rgb")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["model", "jpeg"]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--"]
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] == pytest.approx(1.05)
    db = plots.rd_figure(curves, "ms-ssim-db").axes[0].get_lines()
    assert len(db) == 1 and db[0].get_ydata() == pytest.approx([10.0, 20.0])  # -10 log10(1 - x)
    assert plots.rd_figure(curves, "fid") is None
    assert plots.figure_to_array(fig).shape[2] == 3


def test_error_map_is_dark_where_equal_and_bright_where_wrong(rng):
    a = random_image(rng, 32, 48)
    b = a.copy()
    b[:, 24:] = 255 - b[:, 24:]
    m = plots.error_map(a, b, vmax=255)
    assert m.shape == (32, 48, 3) and m.dtype == np.uint8
    assert m[:, :24].sum(axis=-1).max() < m[:, 24:].sum(axis=-1).mean()
    with pytest.raises(ValueError):
        plots.error_map(a, b[:-1])


def test_detail_box_finds_the_textured_square(rng):
    image = np.full((300, 400, 3), 128, np.uint8)
    image[180:244, 300:364] = rng.integers(0, 256, (64, 64, 3))
    top, left, h, w = plots.detail_box(image, 64, stride=4)
    assert (h, w) == (64, 64) and abs(top - 180) <= 4 and abs(left - 300) <= 4
    assert plots.detail_box(image[:50, :50], 64)[2:] == (50, 50)  # never larger than the image


def test_reconstruction_grid_and_side_by_side_layout(rng):
    originals = [random_image(rng, 64, 96) for _ in range(2)]
    recs = [[o, 255 - o] for o in originals]
    fig = plots.reconstruction_grid(originals, recs, ["same", "inverted"], [["x", "y"]] * 2)
    assert len(fig.axes) == 2 * 3
    with pytest.raises(ValueError):
        plots.reconstruction_grid(originals, [[originals[0]]] * 2, ["same", "inverted"])
    fig, box, inset = plots.side_by_side(originals[0], [("inv", 255 - originals[0], "cap")])
    assert box == (0, 0, 64, 96) and inset[2] <= 64  # the whole image when smaller than 256 px


def test_checkpoint_visuals_reports_the_real_file(tiny_beta_path, tmp_path, rng):
    path = tmp_path / "img.png"
    image = random_image(rng, 64, 80)
    Image.fromarray(image).save(path)
    grid, errors, info = plots.checkpoint_visuals(tiny_beta_path, path)
    assert info["bpp"] == pytest.approx(8 * info["bytes"] / (64 * 80))
    assert info["family"] == "beta_vae_gan" and errors.shape == (64, 80, 3)
    assert len(grid.axes) == 3


def test_rd_legend_sits_beside_the_axes_and_hides_no_curve():
    curves = [
        {
            "name": f"curve {i}",
            "kind": "codec",
            "results": {"bpp": [0.1, 0.5, 1.0], "psnr-rgb": [25 + i, 30 + i, 33 + i]},
        }
        for i in range(12)
    ]
    fig = plots.rd_figure(curves, "psnr-rgb")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    axes = ax.get_window_extent()
    assert legend.x0 >= axes.x1  # wholly to the right of the plotting area
    assert len(ax.get_legend().get_texts()) == 12
    assert legend.x1 <= fig.bbox.x1 + 1  # and inside the figure, not cut off
