"""Configuration of the viewer and what it may read: data roots, cache folder, options,
path confinement, category discovery and notes about the cache. No Streamlit.

- :class:`AppConfig` / :func:`parse_app_args`: data roots, cache folder and options from
  ``streamlit run app.py -- --data ROOT --cache DIR`` or ``$MVGVIZ_DATA`` / ``$MVGVIZ_CACHE``;
- :func:`resolve_inside` and :func:`check_category_files`: the viewer reads only inside the
  configured data roots (plus the demo folder); every folder a person types is resolved
  (``Path.resolve``, symlinks followed) and refused when it lies outside;
- :func:`discover_categories`, :func:`needs_demo_data`, :func:`cache_notes`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..data import DataError, list_categories


class PathNotAllowed(DataError):
    """A folder or file resolves outside the viewer's allowed data roots."""


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AppConfig:
    """Where the viewer reads data and keeps its cache.

    Attributes
    ----------
    data_roots
        Data roots given with ``--data`` (or ``$MVGVIZ_DATA``), absolute, in the given order.
    demo_root
        The demo folder (``<repo>/demo_data``): always allowed; generated when missing.
    cache
        Cache folder (``--cache``, ``$MVGVIZ_CACHE`` or the repository's ``cache/``).
    autofit
        Fit the default model (first category, default backbone) without a click when it
        is not cached (``--no-autofit`` / ``MVGVIZ_AUTOFIT=0`` turn it off).
    """

    data_roots: tuple[Path, ...]
    demo_root: Path
    cache: Path
    autofit: bool = True

    @property
    def roots(self) -> tuple[Path, ...]:
        """The roots a person can choose: the data roots, then the demo folder (no repeats)."""
        out: list[Path] = []
        for r in (*self.data_roots, self.demo_root):
            if all(_same_path(r, o) is False for o in out):
                out.append(r)
        return tuple(out)

    @property
    def allowed(self) -> tuple[Path, ...]:
        """The roots, resolved (symlinks followed): everything read must lie inside one."""
        return tuple(dict.fromkeys(Path(r).resolve() for r in self.roots))


