"""Data sets in the MVTec AD layout: discovery, validation, decoding and preprocessing.

Layout (METHOD.md)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect or good>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png

Image index = position in the sorted file list of the split (test folders sorted by
name, files sorted by name), 0-based.

Files read: :data:`IMAGE_EXTENSIONS` (any case); other visible files of an image folder are
ignored and listed in ``Category.ignored`` (:meth:`Category.ignored_notes`: one line per
folder). ``category`` is one folder name under the root (:func:`check_category_name`).
Before decoding, a file's first bytes must match its extension, its header size must be at
most :data:`MAX_IMAGE_PIXELS`, a PNG's chunks must be complete with matching CRCs and a JPEG
must end with its end-of-image marker. A test split whose masks are all empty has no pixel
labels (strict loading: :class:`MissingLabels` naming the ``ground_truth`` folder); only
the masks are read to find it, until the first anomalous pixel.

Labels. Strict loading (the default) needs every test image in ``test/good`` or
``test/<defect>``, every defect image's mask, and both kinds of test image; what is
missing raises :class:`MissingLabels`. ``load_category(..., unlabelled=True)`` loads
data without (some of) these labels, to fit and explore them without metrics: test
images may then also lie directly in ``test/`` or in ``test/unlabelled/`` (defect type
``"unlabelled"``, label -1: unknown; in index order the images directly in ``test/``
come first, then the folders sorted by name), masks are read where present (missing
ones read as all-False, ``Split.mask_known`` says which), and the test :class:`Split`
records whether image and pixel metrics are defined (``image_labels``,
``pixel_labels``) and, if not, why (``label_note``).

Preprocessing (the paper's and PaDiM's): RGB (grayscale replicated, alpha dropped,
16-bit scaled to [0, 1]), resize to ``resize`` x ``resize`` bilinear with antialias,
centre-crop ``crop`` x ``crop`` (offset ``(resize - crop) // 2``). Masks: centre-aligned
nearest resize to ``resize`` (OpenCV ``INTER_NEAREST_EXACT``, the same as PIL's ``NEAREST``
and torchvision's path for PIL masks: each output pixel takes the source pixel nearest to
its centre, so the mask stays on its bilinearly resized image; OpenCV's ``INTER_NEAREST``
takes each cell's top-left pixel and shifts the mask by up to half a source pixel), the
same crop, binarised (> 0). A mask whose size differs from its image's is an error (it
would silently mis-align the ground truth).
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

from .conventions import GOOD, UNLABELLED, ParamError, check_split, image_labels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataError(ValueError):
    """A data set, file or argument is not what mvgviz expects; the message says which and why."""


class DataOptionError(DataError, ParamError):
    """A bad ``root`` or ``category`` argument; names the parameter (:class:`ParamError`)."""


class PreprocessingError(DataError, ParamError):
    """A bad field of :class:`Preprocessing` (``resize``, ``crop``, ``mean``, ``std``); names it."""


class MissingLabels(DataError):
    """Strict loading found test images without the labels metrics need (no label folder, no
    mask, no ground_truth folder, no good or no defect images); the same data load with
    ``load_category(..., unlabelled=True)``, to be fitted and explored without metrics.

    ``reason`` is the message without the hint, for front ends that word the option their way."""

    HINT = " (load it as unlabelled data to fit and explore it without metrics)"

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason + self.HINT)




@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a network input. Part of every cache key."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise PreprocessingError(name, f"must be a positive integer (pixels), got {v!r}")
        if self.crop > self.resize:
            raise PreprocessingError("crop", f"must be in 1..resize={self.resize}, got {self.crop}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            try:
                values = tuple(v)
                ok = len(values) == 3 and all(not isinstance(x, bool) and np.isfinite(float(x)) for x in values)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise PreprocessingError(name, f"must be 3 finite numbers (one per RGB channel), got {v!r}")
            if name == "std" and min(float(x) for x in values) <= 0:
                raise PreprocessingError(name, f"must be > 0 for every RGB channel (it divides), got {v!r}")
            object.__setattr__(self, name, values)  # a list (from JSON) becomes a tuple: hashable

    def tag(self) -> dict:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean),
                "std": list(self.std), "interp": "bilinear-antialias", "mask": "nearest-exact>0"}


@dataclass(frozen=True)
class Split:
    """One split of a category: files in index order, defect types, masks, and what is known.

    ``defect_types[i]`` is the test sub-folder of image i: ``"good"``, a defect name, or
    ``"unlabelled"`` (label unknown). ``mask_paths[i]`` is the mask file, None for good and
    unlabelled images and for defect images without a mask (only with ``unlabelled=True``).

    ``image_labels``: every image has a known label and both good and defect images are
    present, so image AUROC is defined. ``pixel_labels``: ``image_labels`` and every defect
    image has its mask, so the pixel metrics are defined. ``label_note``: "" when both hold,
    else why not (counts and folders). The train split holds good images only: both flags
    are False there, with a note saying so (metrics are computed on the test split).
    """

    name: str
    paths: tuple[Path, ...]
    defect_types: tuple[str, ...]
    mask_paths: tuple[Path | None, ...]
    image_labels: bool = True
    pixel_labels: bool = True
    label_note: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64: 1 for defect images, 0 for good ones, -1 for unlabelled ones (unknown)."""
        return image_labels(self.defect_types)

    @property
    def mask_known(self) -> np.ndarray:
        """(N,) bool: whether image i's pixel truth is known: good images (all background) and
        defect images with a mask. :func:`load_split_arrays` gives all-False masks for the others."""
        return np.array([d == GOOD or m is not None for d, m in zip(self.defect_types, self.mask_paths)],
                        dtype=bool)


