"""Progress for long loops, on a terminal and in log files.

On a terminal a tqdm bar; anywhere else (a Snakemake or SLURM log file) one log line after the
first unit of work, then one every `interval` seconds (done/total, rate, ETA), and a last line
at the end. A multi-hour job that printed only on a terminal showed nothing in its SLURM log.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)

# Log lines at most every MIN_INTERVAL s (a log stays readable) and at least every
# MAX_INTERVAL s (a stalled job is visible within a minute).
MIN_INTERVAL = 10.0
MAX_INTERVAL = 60.0
DEFAULT_INTERVAL = 30.0


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Count work done; report it as a bar on a terminal or as periodic log lines.

    Args:
        total: units expected (None if unknown).
        unit: what is counted ("query", "byte", ...); "byte" prints sizes.
        what: the label of each log line (e.g. "search", "fetch uniref90.fasta.gz").
        interval: seconds between log lines, clamped to [MIN_INTERVAL, MAX_INTERVAL].
        stream: where a terminal bar would go; a bar only if it is a TTY.
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        total: int | None,
        unit: str,
        what: str,
        interval: float = DEFAULT_INTERVAL,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.unit = unit
        self.what = what
        self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL, interval))
        self.done = 0
        self._base = 0  # units done before this run (a resumed download): not in the rate
        self._clock = clock
        self._start = clock()
        self._last: float | None = None  # time of the last log line
        self._logged = -1  # `done` at the last log line
        stream = sys.stderr if stream is None else stream
        self._bar: Any = None
        if stream.isatty():
            from tqdm import tqdm

            scale = unit == "byte"
            self._bar = tqdm(
                total=total, unit="B" if scale else unit, unit_scale=scale, file=stream
            )

    def set_start(self, done: int) -> None:
        """Work already done before this run (a resumed download): counted, not rated."""
        self.done = done
        self._base = done
        if self._bar is not None:
            self._bar.update(done)

    def update(self, n: int = 1) -> None:
        """Add `n` units; log a line if one is due."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self._clock()
        if self._last is None or now - self._last >= self.interval:
            self._log(now)

    def line(self, now: float | None = None) -> str:
        """The progress line: done/total (percent), rate, ETA."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = (self.done - self._base) / elapsed
        fmt = _bytes if self.unit == "byte" else (lambda n: f"{n:,.0f}")
        text = f"{self.what}: {fmt(self.done)}"
        if self.total:
            text += f" of {fmt(self.total)} ({100 * self.done / self.total:.1f} %)"
        text += f", {_bytes(rate)}/s" if self.unit == "byte" else f", {rate:,.2f} {self.unit}/s"
        if self.total and rate > 0:
            text += f", ETA {_duration((self.total - self.done) / rate)}"
        return text

    def _log(self, now: float) -> None:
        self._last, self._logged = now, self.done
        log.info("%s", self.line(now))

    def close(self) -> None:
        """End the bar, or log a final line unless the last one already had the final count."""
        if self._bar is not None:
            self._bar.close()
        elif self.done != self._logged:
            self._log(self._clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
