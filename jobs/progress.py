"""A plain text progress bar for long batch runs, on stderr (or nowhere)."""

from __future__ import annotations

import time
from typing import IO


class Progress:
    """``label [#####.....] done/total``, redrawn at most a few times a second."""

    def __init__(self, label: str, total: int, stream: IO[str] | None, width: int = 30) -> None:
        self.label, self.total, self.stream, self.width = label, total, stream, width
        self.done = 0
        self._drawn = 0.0

    def advance(self, step: int = 1) -> None:
        """Count ``step`` more items done."""
        self.done += step
        now = time.monotonic()
        if self.stream is not None and (now - self._drawn > 0.2 or self.done >= self.total):
            self._drawn = now
            filled = self.width * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
            self.stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self.stream is not None and self.total:
            self.stream.write("\n")
            self.stream.flush()