@dataclass(frozen=True)
class Category:
    """A loaded category. ``unlabelled`` is the option it was loaded with (part of cache keys);
    whether its test split has labels is ``test.image_labels`` / ``test.pixel_labels``."""

    root: Path
    name: str
    train: Split
    test: Split
    fingerprint: str = field(repr=False)
    unlabelled: bool = False
    ignored: tuple[Path, ...] = field(default=(), repr=False)

    def split(self, name: str) -> Split:
        return self.train if check_split(name) == "train" else self.test

    def ignored_notes(self) -> list[str]:
        """One line per image folder holding files that are not read (:data:`IMAGE_EXTENSIONS`
        are read), e.g. ``"ignored 2 files that are not images (.gif, .webp) in '/d/cat/test/crack'"``."""
        by_folder: dict[Path, list[Path]] = {}
        for p in self.ignored:
            by_folder.setdefault(p.parent, []).append(p)
        notes = []
        for folder, files in by_folder.items():
            kinds = ", ".join(sorted({p.suffix.lower() or "no extension" for p in files}))
            n = len(files)
            notes.append(f"ignored {n} file{'s' if n > 1 else ''} that {'are' if n > 1 else 'is'} not "
                         f"{'images' if n > 1 else 'an image'} ({kinds}) in {str(folder)!r}; read: "
                         f"{' '.join(IMAGE_EXTENSIONS)}")
        return notes


