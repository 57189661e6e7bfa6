"""Data sets in the MVTec AD layout: discovery, validation, decoding and preprocessing.

Layout (METHOD.md)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect or good>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png

Image index = position in the sorted file list of the split (test folders sorted by
name, files sorted by name), 0-based.

Preprocessing (the paper's and PaDiM's): RGB (grayscale replicated, alpha dropped,
16-bit scaled to [0, 1]), resize to ``resize`` x ``resize`` bilinear with antialias,
centre-crop ``crop`` x ``crop``. Masks: nearest resize to ``resize``, the same crop,
binarised (> 0). A mask whose size differs from its image's is an error (it would
silently mis-align the ground truth).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from .conventions import check_split

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataError(ValueError):
    """A data set, file or argument is not what mvgviz expects; the message says which and why."""


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a network input. Part of every cache key."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.crop > self.resize or self.crop <= 0:
            raise DataError(f"`crop` must be in 1..resize={self.resize}, got {self.crop}")

    def tag(self) -> dict:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean),
                "std": list(self.std), "interp": "bilinear-antialias", "mask": "nearest>0"}


@dataclass(frozen=True)
class Split:
    """One split of a category: files in index order, labels and defect types.

    ``mask_paths[i]`` is None for good images.
    """

    name: str
    paths: tuple[Path, ...]
    defect_types: tuple[str, ...]
    mask_paths: tuple[Path | None, ...]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int: 1 for defect images, 0 for good ones."""
        return np.array([d != "good" for d in self.defect_types], dtype=np.int64)


@dataclass(frozen=True)
class Category:
    root: Path
    name: str
    train: Split
    test: Split
    fingerprint: str = field(repr=False)

    def split(self, name: str) -> Split:
        return self.train if check_split(name) == "train" else self.test