def _same_path(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def parse_app_args(argv: Sequence[str], environ: Mapping[str, str] | None = None, *,
                   app_dir: str | os.PathLike) -> AppConfig:
    """Read the viewer's options; command-line arguments win over environment variables.

    Parameters
    ----------
    argv
        The script's arguments (``sys.argv[1:]``: what follows ``--`` in
        ``streamlit run app.py -- ...``). Unknown arguments are ignored (under pytest
        ``sys.argv`` is pytest's).
    environ
        ``os.environ`` by default: ``MVGVIZ_DATA`` (data roots separated by ``os.pathsep``),
        ``MVGVIZ_CACHE`` (cache folder), ``MVGVIZ_AUTOFIT`` (``0`` = no automatic fit).
    app_dir
        The folder of ``app.py``; the demo folder is ``<app_dir>/demo_data``.

    Options
    -------
    ``--data ROOT`` (repeatable), ``--cache DIR``, ``--no-autofit``.
    """
    from ..cache import default_cache_dir
    env = os.environ if environ is None else environ
    p = argparse.ArgumentParser(prog="streamlit run app.py --", add_help=False, allow_abbrev=False)
    p.add_argument("--data", action="append", default=None)
    p.add_argument("--cache", default=None)
    p.add_argument("--no-autofit", action="store_true")
    args, _ = p.parse_known_args(list(argv))
    if args.data:
        roots = [r for item in args.data for r in item.split(os.pathsep) if r.strip()]
    else:
        roots = [r for r in env.get("MVGVIZ_DATA", "").split(os.pathsep) if r.strip()]
    cache = args.cache or env.get("MVGVIZ_CACHE") or str(default_cache_dir())
    autofit = not args.no_autofit and env.get("MVGVIZ_AUTOFIT", "1").strip().lower() not in ("0", "false", "no")
    return AppConfig(data_roots=tuple(Path(r).expanduser().absolute() for r in roots),
                     demo_root=Path(app_dir).absolute() / "demo_data",
                     cache=Path(cache).expanduser().absolute(), autofit=autofit)


# ---------------------------------------------------------------------------------------
# Paths: read only inside the allowed roots
# ---------------------------------------------------------------------------------------

def resolve_inside(path: str | os.PathLike, allowed: Sequence[Path]) -> Path:
    """Resolve ``path`` (``~`` expanded, symlinks followed) and check it lies in a root.

    Returns the resolved path. Raises :class:`PathNotAllowed` naming the path, what it
    resolves to and the allowed roots.
    """
    text = str(path).strip()
    if not text:
        raise PathNotAllowed("folder: empty path")
    if "\x00" in text:
        raise PathNotAllowed(f"folder {text!r}: contains a NUL character")
    resolved = Path(text).expanduser().resolve()
    for root in allowed:
        r = Path(root).resolve()
        if resolved == r or resolved.is_relative_to(r):
            return resolved
    shown = f" (resolves to {str(resolved)!r})" if str(resolved) != text else ""
    what = "file" if Path(text).is_file() else "folder"
    raise PathNotAllowed(f"{what} {text!r}{shown} is outside the allowed data roots: "
                         f"{', '.join(str(Path(a)) for a in allowed)}. Other roots are allowed by "
                         "whoever starts the app (README, 'The explorer').")


def needs_demo_data(root: str | os.PathLike) -> bool:
    """True when ``root`` does not exist or is an empty folder: the viewer writes the demo
    data set there. A folder with content but no category is an error instead."""
    root = Path(root)
    if not root.exists():
        return True
    return root.is_dir() and not any(root.iterdir())


@dataclass(frozen=True)
class Categories:
    """Categories of a data root: usable ``names`` and ``skipped`` ones with the reason."""

    names: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def discover_categories(root: str | os.PathLike, allowed: Sequence[Path]) -> Categories:
    """Sub-folders of ``root`` with ``train/good``, sorted; hidden ones (``.name``) are
    ignored, those resolving outside the allowed roots (symlinks) are skipped. Raises
    DataError when ``root`` is not a folder, :class:`PathNotAllowed` when it lies outside."""
    root = resolve_inside(root, allowed)
    names, skipped = [], []
    for name in list_categories(root):  # hidden folders (a demo category being written) excluded
        try:
            resolve_inside(root / name, allowed)
        except PathNotAllowed:
            skipped.append((name, f"{name!r} resolves to {str((root / name).resolve())!r}, "
                                  "outside the allowed data roots"))
            continue
        names.append(name)
    return Categories(tuple(names), tuple(skipped))


def no_category_message(root: str | os.PathLike) -> str:
    return (f"no category in data root {str(root)!r}: expected the MVTec AD layout "
            "<root>/<category>/train/good/*.png, test/<defect or good>/*.png, "
            "ground_truth/<defect>/<name>_mask.png")


def check_category_files(root: str | os.PathLike, category: str, allowed: Sequence[Path]) -> None:
    """Refuse a category with a file or folder (symlink) that resolves outside the roots."""
    cat = resolve_inside(Path(root) / category, allowed)
    for dirpath, dirnames, filenames in os.walk(cat, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                resolve_inside(p, allowed)  # raises PathNotAllowed


# ---------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------

def cache_notes(store, root: str | os.PathLike, category: str, backbone: str) -> list[str]:
    """Why an uncached model may have left traces in the cache: entries of an older
    mvgviz version, or of data that changed since. The engine treats both as a miss."""
    from .. import __version__
    rows = [r for r in store.ls() if r.get("kind") == "layer" and r.get("category") == category
            and r.get("backbone") == backbone]
    notes = []
    old = sorted({str(r.get("version")) for r in rows if not r.get("current_version")})
    if old:
        notes.append(f"The cache holds {category} / {backbone} results of an older mvgviz version "
                     f"({', '.join(old)}; this is {__version__}): they are not used, fitting will refit.")
    current = [r for r in rows if r.get("current_version")]
    if current:
        try:
            from ..data import load_category
            from ..data import MissingLabels
            try:
                fp = load_category(root, category).fingerprint
            except MissingLabels:
                fp = load_category(root, category, unlabelled=True).fingerprint
        except (DataError, OSError):
            fp = None
        if fp is not None and all(r.get("dataset") != fp for r in current):
            notes.append(f"The cache holds {category} / {backbone} results for other files of this "
                         "category (the data changed since): fitting will refit.")
    return notes
