"""Everything the tool prints: step lines, progress bars, tables of problems, the summary.

Progress bars appear only on a terminal and never with --quiet; errors always go to stderr.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm


def _supports_emoji(stream: TextIO) -> bool:
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return encoding.startswith("utf")


_PLAIN = {"✅": "[ok]", "❌": "[error]", "⚠️": "[warn]", "🔍": "[..]", "📊": "[..]", "🐘": "[..]",
          "📦": "[..]", "🔗": "[..]", "🧪": "[..]", "🎉": "[done]", "🗑️": "[..]", "ℹ️": "[i]",
          "⏱️": "[time]", "🧾": "[..]", "🔒": "[..]", "🔁": "[..]"}  # fmt: skip


class Console:
    """Human output. `quiet` keeps errors and the final result line only."""

    def __init__(
        self, *, quiet: bool = False, stream: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.out = stream or sys.stdout
        self.err = err or sys.stderr
        self.quiet = quiet
        self.is_terminal = bool(getattr(self.out, "isatty", lambda: False)())
        self.emoji = _supports_emoji(self.out)

    def _icon(self, icon: str) -> str:
        return icon if self.emoji else _PLAIN.get(icon, "*")

    def step(self, icon: str, text: str) -> None:
        if not self.quiet:
            print(f"{self._icon(icon)} {text}", file=self.out, flush=True)

    def detail(self, text: str) -> None:
        if not self.quiet:
            print(f"   {text}", file=self.out, flush=True)

    def result(self, icon: str, text: str) -> None:
        """Shown even with --quiet: the one line a script or a tired person needs."""
        print(f"{self._icon(icon)} {text}", file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"{self._icon('⚠️')} {text}", file=self.err, flush=True)

    def error(self, text: str) -> None:
        print(f"{self._icon('❌')} {text}", file=self.err, flush=True)

    @contextmanager
    def phase(self, name: str, timings: dict[str, float]) -> Iterator[None]:
        """Time a phase into `timings`; on a terminal, say when it ends and how long it took."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            timings[name] = timings.get(name, 0.0) + elapsed
        if self.is_terminal and not self.quiet:
            print(f"   {self._icon('⏱️')} {name}: {elapsed:.2f}s", file=self.out, flush=True)

    def progress(self, label: str, total: int) -> tqdm:
        """A per-table bar (rows, rows/s, ETA); a no-op object when not on a terminal."""
        # A terminal that reports no size (some CI consoles, a bare pty) gets 100 columns.
        width = shutil.get_terminal_size((100, 20)).columns
        return tqdm(
            total=total,
            desc=f"   {label}",
            unit=" rows",
            unit_scale=True,
            disable=self.quiet or not self.is_terminal,
            file=self.out,
            leave=True,
            ncols=width if width > 0 else 100,
        )

    def confirm(self, question: str) -> bool:
        print(f"{self._icon('⚠️')} {question} [type 'yes' to continue]: ", end="", file=self.out, flush=True)
        try:
            answer = input()
        except EOFError:
            return False
        return answer.strip().lower() in {"yes", "y"}


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"
