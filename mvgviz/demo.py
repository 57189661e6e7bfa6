"""Offline demo data set in the MVTec AD layout, synthesised from images bundled with scikit-image.

The data set lets the whole mvgviz pipeline run without downloading MVTec AD. It is written by
:func:`make_demo_dataset` and is fully deterministic: the same ``seed`` (and the same counts) give
byte-identical files.

Categories (:data:`DEMO_CATEGORIES`)
    ``brick``, ``grass``, ``gravel``: textures, grayscale 8-bit PNG, from ``skimage.data.brick()``,
    ``grass()`` and ``gravel()`` (512x512 sources).
    ``coffee``: an object (cup on a saucer, centred), RGB 8-bit PNG, from ``skimage.data.coffee()``.
    Every image is 256x256. The loader's default preprocessing resizes to 256 and centre-crops 224,
    so every defect is placed with at least 95% of its mask inside the central 224x224 region.

Normal images (``train/good`` and ``test/good``)
    Textures: a random window of the source, mildly rescaled (factor 0.9-1.1), resampled to 256x256.
    Object: the cup crop rotated by a few degrees (+-4), shifted (+-6 px) and rescaled (0.97-1.03).
    Then lighting changes (gain, gamma, offset; for RGB a small colour-temperature shift), a gentle
    linear illumination gradient, and mild Gaussian sensor noise, quantised to uint8.

Defects (``test/<defect>``, :data:`DEMO_DEFECTS` per category)
    ``scratch``  a thin smooth curved line, brighter or darker, anti-aliased, fading at its ends;
    ``crack``    a thin dark jagged line (random walk), sometimes with a branch;
    ``hole``     a dark irregular elliptical pit with soft shading (lit inner wall on one side);
    ``stain``    a low-contrast intensity/colour blotch with irregular, soft edges, sometimes a
                 darker rim; it also blurs the fine relief a little (a liquid fills the gaps);
    ``patch``    a region cut from another place of the source texture and pasted rotated, with a
                 thin feathered border (gravel: rescaled, coarse stones or fine grit; grass: a
                 piece of gravel, i.e. foreign material);
    ``contamination``  a smooth opaque foreign body (dark or bright; for RGB metal, leaf, plastic or
                 paper colours) with one-sided shading and a fine grain.
    Per category: brick crack/hole/patch/stain, grass contamination/hole/patch/stain, gravel
    contamination/patch/stain, coffee crack/hole/scratch/stain. Defects on the busy textures
    (grass, gravel) are drawn 1.5x larger. On the coffee cup, defects lie on the cup or saucer.
    Sizes, positions, orientations and contrasts vary with the seed; some defects are small or
    low-contrast on purpose, so that a Gaussian model of CNN features does not score perfectly.
    A defect is composited onto the surface before lighting and noise, like a real one.

Masks (``ground_truth/<defect>/<stem>_mask.png``)
    Binary uint8 (0/255), 256x256, exactly the pixels where the defect's coverage (its alpha, the
    blending weight between the clean surface and the defect's appearance) is >= 0.5. Every pixel
    the defect changes has alpha > 0; those outside the mask form the soft fringe (alpha < 0.5),
    at most about 2 px wide. Every mask is non-empty, covers 0.05%-15% of the image, and the
    defect changes the surface inside it by at least 0.02 (about 5 grey levels) on average.

Default counts per category: 40 ``train/good``, 10 ``test/good``, 6 per defect type (3-4 types):
290 images over the four categories (160 train, 40 test/good, 90 defective with 90 masks). Images are named ``000.png``, ``001.png``, ...

Each image uses its own generator ``np.random.default_rng([seed, crc32(category), split, kind, index, stream])``
(no global random state), so an image does not depend on the counts of other folders.
Each category is written into a temporary sibling folder (``.<category>.partial-*``) and renamed
into place when complete, with a marker file ``.mvgviz_demo.json`` recording the generator
version, seed and counts. An existing category whose marker matches is skipped (cheap re-calls);
a category without a valid marker (interrupted or foreign write), with missing files, or made with
other parameters is regenerated. A ``README.txt`` at the root describes the data set.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Optional

import cv2
import numpy as np

__all__ = [
    "DEMO_CATEGORIES",
    "DEMO_DEFECTS",
    "DEMO_SOURCES",
    "IMAGE_SIZE",
    "CROP_SIZE",
    "make_demo_dataset",
]

#: Names of the generated categories (textures first, then the object).
DEMO_CATEGORIES: tuple[str, ...] = ("brick", "grass", "gravel", "coffee")

#: Defect types generated for each category (sorted, as MVTec lists test folders).
DEMO_DEFECTS: dict[str, tuple[str, ...]] = {
    "brick": ("crack", "hole", "patch", "stain"),
    "grass": ("contamination", "hole", "patch", "stain"),
    "gravel": ("contamination", "patch", "stain"),
    "coffee": ("crack", "hole", "scratch", "stain"),
}

#: The scikit-image function each category is made from.
DEMO_SOURCES: dict[str, str] = {
    "brick": "skimage.data.brick()",
    "grass": "skimage.data.grass()",
    "gravel": "skimage.data.gravel()",
    "coffee": "skimage.data.coffee()",
}

IMAGE_SIZE = 256
CROP_SIZE = 224
#: Bumped whenever the generated pixels change, so that old data sets are regenerated.
GENERATOR_VERSION = 1
MARKER_NAME = ".mvgviz_demo.json"

_TEXTURES = ("brick", "grass", "gravel")
_SPLIT_IDS = {"train": 1, "test": 2}
_KIND_IDS = {"good": 0, "scratch": 1, "crack": 2, "hole": 3, "stain": 4, "patch": 5, "contamination": 6}
#: Busy textures (grass, gravel) hide small defects: their defects are drawn larger.
_SIZE_SCALE = {"grass": 1.5, "gravel": 1.5}
#: Where a ``patch`` comes from another texture (foreign material) rather than the same one.
_PATCH_SOURCE = {"grass": "gravel"}

ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------------------------
# sources


_SOURCE_CACHE: dict[str, np.ndarray] = {}


def _source(category: str) -> np.ndarray:
    """Float64 source image in [0, 1]: (H, W) for textures, (256, 256, 3) RGB for the object."""
    if category in _SOURCE_CACHE:
        return _SOURCE_CACHE[category]
    import skimage.data

    if category in _TEXTURES:
        img = getattr(skimage.data, category)()
        if img.ndim == 3:  # pragma: no cover - the bundled textures are grayscale
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
        src = img.astype(np.float64) / 255.0
    elif category == "coffee":
        img = skimage.data.coffee()  # 400x600 RGB, the cup and saucer centred around x ~ 278
        crop = img[0:400, 78:478, :3]
        crop = cv2.resize(crop, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        src = crop.astype(np.float64) / 255.0
    else:
        raise ValueError(f"unknown demo category {category!r}; known: {DEMO_CATEGORIES}")
    src.setflags(write=False)
    _SOURCE_CACHE[category] = src
    return src


def _category_id(category: str) -> int:
    return zlib.crc32(category.encode("utf-8"))


def _rng(seed: int, category: str, split: str, kind: str, index: int, stream: int) -> np.random.Generator:
    """Independent generator per (seed, category, split, kind, image, stream)."""
    return np.random.default_rng(
        [int(seed), _category_id(category), _SPLIT_IDS[split], _KIND_IDS[kind], int(index), stream]
    )


# --------------------------------------------------------------------------------------------
# normal images


def _sample_geometry(category: str, rng: np.random.Generator) -> np.ndarray:
    """The clean surface (before lighting), float64 in [0, 1], 256x256 (x3 for RGB)."""
    src = _source(category)
    n = IMAGE_SIZE
    if category in _TEXTURES:
        scale = rng.uniform(0.9, 1.1)
        win = int(round(n / scale))
        h, w = src.shape
        y0 = int(rng.integers(0, h - win + 1))
        x0 = int(rng.integers(0, w - win + 1))
        window = np.ascontiguousarray(src[y0 : y0 + win, x0 : x0 + win])
        interp = cv2.INTER_AREA if win > n else cv2.INTER_LINEAR
        return cv2.resize(window, (n, n), interpolation=interp)
    angle = rng.uniform(-4.0, 4.0)
    scale = rng.uniform(0.97, 1.03)
    shift = rng.uniform(-6.0, 6.0, size=2)
    m = cv2.getRotationMatrix2D((n / 2.0, n / 2.0), angle, scale)
    m[:, 2] += shift
    return cv2.warpAffine(src, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


@dataclass(frozen=True)
class _Lighting:
    gain: float
    gamma: float
    offset: float
    channel_gain: np.ndarray  # (3,) or (1,)
    gradient: np.ndarray  # (256, 256) multiplicative illumination field
    noise: np.ndarray  # same shape as the image


def _sample_lighting(rgb: bool, rng: np.random.Generator) -> _Lighting:
    n = IMAGE_SIZE
    gain = rng.uniform(0.9, 1.1)
    gamma = rng.uniform(0.9, 1.1)
    offset = rng.uniform(-0.03, 0.03)
    channel_gain = 1.0 + rng.uniform(-0.03, 0.03, size=3) if rgb else np.ones(1)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    amp = rng.uniform(0.0, 0.08)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    ramp = ((xx - n / 2) * np.cos(theta) + (yy - n / 2) * np.sin(theta)) / (n / 2)
    gradient = 1.0 + amp * ramp
    sigma = rng.uniform(0.004, 0.012)
    shape = (n, n, 3) if rgb else (n, n)
    noise = rng.normal(0.0, sigma, size=shape)
    return _Lighting(gain, gamma, offset, channel_gain, gradient, noise)


def _apply_lighting(img: np.ndarray, light: _Lighting) -> np.ndarray:
    out = np.clip(img, 0.0, 1.0) ** light.gamma
    grad = light.gradient[..., None] if img.ndim == 3 else light.gradient
    out = out * light.gain * grad
    if img.ndim == 3:
        out = out * light.channel_gain
    out = out + light.offset + light.noise
    return np.clip(np.rint(np.clip(out, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# defect shapes


def _segment_distance(px: np.ndarray, py: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance from pixel centres (px, py) to the polyline pts (K, 2) in (x, y)."""
    d = np.full(px.shape, np.inf)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        dx, dy = x1 - x0, y1 - y0
        ll = dx * dx + dy * dy
        if ll < 1e-12:
            t = np.zeros_like(px)
        else:
            t = np.clip(((px - x0) * dx + (py - y0) * dy) / ll, 0.0, 1.0)
        d = np.minimum(d, np.hypot(px - (x0 + t * dx), py - (y0 + t * dy)))
    return d


