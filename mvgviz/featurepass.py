"""The feature pass: the backbone runs once per (data set, category, backbone, weights,
preprocessing, storage), and its feature maps are cached for every layer and every later model.

The pass reads the cached preprocessed images batch by batch, runs the backbone up to its deepest
layer and appends each layer's maps to a streamed ``.npy`` array of the entry
(named by :meth:`mvgviz.results.Names.features`), so memory
follows the batch size, not the data set. :class:`CachedFeatures` reads them back in batches: it
is the :class:`mvgviz.models.base.FeatureSource` every method is fitted and scored from.

Storage: ``"float32"`` (default; the features as computed) or ``"float16"`` (half the disk and
read bandwidth; features rounded to 11 significant bits, which changes the metrics slightly:
see README, "Cache").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from . import __version__
from .backbones import get_spec
from .cache import Entry, Store, make_key
from .conventions import SPLITS, ParamError
from .results import Names

if TYPE_CHECKING:
    import torch

    from .data import Category, Preprocessing
    from .progress import Progress

STORAGE = ("float32", "float16")


class StorageError(ParamError):
    """A bad ``storage`` value."""


def check_storage(storage: str) -> str:
    s = str(storage or "float32").lower()
    if s not in STORAGE:
        raise StorageError("storage", f"must be one of {', '.join(STORAGE)}, got {storage!r}")
    return s


def feature_key(cat: "Category", backbone: str, wtag: str, pre: "Preprocessing", storage: str) -> tuple[str, dict]:
    parts = {"kind": "features", "dataset": cat.fingerprint, "category": cat.name, "backbone": backbone,
             "weights": wtag, "preprocessing": pre.tag(), "storage": storage, "version": __version__}
    return make_key(parts), parts


@dataclass(frozen=True)
class CachedFeatures:
    """Feature maps of every layer of a backbone, both splits, from a cache entry."""

    entry: Entry
    backbone: str

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.entry.meta["layers"])

    def n_images(self, split: str) -> int:
        return int(self.entry.meta["n_images"][split])

    def feature_shape(self, layer: str) -> tuple[int, int, int]:
        return tuple(self.entry.meta["shapes"][layer])

    def _name(self, split: str, layer: str) -> str:
        return Names.features(split, self.layers.index(layer))

    def batches(self, split: str, layers: tuple[str, ...], *, batch_size: int = 16,
                device="cpu") -> Iterator[dict[str, "torch.Tensor"]]:
        """``{layer: (n, C, h, w) float32 tensor on device}`` per batch of n images, in index order."""
        import torch
        readers = {l: self.entry.reader(self._name(split, l)) for l in layers}
        n = self.n_images(split)
        for i in range(0, n, batch_size):
            yield {l: torch.from_numpy(r.rows(i, i + batch_size)).to(device, torch.float32)
                   for l, r in readers.items()}


def feature_pass(store: Store, key: str, parts: dict, images: dict, backbone: str, weights: str | None,
                 pre: "Preprocessing", device, *, batch_size: int, storage: str,
                 progress: "Progress") -> CachedFeatures:
    """Run the backbone over both splits and write every layer's maps into entry ``key``
    (call it holding ``store.lock(key)``). ``images[split]``: a reader of the cached
    (N, S, S, 3) uint8 images (:class:`mvgviz.cache.NpyReader`)."""
    import torch

    from .data import to_network_input
    from .features import FeatureExtractor
    spec = get_spec(backbone)
    extractor = FeatureExtractor(backbone, spec.layers, weights).to(device)
    dtype = np.dtype(storage)
    n_total = sum(len(images[s]) for s in SPLITS)
    shapes: dict[str, list[int]] = {}
    with store.writer(key, parts) as w, progress.task("backbone", total=n_total) as bar:
        for split in SPLITS:
            n = len(images[split])
            out: dict[str, object] = {}
            for i in range(0, n, batch_size):
                x = to_network_input(images[split].rows(i, i + batch_size), pre, device)
                feats = extractor(x)
                for j, l in enumerate(spec.layers):
                    f = feats[l.name]
                    if l.name not in out:
                        shapes[l.name] = list(f.shape[1:])
                        out[l.name] = w.appender(Names.features(split, j), (n, *f.shape[1:]), dtype)
                    buf = np.empty(tuple(f.shape), dtype=np.float32)
                    # torch's copy converts device, dtype and memory format (channels-last on the CPU) at once
                    torch.from_numpy(buf).copy_(f)
                    out[l.name].write(buf)
                bar.update(x.shape[0])
        w.meta.update({"layers": [l.name for l in spec.layers], "shapes": shapes,
                       "n_images": {s: len(images[s]) for s in SPLITS}, "storage": storage,
                       "device": str(device)})
    del extractor
    return CachedFeatures(w.entry, backbone)