def list_categories(root: str | os.PathLike) -> list[str]:
    """Names of the folders under ``root`` that have a ``train/good`` folder, sorted; hidden
    folders (``.name``, e.g. a demo category being written) are not categories."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {str(root)!r} is not a folder")
    return sorted(p.name for p in root.iterdir()
                  if not p.name.startswith(".") and (p / "train" / "good").is_dir())


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _fingerprint(files: Sequence[Path], base: Path) -> str:
    """Identity of a set of files: relative path, size and mtime (ns) of each."""
    h = hashlib.sha256()
    for p in sorted(files):
        st = p.stat()
        h.update(f"{p.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load_category(root: str | os.PathLike, category: str) -> Category:
    """Discover and validate one category; raises DataError naming what is wrong.

    Checks: the category exists, ``train/good`` exists and holds images, ``test`` holds
    images, every defect image has its ``ground_truth/<defect>/<stem>_mask.png``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data: data root {str(root)!r} is not a folder")
    cat_dir = root / category
    if not cat_dir.is_dir():
        known = list_categories(root)
        raise DataError(f"--category: unknown category {category!r} in {str(root)!r}; "
                        f"found {', '.join(known) if known else 'none (expected <root>/<category>/train/good/*.png)'}")
    train_dir = cat_dir / "train" / "good"
    if not train_dir.is_dir():
        raise DataError(f"missing folder {str(train_dir)!r}: expected the MVTec layout "
                        "<root>/<category>/train/good/*.png")
    train_paths = _images_in(train_dir)
    if not train_paths:
        raise DataError(f"empty split: {str(train_dir)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    test_dir = cat_dir / "test"
    if not test_dir.is_dir():
        raise DataError(f"missing folder {str(test_dir)!r}: expected <root>/<category>/test/<defect or good>/*.png")
    paths, types, masks = [], [], []
    for sub in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        for img in _images_in(sub):
            paths.append(img)
            types.append(sub.name)
            if sub.name == "good":
                masks.append(None)
                continue
            mask = cat_dir / "ground_truth" / sub.name / f"{img.stem}_mask.png"
            if not mask.is_file():
                raise DataError(f"defect image {str(img)!r} has no mask: expected {str(mask)!r}")
            masks.append(mask)
    if not paths:
        raise DataError(f"empty split: {str(test_dir)!r} holds no images in its sub-folders")
    if all(t == "good" for t in types):
        raise DataError(f"test split {str(test_dir)!r} has no defect images: pixel metrics need at least one")
    if all(t != "good" for t in types):
        raise DataError(f"test split {str(test_dir)!r} has no good images: image AUROC needs both kinds")
    train = Split("train", tuple(train_paths), ("good",) * len(train_paths), (None,) * len(train_paths))
    test = Split("test", tuple(paths), tuple(types), tuple(masks))
    files = list(train_paths) + paths + [m for m in masks if m is not None]
    return Category(root=root, name=category, train=train, test=test,
                    fingerprint=_fingerprint(files, root))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to float32 RGB in [0, 1], shape (H, W, 3).

    Handles grayscale, grayscale+alpha, RGB, RGBA (alpha dropped), 8- and 16-bit.
    Raises DataError for unreadable, corrupt or truncated files.
    """
    path = Path(path)
    arr = _decode(path)
    if arr.dtype == np.uint16:
        img = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.uint8:
        img = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.float32:
        img = arr
    else:
        raise DataError(f"image {str(path)!r}: unsupported pixel type {arr.dtype} (expected 8- or 16-bit)")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 2:  # gray + alpha
        img = np.repeat(img[:, :, :1], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise DataError(f"image {str(path)!r}: {img.shape[2]} channels (expected 1, 2, 3 or 4)")
    return np.ascontiguousarray(img)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask to bool (H, W): True where the pixel value is > 0 (any channel)."""
    arr = _decode(Path(path))
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr > 0


def _decode(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image {str(path)!r}: {e.strerror}") from e
    if data.size == 0:
        raise DataError(f"image {str(path)!r} is empty (0 bytes)")
    if path.suffix.lower() == ".png" and not _png_complete(data):
        raise DataError(f"image {str(path)!r} is truncated or corrupt: no PNG IEND chunk "
                        "(re-copy the file)")
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise DataError(f"image {str(path)!r} is corrupt or not an image OpenCV can decode")
    return arr


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_complete(data: np.ndarray) -> bool:
    """A PNG starts with its signature and ends with an IEND chunk (OpenCV decodes
    truncated PNGs silently as partly black images, so check before decoding)."""
    raw = data[:8].tobytes()
    if raw != _PNG_SIGNATURE:
        return False
    tail = data[-12:].tobytes()
    return len(tail) == 12 and tail[4:8] == b"IEND"


def preprocess_image(img: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(H, W, 3) float32 [0, 1] -> (crop, crop, 3) uint8, resized bilinear with antialias."""
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(img).permute(2, 0, 1)[None]  # (1, 3, H, W)
    t = F.interpolate(t, size=(pre.resize, pre.resize), mode="bilinear",
                      align_corners=False, antialias=True)
    o = (pre.resize - pre.crop) // 2
    t = t[0, :, o:o + pre.crop, o:o + pre.crop]  # (3, crop, crop)
    return (t.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def preprocess_mask(mask: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(H, W) bool -> (crop, crop) bool: nearest resize, centre crop."""
    m = cv2.resize(mask.astype(np.uint8), (pre.resize, pre.resize), interpolation=cv2.INTER_NEAREST)
    o = (pre.resize - pre.crop) // 2
    return m[o:o + pre.crop, o:o + pre.crop] > 0


def load_split_arrays(split: Split, pre: Preprocessing, *,
                      progress: Callable[[int], None] | None = None,
                      workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode and preprocess a whole split.

    Returns images (N, crop, crop, 3) uint8 and masks (N, crop, crop) bool (all False
    for good images). Raises DataError naming the first bad file (in file order).
    ``workers`` threads decode in parallel (OpenCV and torch release the GIL; default:
    ``min(4, os.cpu_count())``); it changes speed only, never the arrays.
    """
    n = len(split)
    images = np.empty((n, pre.crop, pre.crop, 3), dtype=np.uint8)
    masks = np.zeros((n, pre.crop, pre.crop), dtype=bool)

    def one(i: int) -> int:
        p, mp = split.paths[i], split.mask_paths[i]
        img = read_image(p)
        images[i] = preprocess_image(img, pre)
        if mp is not None:
            m = read_mask(mp)
            if m.shape != img.shape[:2]:
                raise DataError(f"mask {str(mp)!r} is {m.shape[1]}x{m.shape[0]} but its image "
                                f"{str(p)!r} is {img.shape[1]}x{img.shape[0]}: expected the same size")
            masks[i] = preprocess_mask(m, pre)
        return i

    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or n < 4:
        results = map(one, range(n))
        for _ in results:
            if progress is not None:
                progress(1)
        return images, masks
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, range(n)):  # in order: the first bad file raises first
            if progress is not None:
                progress(1)
    return images, masks


def to_network_input(images: np.ndarray, pre: Preprocessing, device):
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 torch tensor, normalised, on ``device``."""
    import torch
    x = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: memmaps are read-only
    x = x.to(device).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std
