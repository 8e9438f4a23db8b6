"""Classical codecs: real library bytes, sizes growing with quality, the shared metrics, the sweep cache."""

import io
import json
import sys
from dataclasses import replace

import numpy as np
import pytest

from common import baselines
from common.baselines import CODECS, available_codecs, encode_decode, sweep, sweep_cached
from common.errors import VAEGANError


@pytest.fixture(scope="module")
def crops(shared_data, tmp_path_factory):
    """Two Kodak images cropped to 192 x 176 (MS-SSIM needs > 160 px), saved as PNG files."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("kodak_crops")
    files = []
    for name in ("kodim05.png", "kodim23.png"):
        with Image.open(shared_data / "kodak" / name) as img:
            img.convert("RGB").crop((200, 100, 392, 276)).save(folder / name)
        files.append(folder / name)
    return files


def _image(path):
    from common.datasets import load_image

    return load_image(path)[0]


def test_every_codec_is_usable_here():
    assert available_codecs() == list(CODECS)


@pytest.mark.parametrize("name", list(CODECS))
def test_bytes_grow_with_quality_and_decoding_gives_the_image_shape(name, crops):
    image = _image(crops[0])
    sizes = []
    qualities = CODECS[name].qualities
    for q in qualities[:: max(1, len(qualities) // 5)] + qualities[-1:]:  # about 6, both ends included
        data, decoded = encode_decode(name, image, q)
        assert isinstance(data, bytes) and decoded.dtype == np.uint8 and decoded.shape == image.shape
        sizes.append(len(data))
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0], sizes
    # the best setting is close to the original, so the decoder really decodes this image
    assert np.abs(decoded.astype(float) - image).mean() < 6


def test_hevc_uses_the_stated_chroma():
    import pillow_heif

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data, _ = encode_decode("hevc", image, 50)
    assert str(pillow_heif.open_heif(io.BytesIO(data)).info["chroma"]) == baselines.HEVC_CHROMA == "444"
    assert "4:4:4" in CODECS["hevc"].description


class TinyFeatures:
    """Stands in for Inception: a few pixel statistics per patch, so FID/KID plumbing runs in ms."""

    def __call__(self, patches):
        p = np.asarray(patches, dtype=np.float64).reshape(len(patches), -1)
        return np.stack([p.mean(1), p.std(1), p[:, ::7].mean(1), p[:, 1::5].std(1)], axis=1)


def _reference(files):
    from common.evaluation import ReferenceFeatures

    return ReferenceFeatures(files, TinyFeatures(), cache_dir=None, patch_size=48)


def test_sweep_scores_real_bytes_with_the_shared_metrics(crops):
    from common.metrics import load_lpips, ms_ssim, psnr, ssim

    codec = replace(CODECS["jpeg420"], qualities=(50, 10))
    lpips_model = load_lpips(pnet_rand=True)
    result = sweep(codec, crops, progress=False, lpips_model=lpips_model, fid_reference=_reference(crops))
    r = result["results"]
    assert (
        result["name"] == codec.name
        and "Pillow" in result["description"]
        and "2 images" in result["description"]
    )
    assert r["quality"] == [10, 50] and r["bpp"] == sorted(r["bpp"])
    for key in (
        "psnr-rgb",
        "ms-ssim-rgb",
        "ssim-rgb",
        "lpips",
        "encoding_time",
        "decoding_time",
        "fid",
        "kid",
    ):
        assert len(r[key]) == 2 and all(np.isfinite(r[key])), key
    # the averages are exactly the shared metrics over the two images at quality 10
    pairs = [(im, encode_decode("jpeg420", im, 10)) for im in map(_image, crops)]
    bpp = np.mean([8 * len(data) / (im.shape[0] * im.shape[1]) for im, (data, _) in pairs])
    assert abs(r["bpp"][0] - bpp) < 1e-12
    assert abs(r["psnr-rgb"][0] - np.mean([psnr(im, dec) for im, (_, dec) in pairs])) < 1e-9
    assert abs(r["ssim-rgb"][0] - np.mean([ssim(im, dec) for im, (_, dec) in pairs])) < 1e-9
    assert abs(r["ms-ssim-rgb"][0] - np.mean([ms_ssim(im, dec) for im, (_, dec) in pairs])) < 1e-6
    assert r["fid"][0] > r["fid"][1]  # fewer bits, further from the originals
    from common.metrics import extract_patches

    patches = sum(len(extract_patches(_image(f), 48)) for f in crops)
    assert r["num_patches"] == [patches, patches] and patches > 2


def test_sweep_cached_reuses_and_recomputes(crops, tmp_path, monkeypatch):
    calls = []

    def counting(image, q):
        calls.append(q)
        return CODECS_BEFORE["jpeg420"].encode(image, q)

    def failing(image, q):
        raise AssertionError("the cached sweep must not encode")

    CODECS_BEFORE = dict(CODECS)
    small = replace(CODECS["jpeg420"], qualities=(20, 60), encode=counting)
    monkeypatch.setitem(CODECS, "jpeg420", small)
    first = sweep_cached("jpeg420", crops, tmp_path, progress=False)
    assert len(calls) == 4 and (tmp_path / "jpeg420.json").is_file()

    monkeypatch.setitem(CODECS, "jpeg420", replace(small, encode=failing))
    assert sweep_cached("jpeg420", crops, tmp_path, progress=False) == first

    monkeypatch.setitem(CODECS, "jpeg420", small)
    one = sweep_cached("jpeg420", crops[:1], tmp_path, progress=False)  # another file list
    assert len(calls) == 6 and "1 images" in one["description"]
    with_fid = sweep_cached("jpeg420", crops[:1], tmp_path, progress=False, fid_reference=_reference(crops))
    assert len(calls) == 8 and "fid" in with_fid["results"]  # a metric the cache lacked
    monkeypatch.setitem(CODECS, "jpeg420", replace(small, encode=failing))
    assert sweep_cached("jpeg420", crops[:1], tmp_path, progress=False) == with_fid  # a superset will do
    monkeypatch.setitem(CODECS, "jpeg420", replace(small, encode=failing, qualities=(20, 70)))
    with pytest.raises(AssertionError, match="must not encode"):  # other qualities: recomputed
        sweep_cached("jpeg420", crops[:1], tmp_path, progress=False)
    assert json.loads((tmp_path / "jpeg420.json").read_text())["result"] == with_fid


def test_a_published_sweep_is_reused_only_when_its_key_and_metrics_match(crops, tmp_path, monkeypatch):
    def failing(image, q):
        raise AssertionError("the published sweep must not encode")

    small = replace(CODECS["jpeg420"], qualities=(20, 60))
    monkeypatch.setitem(CODECS, "jpeg420", small)
    measured = sweep_cached("jpeg420", crops[:1], tmp_path / "first", progress=False)
    assert measured["sweep"]["metrics"] == [
        "bpp",
        "psnr-rgb",
        "ms-ssim-rgb",
        "ssim-rgb",
        "encoding_time",
        "decoding_time",
    ]
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "jpeg420.json").write_text(json.dumps(measured))  # what run_baselines writes

    monkeypatch.setitem(CODECS, "jpeg420", replace(small, encode=failing))
    cache = tmp_path / "cache"
    reused = sweep_cached(
        "jpeg420", crops[:1], cache, progress=False, published=[tmp_path / "none", tmp_path / "pub"]
    )
    assert reused == measured
    assert sweep_cached("jpeg420", crops[:1], cache, progress=False) == measured  # now in the cache too
    for kwargs in (
        {"files": crops[1:2]},  # other image bytes
        {"fid_reference": _reference(crops)},  # a metric it did not measure
    ):
        args = {"files": crops[:1]} | kwargs
        with pytest.raises(AssertionError, match="must not encode"):
            sweep_cached(
                "jpeg420",
                args.pop("files"),
                tmp_path / "c2",
                progress=False,
                published=[tmp_path / "pub"],
                **args,
            )
    monkeypatch.setitem(CODECS, "jpeg420", replace(small, encode=failing, qualities=(20, 70)))
    with pytest.raises(AssertionError, match="must not encode"):  # other settings: another key
        sweep_cached("jpeg420", crops[:1], tmp_path / "c3", progress=False, published=[tmp_path / "pub"])
    unstamped = {k: v for k, v in measured.items() if k != "sweep"}  # a JSON from before the stamp
    (tmp_path / "pub" / "jpeg420.json").write_text(json.dumps(unstamped))
    monkeypatch.setitem(CODECS, "jpeg420", replace(small, encode=failing))
    with pytest.raises(AssertionError, match="must not encode"):
        sweep_cached("jpeg420", crops[:1], tmp_path / "c4", progress=False, published=[tmp_path / "pub"])


def test_a_sweep_lacking_a_metric_is_completed_not_redone(crops, tmp_path, monkeypatch, capsys):
    """LPIPS added to a published FID sweep: only LPIPS is measured; FID/KID come from the record."""
    from common import baselines
    from common.metrics import load_lpips

    small = replace(CODECS["jpeg420"], qualities=(20, 60))
    monkeypatch.setitem(CODECS, "jpeg420", small)
    reference = _reference(crops)
    published = sweep_cached(
        "jpeg420", crops[:1], tmp_path / "first", progress=False, fid_reference=reference
    )
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "jpeg420.json").write_text(json.dumps(published))

    def no_fid(*args, **kwargs):
        raise AssertionError("FID was measured already")

    monkeypatch.setattr(baselines, "PatchFID", no_fid)
    lpips_model = load_lpips(pnet_rand=True)
    kw = dict(progress=True, lpips_model=lpips_model, fid_reference=reference, published=[tmp_path / "pub"])
    done = sweep_cached("jpeg420", crops[:1], tmp_path / "cache", **kw)
    assert "lpips:alex-randomtrunk measured and merged" in capsys.readouterr().out
    r, before = done["results"], published["results"]
    assert len(r["lpips"]) == 2 and all(v > 0 for v in r["lpips"])
    assert {k: r[k] for k in before} == before  # every measured column kept as published
    assert done["sweep"]["metrics"] == published["sweep"]["metrics"] + ["lpips:alex-randomtrunk"]
    assert done["description"] == published["description"]
    assert sweep_cached("jpeg420", crops[:1], tmp_path / "cache", **kw) == done  # now cached whole

    # Other file sizes than the record's (another encoder build, say): nothing is merged.
    published["results"]["bpp"] = [b * 1.01 for b in published["results"]["bpp"]]
    (tmp_path / "pub" / "jpeg420.json").write_text(json.dumps(published))
    with pytest.raises(AssertionError, match="FID was measured already"):
        sweep_cached("jpeg420", crops[:1], tmp_path / "cache2", **kw)
    assert "other file sizes" in capsys.readouterr().out


def test_an_interrupted_sweep_resumes_from_its_finished_qualities(crops, tmp_path, monkeypatch):
    real = CODECS["jpeg420"].encode
    calls = []

    def dies_at_60(image, q):
        if q == 60:
            raise KeyboardInterrupt
        calls.append(q)
        return real(image, q)

    small = replace(CODECS["jpeg420"], qualities=(20, 60))
    monkeypatch.setitem(CODECS, "jpeg420", replace(small, encode=dies_at_60))
    with pytest.raises(KeyboardInterrupt):
        sweep_cached("jpeg420", crops[:1], tmp_path, progress=False)
    partial = json.loads((tmp_path / "jpeg420.partial.json").read_text())
    assert [p["quality"] for p in partial["points"]] == [20] and calls == [20]

    monkeypatch.setitem(
        CODECS, "jpeg420", replace(small, encode=lambda im, q: calls.append(q) or real(im, q))
    )
    resumed = sweep_cached("jpeg420", crops[:1], tmp_path, progress=False)
    assert calls == [20, 60] and not (tmp_path / "jpeg420.partial.json").exists()
    fresh = sweep(small, crops[:1], progress=False)
    assert resumed["description"] == fresh["description"]
    for key in ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "ssim-rgb"):
        assert resumed["results"][key] == fresh["results"][key], key


@pytest.mark.parametrize(
    ("module", "codec", "hint"),
    [("pillow_heif", "hevc", "pip install 'pillow-heif"), ("imagecodecs", "jpegxl", "imagecodecs")],
)
def test_missing_library_is_a_clear_error(monkeypatch, module, codec, hint):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(VAEGANError, match=hint):
        encode_decode(codec, np.zeros((16, 16, 3), np.uint8), CODECS[codec].qualities[0])
    with pytest.raises(VAEGANError, match=hint):
        sweep(codec, [])
    assert codec not in available_codecs() and "jpeg420" in available_codecs()


def test_pillow_without_a_format_is_a_clear_error(monkeypatch):
    from PIL import features

    monkeypatch.setattr(features, "check", lambda name: name != "avif")
    with pytest.raises(VAEGANError, match="without libavif support"):
        encode_decode("avif", np.zeros((16, 16, 3), np.uint8), 50)
    assert "avif" not in available_codecs()


def test_unknown_codec_and_bad_image_are_clear_errors():
    with pytest.raises(VAEGANError, match="unknown codec 'bpg'"):
        encode_decode("bpg", np.zeros((16, 16, 3), np.uint8), 50)
    with pytest.raises(VAEGANError, match="H x W x 3"):
        encode_decode("webp", np.zeros((16, 16), np.uint8), 50)


def test_run_baselines_writes_json_and_reuses_the_cache(crops, tmp_path, capsys):
    sys.path.insert(0, str(baselines.Path(__file__).resolve().parents[2] / "scripts"))
    import run_baselines

    argv = ["--dataset", str(crops[0].parent), "--codecs", "webp", "--no_fid", "--limit", "1"]
    argv += ["--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache")]
    assert run_baselines.main(argv) == 0
    written = json.loads((tmp_path / "out" / "webp.json").read_text())
    assert written["results"]["quality"] and written["name"] == "WebP"
    assert len(written["sweep"]["key"]) == 64  # the stamp that lets compare_models --codec_results reuse it
    assert run_baselines.main(argv) == 0
    assert "cached sweep read" in capsys.readouterr().out
