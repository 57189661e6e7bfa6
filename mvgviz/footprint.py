"""The peak memory of a step: what ``mvgviz compare`` reports as ``peak_memory_mb``.

``with PeakMemory(device) as peak: ...`` then ``peak.rss_mb`` is the process's peak resident set
size (MiB) while the block ran, the interpreter, torch and every other module included (a bare
``import torch`` process holds about 300 MiB). On Linux the kernel's high-water mark (VmHWM) is
reset at the start by writing ``5`` to ``/proc/self/clear_refs`` and read at the end: exact, no
sampling. Where that is not allowed (other systems, some sandboxes), a thread samples the RSS
every 10 ms (``peak.how`` says which). On CUDA, ``peak.gpu_mb`` is torch's peak allocated memory.
"""

from __future__ import annotations

import os
import threading

_STATUS = "/proc/self/status"
_CLEAR = "/proc/self/clear_refs"


def _status_kb(field: str) -> int | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_kb() -> int | None:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb
    try:  # no /proc: the lifetime peak is the best there is
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r // 1024 if os.uname().sysname == "Darwin" else r
    except (ImportError, OSError):
        return None


class PeakMemory:
    """Peak process RSS (and CUDA allocation) over a ``with`` block; see the module docstring."""

    def __init__(self, device=None, interval: float = 0.01):
        self.device = device
        self.interval = interval
        self.rss_mb: float | None = None
        self.gpu_mb: float | None = None
        self.how = ""
        self._peak_kb = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self._cuda():
            import torch
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            with open(_CLEAR, "w") as f:
                f.write("5")
            if _status_kb("VmHWM") is None:
                raise OSError("no VmHWM")
            self.how = "kernel high-water mark (VmHWM, reset at the start)"
        except OSError:
            self.how = f"RSS sampled every {self.interval * 1000:.0f} ms"
            self._peak_kb = _rss_kb() or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak_kb = max(self._peak_kb, _rss_kb() or 0)

    def so_far(self) -> tuple[float | None, float | None]:
        """(peak RSS MiB, peak CUDA allocation MiB or None) since the block started; usable inside it."""
        if self._thread is not None:
            self._peak_kb = max(self._peak_kb, _rss_kb() or 0)
            kb = self._peak_kb
        else:
            kb = _status_kb("VmHWM")
        gpu = None
        if self._cuda():
            import torch
            gpu = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return (None if not kb else round(kb / 1024, 1)), gpu

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        self.rss_mb, self.gpu_mb = self.so_far()

    def _cuda(self) -> bool:
        return self.device is not None and str(self.device).startswith("cuda")


__all__ = ["PeakMemory"]
