"""Progress reporting that the library calls and the front ends render (tqdm, Streamlit)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, Protocol


class Task(Protocol):
    def update(self, n: int = 1) -> None: ...


class Progress:
    """Base reporter: silent. ``with progress.task("backbone", total=12) as t: t.update()``.

    Subclasses override :meth:`start`, :meth:`advance` and :meth:`finish`. Every task's
    wall time is recorded in :attr:`timings` (seconds, summed per name), which the
    benchmarks read.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def task(self, name: str, total: int | None = None) -> Iterator[Task]:
        t0 = time.perf_counter()
        handle = self.start(name, total)
        reporter = self

        class _T:
            def update(self, n: int = 1) -> None:
                reporter.advance(handle, n)

        try:
            yield _T()
        finally:
            self.finish(handle)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Record a step's wall time under ``name`` without a bar of its own (sub-steps, short steps)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def start(self, name: str, total: int | None):
        return None

    def advance(self, handle, n: int) -> None:
        pass

    def finish(self, handle) -> None:
        pass

    def message(self, text: str) -> None:
        pass


class TqdmProgress(Progress):
    """tqdm bars on stderr; ``quiet=True`` silences them (timings are still recorded)."""

    def __init__(self, quiet: bool = False):
        super().__init__()
        self.quiet = quiet

    def start(self, name, total):
        if self.quiet:
            return None
        from tqdm import tqdm
        return tqdm(total=total, desc=name, file=sys.stderr, leave=False, dynamic_ncols=True,
                    unit="it", mininterval=0.2)

    def advance(self, handle, n):
        if handle is not None:
            handle.update(n)

    def finish(self, handle):
        if handle is not None:
            handle.close()

    def message(self, text):
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)
