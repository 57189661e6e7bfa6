"""Backbone weights chosen in the viewer: a file inside the data roots, or an uploaded file
kept in the cache folder under its content hash. No Streamlit.

The file is only named here; :func:`mvgviz.backbones.build_backbone` loads it with
``torch.load(..., weights_only=True)`` (tensors only, no pickled code) when a fit needs it,
and its tag (``file:<name>:<size>:<mtime>``) is part of the cache key and of every output
(``Model.weights``, titles, manifests).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

from ..conventions import ParamError

STANDARD = "standard (ImageNet)"
IN_ROOT = "file in a data root"
UPLOAD = "upload a file"
WEIGHTS_SOURCES = (STANDARD, IN_ROOT, UPLOAD)
UPLOAD_SUFFIXES = ("pth", "pt", "bin", "ckpt")


def weights_choices() -> tuple[str, ...]:
    """Where the sidebar's weights may come from: the standard ones, a file, an upload."""
    return WEIGHTS_SOURCES


def weights_in_root(path: str | os.PathLike, allowed: Sequence[Path]) -> str:
    """A typed weights file, resolved and confined to the allowed roots; raises ParamError
    naming ``weights`` (the sidebar's "Weights") when it lies outside or is not a file."""
    from .config import PathNotAllowed, resolve_inside
    text = str(path).strip()
    if not text:
        raise ParamError("weights", ": type the path of a weights file (.pth) inside a data root")
    try:
        p = resolve_inside(text, allowed)
    except PathNotAllowed:
        raise ParamError("weights", f": {text!r} is outside the allowed data roots "
                                    f"({', '.join(map(str, allowed))})") from None
    if not p.is_file():
        raise ParamError("weights", f": {text!r} is not a file")
    return str(p)


def save_upload(data: bytes, name: str, cache: str | os.PathLike) -> Path:
    """Keep uploaded weights in ``<cache>/uploads/<sha256[:16]>/<name>``.

    The folder is named by the content's hash, so the same file uploaded again is the same path
    with the same modification time: the same weights tag, hence the same cache entries. Written
    to a temporary file and renamed (never a partial file under the final name).
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(name)).name).lstrip(".") or "weights.pth"
    folder = Path(cache) / "uploads" / digest
    target = folder / safe
    if target.is_file() and target.stat().st_size == len(data):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{safe}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target
