"""Images in, tensors out: robust image loading, dataset folders, random crops.

``load_image`` converts every input mode explicitly (RGBA, grayscale, palette, 16-bit, CMYK, EXIF
orientation) and reports unreadable files with :class:`common.errors.ImageError`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from common.bitstream import pixel_limit
from common.errors import DataError, ImageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
# The Pillow formats load_image reads, whatever a file's name says. Everything else is refused before
# decoding: EPS/PS would be handed to Ghostscript, and other plugins parse formats we never meant to.
READ_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP", "PPM", "GIF", "AVIF", "JPEG2000")

# Folder layout the download scripts create under --data_dir.
KNOWN_SETS = {
    "kodak": "kodak",
    "clic": "clic",
    "div2k": "div2k/DIV2K_valid_HR",
    "bsds500": "bsds500",
}


def _read_formats() -> list[str]:
    """READ_FORMATS that this Pillow has (plugins such as MPO register only once Image.init runs)."""
    Image.init()
    return [f for f in READ_FORMATS if f in Image.OPEN]


def _not_ours(path) -> ImageError:
    return ImageError(f"{path}: not an image in a format we read ({', '.join(READ_FORMATS)})")


def probe_image(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header alone, or ImageError: cheap enough to check a whole set up front."""
    try:
        with Image.open(path, formats=_read_formats()) as img:
            if img.width * img.height == 0:
                raise ImageError(f"{path}: image has zero size ({img.width}x{img.height})")
            return img.width, img.height
    except UnidentifiedImageError:
        raise _not_ours(path) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: cannot read the image header ({exc})") from None