def list_categories(root: str | os.PathLike) -> list[str]:
    """Names of the folders under ``root`` that have a ``train/good`` folder, sorted; hidden
    folders (``.name``, e.g. a demo category being written) are not categories."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {str(root)!r} is not a folder")
    return sorted(p.name for p in root.iterdir()
                  if not p.name.startswith(".") and (p / "train" / "good").is_dir())


def _images_in(folder: Path, ignored: list[Path] | None = None) -> list[Path]:
    """The image files of ``folder`` (:data:`IMAGE_EXTENSIONS`, any case), sorted by name; the
    other visible files are appended to ``ignored`` (hidden files such as ``.DS_Store`` and
    sub-folders are passed over silently)."""
    images = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(p)
        elif ignored is not None and not p.name.startswith("."):
            ignored.append(p)
    return images


def check_category_name(category) -> str:
    """``category`` must be one folder name under the data root: not empty, no path separator,
    not ``.`` or ``..``, not absolute (a name must not reach outside ``root``)."""
    if not isinstance(category, str) or not category.strip():
        raise DataOptionError("category", f"must be a folder name under the data root, got {category!r}")
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if (category in (".", "..") or any(c in category for c in seps) or "\x00" in category
            or Path(category).is_absolute()):
        raise DataOptionError("category", f"must be the name of one folder under the data root "
                                          f"(no path separator, '.' or '..'), got {category!r}")
    return category


def _fingerprint(files: Sequence[Path], base: Path) -> str:
    """Identity of a set of files: relative path, size and mtime (ns) of each."""
    h = hashlib.sha256()
    for p in sorted(files):
        st = p.stat()
        h.update(f"{p.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load_category(root: str | os.PathLike, category: str, *, unlabelled: bool = False) -> Category:
    """Discover and validate one category; raises DataError naming what is wrong.

    Checks: the category exists, ``train/good`` exists and holds images, ``test`` holds
    images. Strict (``unlabelled=False``): every test image lies in ``test/good`` or
    ``test/<defect>``, every defect image has its ``ground_truth/<defect>/<stem>_mask.png``,
    and the test split has both good and defect images; otherwise :class:`MissingLabels`.
    ``unlabelled=True`` accepts all of these gaps (see the module doc) and records them in
    ``test.image_labels``, ``test.pixel_labels`` and ``test.label_note``; fully labelled
    data load the same either way. A mask of the wrong size is an error in both modes
    (:func:`load_split_arrays`).
    """
    root = Path(root)
    check_category_name(category)
    if not root.is_dir():
        raise DataOptionError("root", f": data root {str(root)!r} is not a folder")
    cat_dir = root / category
    if not cat_dir.is_dir():
        known = list_categories(root)
        raise DataOptionError("category", f": unknown category {category!r} in {str(root)!r}; "
                        f"found {', '.join(known) if known else 'none (expected <root>/<category>/train/good/*.png)'}")
    train_dir = cat_dir / "train" / "good"
    if not train_dir.is_dir():
        raise DataError(f"missing folder {str(train_dir)!r}: expected the MVTec layout "
                        "<root>/<category>/train/good/*.png")
    ignored: list[Path] = []
    train_paths = _images_in(train_dir, ignored)
    if not train_paths:
        raise DataError(f"empty split: {str(train_dir)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                        + _ignored_hint(ignored))
    test_dir = cat_dir / "test"
    if not test_dir.is_dir():
        raise DataError(f"missing folder {str(test_dir)!r}: expected <root>/<category>/test/<defect or good>/*.png")
    gt_dir = cat_dir / "ground_truth"
    loose = _images_in(test_dir, ignored)  # images directly in test/: no label
    paths, types, masks = list(loose), [UNLABELLED] * len(loose), [None] * len(loose)
    no_mask: dict[str, list[tuple[Path, Path]]] = {}  # defect folder -> [(image, expected mask)]
    for sub in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        for img in _images_in(sub, ignored):
            paths.append(img)
            types.append(sub.name)
            mask = gt_dir / sub.name / f"{img.stem}_mask.png"
            if sub.name in (GOOD, UNLABELLED):
                masks.append(None)
            elif mask.is_file():
                masks.append(mask)
            else:
                masks.append(None)
                no_mask.setdefault(sub.name, []).append((img, mask))
    if not paths:
        raise DataError(f"empty split: {str(test_dir)!r} holds no images"
                        + ("" if unlabelled else " in its sub-folders") + _ignored_hint(ignored))
    n_unknown = types.count(UNLABELLED)
    n_good = types.count(GOOD)
    n_defect = len(types) - n_unknown - n_good
    n_no_mask = sum(len(v) for v in no_mask.values())
    if not unlabelled:
        if loose:
            raise MissingLabels(f"{len(loose)} test images lie directly in {str(test_dir)!r} (first: "
                                f"{loose[0].name!r}), not in a label folder test/good or test/<defect>")
        if n_unknown:
            raise MissingLabels(f"{n_unknown} test images in {str(test_dir / UNLABELLED)!r} have no label "
                                "(expected test/good or test/<defect>)")
        if n_no_mask and not gt_dir.is_dir():
            raise MissingLabels(f"missing folder {str(gt_dir)!r}: the {n_no_mask} defect images in "
                                f"{_folders(no_mask)} have no masks (expected "
                                "ground_truth/<defect>/<stem>_mask.png)")
        if n_no_mask:
            img, mask = next(iter(no_mask.values()))[0]
            more = f"; {n_no_mask} defect images in all have no mask" if n_no_mask > 1 else ""
            raise MissingLabels(f"defect image {str(img)!r} has no mask: expected {str(mask)!r}{more}")
        if n_defect == 0:
            raise MissingLabels(f"test split {str(test_dir)!r} has no defect images: pixel metrics need "
                                "at least one")
        if n_good == 0:
            raise MissingLabels(f"test split {str(test_dir)!r} has no good images: image AUROC needs "
                                "both kinds")
    notes = []
    if loose:
        notes.append(f"{len(loose)} test images lie directly in test/ and have no label")
    if n_unknown > len(loose):
        notes.append(f"{n_unknown - len(loose)} test images in test/{UNLABELLED} have no label")
    if not n_unknown and n_good == 0:
        notes.append("the test split has no good images (test/good): image AUROC needs both kinds")
    if not n_unknown and n_defect == 0:
        notes.append("the test split has no defect images (test/<defect>): image AUROC needs both kinds")
    if n_no_mask and not gt_dir.is_dir():
        notes.append(f"no ground_truth folder: the {n_no_mask} defect images in {_folders(no_mask)} "
                     "have no masks")
    elif n_no_mask:
        notes.extend(f"{len(v)} defect images in test/{d} have no mask in ground_truth/{d}"
                     for d, v in no_mask.items())
    image_labels = n_unknown == 0 and n_good > 0 and n_defect > 0
    pixel_labels = image_labels and n_no_mask == 0
    if pixel_labels and not _any_anomalous_pixel(m for m in masks if m is not None):
        folders = ", ".join(dict.fromkeys(f"ground_truth/{t}" for t, m in zip(types, masks) if m is not None))
        reason = (f"the {sum(m is not None for m in masks)} masks in {str(gt_dir)!r} ({folders}) are all "
                  "empty: pixel metrics need at least one anomalous pixel")
        if not unlabelled:
            raise MissingLabels(reason)
        notes.append(reason)
        pixel_labels = False
    train = Split("train", tuple(train_paths), (GOOD,) * len(train_paths), (None,) * len(train_paths),
                  image_labels=False, pixel_labels=False,
                  label_note="the train split holds good images only (metrics are computed on test)")
    test = Split("test", tuple(paths), tuple(types), tuple(masks), image_labels=image_labels,
                 pixel_labels=pixel_labels, label_note="; ".join(notes))
    files = list(train_paths) + paths + [m for m in masks if m is not None]
    return Category(root=root, name=category, train=train, test=test,
                    fingerprint=_fingerprint(files, root), unlabelled=unlabelled, ignored=tuple(ignored))


def _ignored_hint(ignored: Sequence[Path]) -> str:
    if not ignored:
        return ""
    kinds = ", ".join(sorted({p.suffix.lower() or "no extension" for p in ignored}))
    return f"; {len(ignored)} other files ({kinds}) were ignored"


def _any_anomalous_pixel(mask_paths) -> bool:
    """Whether any of the masks has a pixel > 0; reads them in order and stops at the first
    such mask (usually the first one), so that a test split whose masks are all empty is
    found before any image is decoded. A mask that cannot be read raises DataError."""
    return any(read_mask(p).any() for p in mask_paths)


def _folders(no_mask: dict[str, list]) -> str:
    return ", ".join(f"test/{d}" for d in no_mask)


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


MAX_IMAGE_PIXELS = 100_000_000
"""The largest image read, in pixels (width x height: 100 megapixels, e.g. 10000 x 10000). Checked
from the file's header before decoding, so a decompression bomb (a small file that decodes to
gigabytes) is refused without allocating anything."""

_KIND_OF_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
_SUFFIX_OF_KIND = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}


def _decode(path: Path) -> np.ndarray:
    """Read and decode one image file, checked first so that OpenCV never fails loudly.

    In order: the file is read; its first bytes must be those of the format its extension
    names (a JPEG file named ``.png`` is reported as such); its size in the header must be at
    most :data:`MAX_IMAGE_PIXELS`; a PNG's chunks must be complete with matching CRCs (libpng
    would print its own ``libpng error`` line to stderr, and OpenCV decodes a truncated PNG as a
    partly black image without an error); a JPEG must have its end marker after its image
    data. Raises DataError naming the file and the problem.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image {str(path)!r}: {e.strerror}") from e
    if data.size == 0:
        raise DataError(f"image {str(path)!r} is empty (0 bytes)")
    raw = memoryview(data)
    suffix = path.suffix.lower()
    expected = _KIND_OF_SUFFIX.get(suffix)
    kind = _sniff(raw)
    if expected is not None and kind != expected:
        if kind is None:
            raise DataError(f"image {str(path)!r} is corrupt or not an image: it does not start like a "
                            f"{expected} file (re-copy the file)")
        fix = (f"rename it to {_SUFFIX_OF_KIND[kind]}" if kind in _SUFFIX_OF_KIND
               else "convert it to PNG: mvgviz reads PNG, JPEG, BMP and TIFF")
        raise DataError(f"image {str(path)!r} is a {kind} file named {path.suffix}: {fix}")
    size = _dimensions(raw, kind)
    if size is not None:
        w, h = size
        if w <= 0 or h <= 0:
            raise DataError(f"image {str(path)!r} is corrupt: its header gives a size of {w}x{h} pixels")
        if w * h > MAX_IMAGE_PIXELS:
            raise DataError(f"image {str(path)!r} is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels): more than "
                            f"the limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels per image (a decompression "
                            "bomb?); downscale it")
    if kind == "PNG":
        _check_png(raw, path)
    elif kind == "JPEG":
        _check_jpeg(raw, path)
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # e.g. OpenCV's own size limit for a format whose header is not read here
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise DataError(f"image {str(path)!r} cannot be decoded by OpenCV: {reason}") from None
    if arr is None or arr.size == 0:
        raise DataError(f"image {str(path)!r} is corrupt or not an image OpenCV can decode")
    return arr


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sniff(raw: memoryview) -> str | None:
    """The image format from a file's first bytes (magic numbers), or None."""
    head = bytes(raw[:12])
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _dimensions(raw: memoryview, kind: str | None) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, BMP or classic TIFF; None when the
    header is not parsed here (the decoder then reports what is wrong)."""
    import struct
    try:
        if kind == "PNG":
            if bytes(raw[12:16]) != b"IHDR":
                return None
            return struct.unpack(">II", raw[16:24])
        if kind == "BMP":
            (dib,) = struct.unpack("<I", raw[14:18])
            if dib == 12:
                return struct.unpack("<HH", raw[18:22])
            w, h = struct.unpack("<ii", raw[18:26])
            return w, abs(h)
        if kind == "JPEG":
            sof = _jpeg_segment(raw, lambda m: m in _JPEG_SOF)
            if sof is None:
                return None
            h, w = struct.unpack(">HH", raw[sof + 5:sof + 9])
            return w, h
        if kind == "TIFF" and bytes(raw[2:4]) in (b"*\x00", b"\x00*"):
            e = "<" if bytes(raw[:2]) == b"II" else ">"
            (ifd,) = struct.unpack(e + "I", raw[4:8])
            (count,) = struct.unpack(e + "H", raw[ifd:ifd + 2])
            dims = {}
            for i in range(count):
                o = ifd + 2 + 12 * i
                tag, typ = struct.unpack(e + "HH", raw[o:o + 4])
                if tag in (256, 257):
                    dims[tag] = struct.unpack(e + ("H" if typ == 3 else "I"), raw[o + 8:o + (10 if typ == 3 else 12)])[0]
            return (dims[256], dims[257]) if len(dims) == 2 else None
    except (struct.error, ValueError, IndexError, KeyError):
        return None  # a header too short or damaged: the format's own check or the decoder says so
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_SOS = 0xDA


def _jpeg_segment(raw: memoryview, want) -> int | None:
    """Offset of the first JPEG marker ``m`` with ``want(m)`` (walking the segments before the
    image data: APPn, DQT, SOFn, DHT ..., each skipped by its length), or None."""
    pos, n = 2, len(raw)
    while pos + 4 <= n:
        if raw[pos] != 0xFF:
            return None
        m = raw[pos + 1]
        if m == 0xFF:  # fill byte
            pos += 1
            continue
        if want(m):
            return pos
        if m == _JPEG_SOS or m == 0xD9:
            return None
        if 0xD0 <= m <= 0xD7 or m == 0x01:
            pos += 2
            continue
        pos += 2 + (raw[pos + 2] << 8 | raw[pos + 3])
    return None


def _check_jpeg(raw: memoryview, path: Path) -> None:
    """A JPEG ends its image data with an EOI marker (FF D9); OpenCV decodes a truncated JPEG
    as a partly grey image with only a warning on stderr."""
    sos = _jpeg_segment(raw, lambda m: m == _JPEG_SOS)
    if sos is None or bytes(raw[sos:]).find(b"\xff\xd9") < 0:
        raise DataError(f"image {str(path)!r} is truncated or corrupt: "
                        + ("no JPEG end-of-image marker" if sos is not None else "no JPEG image data")
                        + " (re-copy the file)")


def _check_png(raw: memoryview, path: Path) -> None:
    """Walk a PNG's chunks: IHDR first, every chunk complete with a matching CRC, an IDAT, and
    an IEND. Damaged or truncated files are refused here, before libpng (which would print a
    ``libpng error`` line of its own on stderr) or OpenCV (which decodes a truncated PNG as a
    partly black image) see them."""
    import struct
    import zlib
    n, pos, first, idat = len(raw), 8, True, False
    while True:
        if pos + 12 > n:
            raise DataError(f"image {str(path)!r} is truncated or corrupt: its PNG data end at byte {n} "
                            "before the IEND chunk (re-copy the file)")
        length, ctype = struct.unpack(">I4s", raw[pos:pos + 8])
        if length > n - pos - 12:
            raise DataError(f"image {str(path)!r} is truncated or corrupt: its PNG chunk "
                            f"{ctype.decode('latin-1')!r} at byte {pos} runs past the end of the file "
                            f"({n} bytes; re-copy the file)")
        end = pos + 8 + length
        (crc,) = struct.unpack(">I", raw[end:end + 4])
        if zlib.crc32(raw[pos + 4:end]) != crc:
            raise DataError(f"image {str(path)!r} is corrupt: the CRC of its PNG chunk "
                            f"{ctype.decode('latin-1')!r} at byte {pos} does not match (damaged bytes; "
                            "re-copy the file)")
        if first and (ctype != b"IHDR" or length != 13):
            raise DataError(f"image {str(path)!r} is corrupt: its first PNG chunk is not a 13-byte IHDR")
        first = False
        idat = idat or ctype == b"IDAT"
        if ctype == b"IEND":
            break
        pos = end + 4
    if not idat:
        raise DataError(f"image {str(path)!r} is corrupt: it has no PNG IDAT chunk (no pixel data)")


def preprocess_image(img: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(H, W, 3) float32 [0, 1] -> (crop, crop, 3) uint8: resized bilinear with antialias
    (torch ``interpolate``, as torchvision's ``resize`` on tensors), centre crop, rounded to
    the nearest uint8 level.

    The crop offset is ``(resize - crop) // 2``; torchvision rounds ``(resize - crop) / 2``
    half to even, which differs by one pixel only when ``resize - crop`` is 3 mod 4.
    """
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(img).permute(2, 0, 1)[None]  # (1, 3, H, W)
    t = F.interpolate(t, size=(pre.resize, pre.resize), mode="bilinear",
                      align_corners=False, antialias=True)
    o = (pre.resize - pre.crop) // 2
    t = t[0, :, o:o + pre.crop, o:o + pre.crop]  # (3, crop, crop)
    return (t.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def preprocess_mask(mask: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(H, W) bool -> (crop, crop) bool: centre-aligned nearest resize (``INTER_NEAREST_EXACT``,
    equal to PIL ``NEAREST``), centre crop."""
    m = cv2.resize(mask.astype(np.uint8), (pre.resize, pre.resize), interpolation=cv2.INTER_NEAREST_EXACT)
    o = (pre.resize - pre.crop) // 2
    return m[o:o + pre.crop, o:o + pre.crop] > 0


def load_split_arrays(split: Split, pre: Preprocessing, *,
                      progress: Callable[[int], None] | None = None,
                      workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode and preprocess a whole split.

    Returns images (N, crop, crop, 3) uint8 and masks (N, crop, crop) bool (all False
    for good images, and for images whose mask is unknown: ``split.mask_known`` tells
    them apart). Raises DataError naming the first bad file (in file order).
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


FINGERPRINTS = ("stat", "content")


def content_fingerprint(cat: Category) -> str:
    """Identity of a category's files by their bytes: the relative path, size and BLAKE2b digest of
    every image and mask (``fingerprint="content"`` in :func:`mvgviz.pipeline.fit`). Unlike the
    default (path, size, mtime), it sees pixels changed with the same size and mtime, at the cost
    of reading every file once per call. Prefixed ``content:`` so it never equals a default one."""
    files = list(cat.train.paths) + list(cat.test.paths) + [m for m in cat.test.mask_paths if m is not None]
    h = hashlib.sha256()
    for p in sorted(files):
        d = hashlib.blake2b(digest_size=16)
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                d.update(block)
        h.update(f"{p.relative_to(cat.root).as_posix()}\0{p.stat().st_size}\0{d.hexdigest()}\n".encode())
    return "content:" + h.hexdigest()[:24]
