"""Small, dependency-free metrics: moving average, perplexity, bits per byte, a crash-safe CSV logger and
peak memory."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import resource
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path


class MovingAverage:
    """Mean of the last `window` values: a smoothed training loss that forgets old noise."""

    def __init__(self, window: int = 50) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._values: deque[float] = deque(maxlen=window)
        self._sum = 0.0

    def update(self, x: float) -> float:
        """Add one value and return the current average."""
        if len(self._values) == self._values.maxlen:
            self._sum -= self._values[0]
        self._values.append(float(x))
        self._sum += float(x)
        return self.value

    @property
    def value(self) -> float:
        """The average of the values in the window (nan before the first update)."""
        # Re-summing keeps float drift from accumulating over millions of updates.
        return math.fsum(self._values) / len(self._values) if self._values else math.nan


def perplexity(mean_ce: float) -> float:
    """Perplexity exp(mean cross-entropy in nats); inf instead of an OverflowError."""
    try:
        return math.exp(mean_ce)
    except OverflowError:
        return math.inf


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Bits per UTF-8 byte: total nats over (ln 2 x bytes scored); comparable across tokenizers."""
    if total_bytes <= 0:
        raise ValueError(f"total_bytes must be positive, got {total_bytes}")
    return total_nats / (math.log(2) * total_bytes)


class Throughput:
    """Tokens per second from one log row to the next, time spent evaluating left out."""

    def __init__(self, step: int) -> None:
        self.time, self.step, self.paused = time.perf_counter(), step, 0.0

    def pause(self, seconds: float) -> None:
        """Leave `seconds` (an evaluation) out of the current row's span."""
        self.paused += seconds

    def row(self, step: int, tokens_per_step: int) -> float | None:
        """The rate since the previous row (None when no time or no tokens passed); starts a row."""
        now = time.perf_counter()
        span, tokens = now - self.time - self.paused, (step - self.step) * tokens_per_step
        self.time, self.step, self.paused = now, step, 0.0
        return tokens / span if span > 0 and tokens else None


class CSVLogger:
    """Append rows to a CSV file: header once (even across restarts), each row flushed to disk."""

    def __init__(self, path: str | os.PathLike[str], fieldnames: Sequence[str]) -> None:
        self.path = Path(path)
        self.fieldnames = list(fieldnames)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if header != self.fieldnames:
                raise ValueError(
                    f"{self.path} has columns {header}, expected {self.fieldnames}; "
                    "use a new file or the same columns"
                )
            self._needs_header = False
        else:
            self._needs_header = True

    def log(self, row: Mapping[str, object]) -> None:
        """Write one row (missing columns are left empty, unknown ones are an error)."""
        extra = set(row) - set(self.fieldnames)
        if extra:
            raise ValueError(f"unknown CSV columns {sorted(extra)}; known: {self.fieldnames}")
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames)
            if self._needs_header:
                writer.writeheader()
                self._needs_header = False
            writer.writerow({k: _fmt(v) for k, v in row.items()})
            f.flush()
            os.fsync(f.fileno())


def _fmt(v: object) -> object:
    # Floats with 6 significant digits keep logs readable; repr would print 17 digits of noise.
    return f"{v:.6g}" if isinstance(v, float) else v


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process in MB (MiB) since it started or since reset_peak_rss().

    With `children`, plus the peak of its largest finished (waited-for) child process: the kernel
    keeps one high-water mark for all children, the largest one's. A live process tree is watched
    from outside instead (`llm_tiny.bench.memory`).
    """
    who = [resource.RUSAGE_SELF] + ([resource.RUSAGE_CHILDREN] if children else [])
    total = sum(resource.getrusage(w).ru_maxrss for w in who)
    return total / 2**20 if sys.platform == "darwin" else total / 2**10  # bytes there, KiB here


def reset_peak_rss() -> None:
    """Start a new peak window for peak_rss_mb() (Linux; elsewhere the peak since start stays)."""
    # 5 in clear_refs resets the kernel's RSS high-water mark, which getrusage reports
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
