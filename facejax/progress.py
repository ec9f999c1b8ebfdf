"""A one-line progress display: rate, counts and ETA; redrawn in place on a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints `label: done/total (rate unit/s, extra) ETA` at most every `every` seconds."""

    def __init__(self, label: str, total: int | None = None, unit: str = "it",
                 every: float = 2.0, stream=sys.stderr):
        self.label, self.total, self.unit, self.every, self.stream = label, total, unit, every, stream
        self.start = self._last = time.monotonic()
        self.done = 0
        self._tty = hasattr(stream, "isatty") and stream.isatty()
        if self._tty:
            self.every = min(every, 0.2)

    def update(self, done: int, force: bool = False, **extra) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        parts = [f"{self.label}: {done}" + (f"/{self.total}" if self.total else "")]
        info = [f"{rate:.1f} {self.unit}/s"] + [f"{k} {v}" for k, v in extra.items()]
        parts.append("(" + ", ".join(info) + ")")
        if self.total and rate > 0:
            parts.append(f"ETA {format_seconds((self.total - done) / rate)}")
        line = " ".join(parts)
        if self._tty:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, **extra) -> None:
        self.update(self.done, force=True, **extra)
        if self._tty:
            self.stream.write("\n")


def format_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