def load_image(path: str | Path, max_pixels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Read an image as uint8 RGB (H, W, 3) plus notes on any conversion that was made.

    Images over ``max_pixels`` (default: $VAEGAN_MAX_PIXELS, else 64 MP) are refused from their
    header, before their pixels are decoded (decompression bombs). Animated images give their first
    frame, with a note saying so.
    """
    max_pixels = pixel_limit(max_pixels)
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image not found: {path}")
    if path.is_dir():
        raise ImageError(f"expected an image file, got a folder: {path}")
    notes: list[str] = []
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_read_formats()) as img:
                if img.width * img.height == 0:
                    raise ImageError(f"{path}: image has zero size ({img.width}x{img.height})")
                if getattr(img, "n_frames", 1) > 1:
                    notes.append(f"{img.n_frames} frames: only the first is used")
                img.load()
                array = _to_rgb8(ImageOps.exif_transpose(img) or img, notes)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: image is larger than the limit of {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise _not_ours(path) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from None
    except Exception as exc:  # plugins and EXIF parsing raise TypeError, KeyError, struct.error, ...
        raise ImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    return array, notes


def _to_rgb8(img: Image.Image, notes: list[str]) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if not np.isfinite(a).all():
            finite = a[np.isfinite(a)]
            notes.append("non-finite pixel values replaced")
            a = np.nan_to_num(a, nan=0.0, posinf=finite.max(initial=0.0), neginf=finite.min(initial=0.0))
        if mode == "F":
            lo, hi = (0.0, 1.0) if a.min() >= 0 and a.max() <= 1 else (a.min(), a.max())
        else:
            lo, hi = 0.0, 65535.0 if a.max() > 255 else 255.0
        a = np.clip((a - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        notes.append(f"{mode} image scaled to 8 bits")
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
        if (rgba[..., 3] < 255).any():
            notes.append("alpha channel composited on white")
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    if mode not in ("L", "P", "1"):
        notes.append(f"{mode} converted to RGB")
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1]."""
    return torch.tensor(array).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 (H, W, 3), rounded."""
    return x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def file_fingerprints(files: list[str | Path]) -> list[list]:
    """[name, size, sha256 of the bytes] per file: the identity of an image set for cache keys.

    Content, not path or mtime, so a copied, moved or re-downloaded set keeps its caches (FID
    sweeps take an hour on a CPU) while any changed byte invalidates them. A comparison asks for
    the same set's identity once per model point, codec and crop, so each file is hashed once per
    process (and again only when its size or mtime changes).
    """
    out = []
    for f in files:
        try:
            st = os.stat(f)
            digest = _sha256(str(Path(f).resolve()), st.st_size, st.st_mtime_ns)
        except OSError as exc:
            raise DataError(f"cannot read image file {f}: {exc.strerror}") from None
        out.append([Path(f).name, st.st_size, digest])
    return out


@functools.lru_cache(maxsize=4096)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file; size and mtime are part of the memo key only, so an edited file is re-read."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"dataset folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"no images in {folder}")
    return files


def resolve_set(data_dir: str | Path, name: str) -> Path:
    """'kodak' -> data_dir/kodak; any other value is a path relative to data_dir (or absolute)."""
    sub = KNOWN_SETS.get(name.lower(), name)
    path = Path(data_dir) / sub
    if not path.is_dir():
        root = Path(name).parts[0].lower() if Path(name).parts else ""  # bsds500/train -> bsds500
        hint = ""
        if root in KNOWN_SETS:
            hint = f"; fetch it with: python scripts/download_{root}.py --data_dir {data_dir}"
        raise DataError(f"dataset {name!r} not found at {path}{hint}")
    return path


class CropDataset(torch.utils.data.Dataset):
    """Random crops with flips from image folders, decoded once and kept in memory.

    An item is addressed by (index, epoch, seed): the crop depends only on those, so a resumed run
    sees exactly the crops the interrupted one would have seen.
    """

    def __init__(self, folders: list[Path], patch_size: int, random: bool = True):
        self.files = []
        for f in (f for folder in folders for f in list_images(folder)):
            try:  # found now, not hours into a run: files whose header Pillow cannot read
                probe_image(f)
                self.files.append(f)
            except ImageError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
        if not self.files:
            raise DataError(f"no readable image in {', '.join(map(str, folders))}")
        self.patch_size = patch_size
        self.random = random
        self._cache: dict[int, torch.Tensor] = {}
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _image(self, i: int) -> torch.Tensor:
        """Image i, or (a file whose pixels turn out damaged) the next good one, said once."""
        for _ in range(len(self.files)):
            if i not in self._bad:
                try:
                    return self._decoded(i)
                except ImageError as exc:
                    self._bad.add(i)
                    print(f"skipped from now on: {exc}", file=sys.stderr)
            i = (i + 1) % len(self.files)
        raise DataError("no image of the set could be decoded")

    def _decoded(self, i: int) -> torch.Tensor:
        if i not in self._cache:
            array, _ = load_image(self.files[i])
            img = torch.from_numpy(array).permute(2, 0, 1).contiguous()
            p = self.patch_size
            if img.shape[1] < p or img.shape[2] < p:  # too small: pad by reflection
                ph, pw = max(0, p - img.shape[1]), max(0, p - img.shape[2])
                img = torch.nn.functional.pad(img[None].float(), (0, pw, 0, ph), mode="replicate")[0].byte()
            self._cache[i] = img
        return self._cache[i]

    def __getitem__(self, key) -> torch.Tensor:
        i, epoch, seed = key if isinstance(key, tuple) else (key, 0, 0)
        img = self._image(i)
        p = self.patch_size
        _, h, w = img.shape
        if self.random:
            g = torch.Generator().manual_seed(hash((seed, epoch, i)) & 0x7FFFFFFF)
            top = int(torch.randint(0, h - p + 1, (1,), generator=g))
            left = int(torch.randint(0, w - p + 1, (1,), generator=g))
            flips = torch.rand(2, generator=g)
        else:
            top, left, flips = (h - p) // 2, (w - p) // 2, torch.ones(2)
        crop = img[:, top : top + p, left : left + p]
        if flips[0] < 0.5:
            crop = crop.flip(2)
        if flips[1] < 0.5:
            crop = crop.flip(1)
        return crop.float().div(255.0)


class EpochBatches(torch.utils.data.Sampler):
    """Batches of (index, epoch, seed) keys: a fixed permutation per epoch, resumable mid-epoch."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        epoch: int,
        seed: int,
        skip: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.n, self.batch_size, self.epoch, self.seed, self.skip = n, batch_size, epoch, seed, skip
        self.rank, self.world_size = rank, world_size

    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        global_batch = self.batch_size * self.world_size
        for b in range(self.skip, self.batches_per_epoch()):
            chunk = perm[b * global_batch : (b + 1) * global_batch]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            yield [(i, self.epoch, self.seed) for i in mine]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.skip