def _polyline_alpha(pts: np.ndarray, width: float, n: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage of a polyline of given width, and the arc-length position (0..1)
    of the nearest point along it (for intensity profiles)."""
    alpha = np.zeros((n, n))
    along = np.zeros((n, n))
    pad = width / 2.0 + 2.0
    x_lo = max(int(np.floor(pts[:, 0].min() - pad)), 0)
    x_hi = min(int(np.ceil(pts[:, 0].max() + pad)) + 1, n)
    y_lo = max(int(np.floor(pts[:, 1].min() - pad)), 0)
    y_hi = min(int(np.ceil(pts[:, 1].max() + pad)) + 1, n)
    if x_lo >= x_hi or y_lo >= y_hi:
        return alpha, along
    py, px = np.mgrid[y_lo:y_hi, x_lo:x_hi].astype(np.float64)
    d = _segment_distance(px, py, pts)
    alpha[y_lo:y_hi, x_lo:x_hi] = np.clip(width / 2.0 + 0.5 - d, 0.0, 1.0)
    # nearest vertex arc position (vertices are dense, ~1 px apart)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    s = s / max(s[-1], 1e-9)
    step = max(1, len(pts) // 200)
    sub = pts[::step]
    d2 = (px[..., None] - sub[:, 0]) ** 2 + (py[..., None] - sub[:, 1]) ** 2
    along[y_lo:y_hi, x_lo:x_hi] = s[::step][np.argmin(d2, axis=-1)]
    return alpha, along


def _bezier(ctrl: np.ndarray, num: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, num)[:, None]
    p0, p1, p2, p3 = ctrl
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std smooth random field."""
    f = rng.normal(size=shape)
    k = int(2 * round(3 * sigma) + 1)
    f = cv2.GaussianBlur(f, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
    return (f - f.mean()) / (f.std() + 1e-12)


def _blob_field(a: float, b: float, angle: float, cx: float, cy: float, wobble: float,
                rng: np.random.Generator, n: int = IMAGE_SIZE) -> np.ndarray:
    """Approximate signed distance (pixels, positive inside) to an irregular ellipse."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    phi = np.arctan2(v / b, u / a)
    # low-order Fourier wobble of the boundary radius
    ks = np.arange(2, 6)
    coef = rng.normal(0.0, wobble, size=ks.size) / ks
    phase = rng.uniform(0.0, 2 * np.pi, size=ks.size)
    r = 1.0 + np.sum(coef[:, None, None] * np.cos(ks[:, None, None] * phi + phase[:, None, None]), axis=0)
    r = np.maximum(r, 0.4)
    return (1.0 - rho / r) * min(a, b)


def _signed_distance(inside: np.ndarray) -> np.ndarray:
    """Euclidean signed distance (pixels, positive inside) to the boundary of a binary region,
    offset by half a pixel so that inside pixels are >= 0.5 and outside pixels <= -0.5."""
    inside_u8 = inside.astype(np.uint8)
    d_in = cv2.distanceTransform(inside_u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    d_out = cv2.distanceTransform(1 - inside_u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(inside, d_in - 0.5, 0.5 - d_out).astype(np.float64)


def _defect_center(category: str, margin: float, rng: np.random.Generator) -> tuple[float, float]:
    lo = (IMAGE_SIZE - CROP_SIZE) / 2 + margin
    hi = IMAGE_SIZE - lo
    if lo >= hi:
        lo = hi = IMAGE_SIZE / 2
    if category == "coffee":  # on the cup or the saucer, not on the table
        for _ in range(100):
            x, y = rng.uniform(lo, hi), rng.uniform(lo, hi)
            if ((x - 130) / 105) ** 2 + ((y - 138) / 100) ** 2 <= 1.0:
                return x, y
    return rng.uniform(lo, hi), rng.uniform(lo, hi)


def _expand(a: np.ndarray, img: np.ndarray) -> np.ndarray:
    return a[..., None] if img.ndim == 3 else a


def _defect_scratch(img, category, rng):
    length = rng.uniform(40.0, 130.0)
    width = rng.uniform(1.2, 3.0) * _SIZE_SCALE.get(category, 1.0)
    cx, cy = _defect_center(category, length / 3, rng)
    theta = rng.uniform(0, np.pi)
    d = np.array([np.cos(theta), np.sin(theta)])
    nrm = np.array([-d[1], d[0]])
    p0 = np.array([cx, cy]) - d * length / 2
    p3 = np.array([cx, cy]) + d * length / 2
    bend = rng.uniform(-0.35, 0.35, size=2) * length
    p1 = p0 + d * length / 3 + nrm * bend[0]
    p2 = p0 + 2 * d * length / 3 + nrm * bend[1]
    pts = _bezier(np.stack([p0, p1, p2, p3]), int(length) + 2)
    alpha, along = _polyline_alpha(pts, width)
    # contrast fades towards the ends and wavers along the line
    profile = np.sin(np.pi * np.clip(along, 0, 1)) ** 0.5 * (0.75 + 0.25 * np.cos(2 * np.pi * 3 * along + rng.uniform(0, 6.3)))
    profile = np.clip(0.35 + 0.65 * profile, 0.0, 1.0)
    contrast = rng.uniform(0.12, 0.4) * (1 if rng.random() < 0.6 else -1)
    target = img + _expand(contrast * profile, img)
    return target, alpha


def _defect_crack(img, category, rng):
    length = rng.uniform(30.0, 100.0)
    width = rng.uniform(1.2, 2.4)
    cx, cy = _defect_center(category, length / 3, rng)
    theta = rng.uniform(0, 2 * np.pi)

    def walk(start, heading, steps):
        pts = [np.asarray(start, dtype=np.float64)]
        h = heading
        for _ in range(steps):
            h += rng.normal(0.0, 0.35)
            h = heading + np.clip(h - heading, -0.9, 0.9)  # keep a main direction
            pts.append(pts[-1] + 1.5 * np.array([np.cos(h), np.sin(h)]))
        return np.stack(pts)

    steps = int(length / 1.5)
    start = np.array([cx, cy]) - 0.5 * length * np.array([np.cos(theta), np.sin(theta)])
    main = walk(start, theta, steps)
    alpha, _ = _polyline_alpha(main, width)
    if rng.random() < 0.5:
        j = int(rng.integers(steps // 4, 3 * steps // 4))
        branch = walk(main[j], theta + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1), int(steps * rng.uniform(0.2, 0.45)))
        a2, _ = _polyline_alpha(branch, width * 0.75)
        alpha = np.maximum(alpha, a2)
    darkness = rng.uniform(0.35, 0.75)
    target = img * (1.0 - darkness)
    return target, alpha


def _defect_hole(img, category, rng):
    a = rng.uniform(5.0, 18.0) * _SIZE_SCALE.get(category, 1.0)
    b = a * rng.uniform(0.55, 1.0)
    cx, cy = _defect_center(category, a + 2, rng)
    angle = rng.uniform(0, np.pi)
    sd = _blob_field(a, b, angle, cx, cy, 0.12, rng)
    soft = rng.uniform(0.8, 1.8)
    alpha = np.clip(sd / soft + 0.5, 0.0, 1.0)
    # shading: a dark floor; the inner wall facing the light is lit, the opposite one in shadow.
    # Multiplicative, so the hole keeps the hue of the surface (RGB objects).
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    light = rng.uniform(0, 2 * np.pi)
    gx, gy = xx - cx, yy - cy
    rr = np.hypot(gx, gy) + 1e-9
    facing = -(gx * np.cos(light) + gy * np.sin(light)) / rr  # +1 on the wall facing the light
    wall = np.exp(-np.clip(sd, 0, None) / max(1.5, 0.3 * min(a, b)))
    floor = rng.uniform(0.12, 0.4)
    lum = floor * (1.0 - 0.5 * np.clip(-facing, 0, None) * wall) + 0.6 * np.clip(facing, 0, None) * wall
    target = img * _expand(lum, img)
    return target, alpha


def _defect_stain(img, category, rng):
    a = rng.uniform(10.0, 40.0) * _SIZE_SCALE.get(category, 1.0)
    b = a * rng.uniform(0.5, 1.0)
    cx, cy = _defect_center(category, a * 0.8, rng)
    angle = rng.uniform(0, np.pi)
    sd = _blob_field(a, b, angle, cx, cy, 0.35, rng)
    rough = _smooth_noise((IMAGE_SIZE, IMAGE_SIZE), rng.uniform(2.0, 4.0), rng)
    # the ragged outline is the zero level of the noisy field; the soft edge is measured in true
    # distance to it, so the faint fringe outside the mask is at most soft/2 <= 2 px wide
    sd = _signed_distance(sd + rough * rng.uniform(1.0, 3.0) > 0)
    soft = rng.uniform(1.5, 4.0)
    alpha = np.clip(sd / soft + 0.5, 0.0, 1.0)
    strength = rng.uniform(0.12, 0.4) if img.ndim == 3 else rng.uniform(0.18, 0.55)
    body = np.clip(0.8 + 0.2 * _smooth_noise((IMAGE_SIZE, IMAGE_SIZE), 6.0, rng), 0.5, 1.0)
    # dried stains are often darker at their rim ("coffee ring")
    ring = rng.uniform(0.0, 0.8) * np.exp(-np.clip(sd, 0, None) / rng.uniform(1.5, 3.5))
    body = np.clip(body * (1.0 + ring), 0.0, 1.6)
    if img.ndim == 3:
        palette = np.array([
            [0.25, 0.12, 0.05],  # coffee
            [0.85, 0.82, 0.75],  # milky residue
            [0.35, 0.40, 0.20],  # greenish grime
            [0.05, 0.05, 0.06],  # soot
        ])
        colour = palette[int(rng.integers(len(palette)))]
    else:
        colour = np.array(rng.choice([rng.uniform(0.0, 0.2), rng.uniform(0.75, 1.0)]))
    # a liquid stain also fills the fine relief of the surface: blend towards a blurred copy
    flat = rng.uniform(0.2, 0.7)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.5, borderType=cv2.BORDER_REFLECT_101)
    base = img * (1 - flat) + blurred * flat
    w = _expand(strength * body, img)
    target = base * (1 - w) + w * colour
    return target, alpha


def _defect_patch(img, category, rng):
    src = _source(_PATCH_SOURCE.get(category, category))
    size = rng.uniform(18.0, 48.0) * _SIZE_SCALE.get(category, 1.0)
    a = size / 2
    b = a * rng.uniform(0.6, 1.0)
    cx, cy = _defect_center(category, a + 2, rng)
    # the pasted content: another place of the source, rotated (gravel: also a different grain size)
    angle = rng.uniform(25.0, 155.0) * rng.choice([-1, 1])
    if category == "gravel":  # wrong grain size: coarse stones or fine grit
        scale = rng.uniform(1.8, 2.4) if rng.random() < 0.5 else rng.uniform(0.45, 0.6)
    elif category in _PATCH_SOURCE:
        scale = rng.uniform(0.8, 1.1)
    else:
        scale = rng.uniform(0.95, 1.05)
    h, w = src.shape[:2]
    sx, sy = rng.uniform(80, w - 80), rng.uniform(80, h - 80)
    m = cv2.getRotationMatrix2D((float(sx), float(sy)), float(angle), float(scale))
    m[:, 2] += np.array([cx - sx, cy - sy])
    foreign = cv2.warpAffine(src, m, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
    foreign = foreign * rng.uniform(0.92, 1.08)
    shape_angle = rng.uniform(0, np.pi)
    sd = _blob_field(a, b, shape_angle, cx, cy, 0.15, rng)
    alpha = np.clip(sd / 1.0 + 0.5, 0.0, 1.0)
    return foreign, alpha


def _defect_contamination(img, category, rng):
    a = rng.uniform(6.0, 16.0) * _SIZE_SCALE.get(category, 1.0)
    b = a * rng.uniform(0.45, 1.0)
    cx, cy = _defect_center(category, a + 2, rng)
    angle = rng.uniform(0, np.pi)
    sd = _blob_field(a, b, angle, cx, cy, 0.2, rng)
    alpha = np.clip(sd / rng.uniform(0.7, 1.2) + 0.5, 0.0, 1.0)
    # a smooth foreign body (plastic, leaf, metal chip) lit from one side, with fine grain
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    light = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - cx) * np.cos(light) + (yy - cy) * np.sin(light)) / a
    edge = np.exp(-np.clip(sd, 0, None) / 2.0)
    shade = 1.0 - 0.25 * ramp - 0.2 * edge
    grain = 0.03 * _smooth_noise((IMAGE_SIZE, IMAGE_SIZE), 1.5, rng)
    if img.ndim == 3:
        palette = np.array([
            [0.75, 0.75, 0.78],  # metal
            [0.15, 0.35, 0.15],  # leaf
            [0.20, 0.30, 0.70],  # blue plastic
            [0.90, 0.88, 0.80],  # paper
        ])
        colour = palette[int(rng.integers(len(palette)))]
    else:
        colour = np.array(rng.choice([rng.uniform(0.05, 0.25), rng.uniform(0.65, 0.95)]))
    target = np.clip(_expand(shade, img) * colour + _expand(grain, img), 0.0, 1.0)
    return target, alpha


_DEFECT_FNS = {
    "contamination": _defect_contamination,
    "scratch": _defect_scratch,
    "crack": _defect_crack,
    "hole": _defect_hole,
    "stain": _defect_stain,
    "patch": _defect_patch,
}


def _central_fraction(mask: np.ndarray) -> float:
    lo = (IMAGE_SIZE - CROP_SIZE) // 2
    total = mask.sum()
    return float(mask[lo : lo + CROP_SIZE, lo : lo + CROP_SIZE].sum() / total) if total else 0.0


class _Sample(NamedTuple):
    clean: np.ndarray  # uint8, the same image without its defect (same geometry, lighting, noise)
    image: np.ndarray  # uint8, (256, 256) grayscale or (256, 256, 3) RGB
    mask: Optional[np.ndarray]  # uint8 0/255, None for good images
    alpha: Optional[np.ndarray]  # float64 coverage of the defect in [0, 1], None for good images


#: A defect must change the surface inside its mask by at least this much on average (0..1 scale,
#: before lighting), so that no ground-truth region is invisible (e.g. a brick patch pasted onto
#: an equally grey brick face). Low-contrast defects remain: 0.02 is about 5 grey levels.
_MIN_DEFECT_CONTRAST = 0.02


def _render(category: str, seed: int, split: str, kind: str, index: int) -> _Sample:
    """Render one image (and, for a defect, its mask and coverage)."""
    rng_geo = _rng(seed, category, split, kind, index, 0)
    rng_light = _rng(seed, category, split, kind, index, 1)
    surface = _sample_geometry(category, rng_geo)
    light = _sample_lighting(surface.ndim == 3, rng_light)
    clean = _apply_lighting(surface, light)
    if kind == "good":
        return _Sample(clean, clean, None, None)
    rng_def = _rng(seed, category, split, kind, index, 2)
    fn = _DEFECT_FNS[kind]
    for _ in range(100):
        target, alpha = fn(surface, category, rng_def)
        mask = alpha >= 0.5
        area = mask.mean()
        if not (mask.any() and 0.0005 <= area <= 0.15 and _central_fraction(mask) >= 0.95):
            continue
        a = _expand(alpha, surface)
        defective = surface * (1 - a) + np.clip(target, 0.0, 1.0) * a
        change = np.abs(defective - surface)
        if change.ndim == 3:
            change = change.max(axis=-1)
        if change[mask].mean() >= _MIN_DEFECT_CONTRAST:
            break
    else:  # pragma: no cover - the parameter ranges make this practically impossible
        raise RuntimeError(f"could not place a {kind} defect for {category} {split} {index}")
    image = _apply_lighting(defective, light)
    return _Sample(clean, image, mask.astype(np.uint8) * 255, alpha)


# --------------------------------------------------------------------------------------------
# writing


def _plan(category: str, n_train: int, n_test_good: int, n_per_defect: int
          ) -> list[tuple[str, str, int]]:
    items = [("train", "good", i) for i in range(n_train)]
    for kind in sorted(("good",) + DEMO_DEFECTS[category]):
        count = n_test_good if kind == "good" else n_per_defect
        items += [("test", kind, i) for i in range(count)]
    return items


def _relpaths(split: str, kind: str, index: int) -> tuple[str, Optional[str]]:
    name = f"{index:03d}"
    img = f"{split}/{kind}/{name}.png"
    mask = None if kind == "good" else f"ground_truth/{kind}/{name}_mask.png"
    return img, mask


def _marker(category: str, seed: int, n_train: int, n_test_good: int, n_per_defect: int) -> dict:
    files = []
    for split, kind, i in _plan(category, n_train, n_test_good, n_per_defect):
        img, mask = _relpaths(split, kind, i)
        files.append(img)
        if mask:
            files.append(mask)
    return {
        "generator": "mvgviz.demo",
        "version": GENERATOR_VERSION,
        "category": category,
        "source": DEMO_SOURCES[category],
        "seed": int(seed),
        "image_size": IMAGE_SIZE,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_per_defect": n_per_defect,
        "defects": list(DEMO_DEFECTS[category]),
        "files": files,
    }


def _is_complete(cat_dir: pathlib.Path, expected: dict) -> bool:
    marker = cat_dir / MARKER_NAME
    try:
        found = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if found != expected:
        return False
    return all((cat_dir / f).is_file() for f in expected["files"])


def _write_png(path: pathlib.Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", data, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers (an earlier failed call in this process) are stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale(root: pathlib.Path, category: str) -> None:
    """Remove temporary siblings of interrupted runs (whose process is gone)."""
    for prefix in (f".{category}.partial-", f".{category}.old-"):
        for p in root.glob(prefix + "*"):
            rest = p.name[len(prefix):]
            try:
                pid = int(rest.split("-", 1)[0])
            except ValueError:
                pid = -1
            if pid < 0 or not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)


def _readme(root: pathlib.Path, seed: int, categories: Iterable[str], counts: dict) -> str:
    lines = [
        "mvgviz demo data set (MVTec AD layout)",
        "======================================",
        "",
        "Generated by mvgviz (mvgviz.demo.make_demo_dataset, generator version "
        f"{GENERATOR_VERSION}) with seed {int(seed)}.",
        "Synthetic: normal images are random crops / small rotations of images bundled with",
        "scikit-image, with lighting changes and sensor noise; defects are drawn synthetically.",
        "Not MVTec AD data: use it for demos and tests, not for benchmarking.",
        "",
        f"Image size {IMAGE_SIZE}x{IMAGE_SIZE}; defects lie inside the central {CROP_SIZE}x{CROP_SIZE} crop.",
        "Masks: ground_truth/<defect>/<stem>_mask.png, uint8 0/255, the pixels where the",
        "defect's coverage (alpha) is >= 0.5.",
        "",
        "Categories:",
    ]
    for cat in categories:
        kind = "grayscale texture" if cat in _TEXTURES else "RGB object"
        lines.append(
            f"  {cat:7s} {kind:17s} from {DEMO_SOURCES[cat]}; "
            f"train/good {counts['n_train']}, test/good {counts['n_test_good']}, "
            f"{counts['n_per_defect']} each of: {', '.join(DEMO_DEFECTS[cat])}"
        )
    lines.append("")
    return "\n".join(lines)


def make_demo_dataset(
    root,
    *,
    seed: int = 0,
    overwrite: bool = False,
    progress: Optional[ProgressFn] = None,
    n_train: int = 40,
    n_test_good: int = 10,
    n_per_defect: int = 6,
    categories: Optional[Iterable[str]] = None,
) -> pathlib.Path:
    """Write the deterministic demo data set under ``root`` (MVTec AD layout) and return ``root``.

    Parameters
    ----------
    root:
        Output folder; ``<root>/<category>/{train,test,ground_truth}/...`` and ``<root>/README.txt``.
    seed:
        Seed of every random choice; the same seed and counts give byte-identical files.
    overwrite:
        Regenerate categories that are already complete. When False, a complete category
        written with the same seed, counts and generator version is skipped; an incomplete
        (interrupted), foreign or differently parameterised one is regenerated.
    progress:
        Optional ``callable(done, total, message)``, called after each image (with its mask)
        is written; ``total`` counts the images of the categories being (re)generated. When
        nothing needs writing it is called once with ``(0, 0, message)``.
    n_train, n_test_good, n_per_defect:
        Images per category in ``train/good``, ``test/good`` and each ``test/<defect>``.
    categories:
        Subset of :data:`DEMO_CATEGORIES` to write (default: all).
    """
    root = pathlib.Path(root)
    cats = tuple(DEMO_CATEGORIES if categories is None else categories)
    for c in cats:
        if c not in DEMO_CATEGORIES:
            raise ValueError(f"unknown demo category {c!r}; known: {DEMO_CATEGORIES}")
    for name, v in (("n_train", n_train), ("n_test_good", n_test_good), ("n_per_defect", n_per_defect)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    n_train, n_test_good, n_per_defect = int(n_train), int(n_test_good), int(n_per_defect)
    if n_per_defect < 1:
        raise ValueError("n_per_defect must be >= 1 (every defect folder needs images)")
    root.mkdir(parents=True, exist_ok=True)

    todo: list[tuple[str, dict]] = []
    for cat in cats:
        _remove_stale(root, cat)
        expected = _marker(cat, seed, n_train, n_test_good, n_per_defect)
        if not overwrite and _is_complete(root / cat, expected):
            continue
        todo.append((cat, expected))

    total = sum(len(_plan(c, n_train, n_test_good, n_per_defect)) for c, _ in todo)
    done = 0
    for cat, expected in todo:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{cat}.partial-{os.getpid()}-", dir=root))
        try:
            for split, kind, i in _plan(cat, n_train, n_test_good, n_per_defect):
                sample = _render(cat, seed, split, kind, i)
                img_rel, mask_rel = _relpaths(split, kind, i)
                _write_png(tmp / img_rel, sample.image)
                if mask_rel is not None:
                    _write_png(tmp / mask_rel, sample.mask)
                done += 1
                if progress is not None:
                    progress(done, total, f"{cat}/{img_rel}")
            (tmp / MARKER_NAME).write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
            _install(root, cat, tmp, expected)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    if not todo and progress is not None:
        progress(0, 0, "demo data set up to date")

    text = _readme(root, seed, cats, {"n_train": n_train, "n_test_good": n_test_good,
                                       "n_per_defect": n_per_defect})
    readme = root / "README.txt"
    if not readme.is_file() or readme.read_text(encoding="utf-8") != text:
        tmp_readme = root / f".README.txt.{os.getpid()}.tmp"
        tmp_readme.write_text(text, encoding="utf-8")
        os.replace(tmp_readme, readme)
    return root


def _install(root: pathlib.Path, cat: str, tmp: pathlib.Path, expected: dict) -> None:
    """Move the finished temporary folder into place (replacing an invalid/old category)."""
    dest = root / cat
    old = None
    if dest.exists() or dest.is_symlink():
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{cat}.old-{os.getpid()}-", dir=root)) / cat
        os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        # another process installed the category meanwhile: keep it if it is complete
        if not _is_complete(dest, expected):
            raise
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)
