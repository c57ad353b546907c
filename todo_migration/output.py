"""Everything the tool prints: step lines, progress bars, tables of problems, the summary.

Progress bars appear only on a terminal and never with --quiet; errors always go to stderr.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

from .convert import sql_text
from .load import qualified_table

if TYPE_CHECKING:
    from .plan import Plan
    from .report import RunReport
    from .validate import ProblemGroup, Validation
    from .verify import TableCheck


def _supports_emoji(stream: TextIO) -> bool:
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return encoding.startswith("utf")


_PLAIN = {"✅": "[ok]", "❌": "[error]", "⚠️": "[warn]", "🔍": "[..]", "📊": "[..]", "🐘": "[..]",
          "📦": "[..]", "🔗": "[..]", "🧪": "[..]", "🎉": "[done]", "🗑️": "[..]", "ℹ️": "[i]",
          "⏱️": "[time]", "🧾": "[..]", "🔒": "[..]", "🔁": "[..]", "🔄": "[..]", "✍️": "[..]", "📋": "[..]"}  # fmt: skip


def _silence(stream: TextIO) -> None:
    """Point a stream that failed at /dev/null, file descriptor and all, so that neither this run
    nor Python's flush at exit writes to it again (and says so in a traceback)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's StringIO)
        pass


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

    def _say(self, stream: TextIO, line: str) -> None:
        """One line out. Output that can no longer be written (`| head` closed the pipe, a full
        disk) is given up, not the run: the migration goes on to its end and its exit code."""
        try:
            print(line, file=stream, flush=True)
        except OSError:
            _silence(stream)

    def _icon(self, icon: str) -> str:
        return icon if self.emoji else _PLAIN.get(icon, "*")

    def step(self, icon: str, text: str) -> None:
        if not self.quiet:
            self._say(self.out, f"{self._icon(icon)} {text}")

    def detail(self, text: str) -> None:
        if not self.quiet:
            self._say(self.out, f"   {text}")

    def result(self, icon: str, text: str) -> None:
        """Shown even with --quiet: the one line a script or a tired person needs."""
        self._say(self.out, f"{self._icon(icon)} {text}")

    def listed(self) -> str:
        """How an error line refers to the list before it: with --quiet there was none."""
        return "run without --quiet to list them" if self.quiet else "listed above"

    def warn(self, text: str) -> None:
        self._say(self.err, f"{self._icon('⚠️')} {text}")

    def error(self, text: str) -> None:
        self._say(self.err, f"{self._icon('❌')} {text}")

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
            self._say(self.out, f"   {self._icon('⏱️')} {name}: {elapsed:.2f}s")

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


# --- what the steps print --------------------------------------------------------------------


def print_problems(
    console: Console, validation: Validation, *, rejects_path: Path | None, plan: Plan | None = None
) -> None:
    """The pre-flight's findings: conversions, then each problem group with ids and an example."""
    for (table, column, label), n in sorted(validation.conversions.items()):
        console.detail(f"converted: {table}.{column}: {label} ({n:,})")
    if not validation.groups:
        console.detail("✅ no problems found")
        return
    console.step(
        "⚠️", f"Found {plural(validation.problem_count, 'problem')} PostgreSQL would refuse or change:"
    )
    for g in validation.groups:
        ids = ", ".join(map(str, g.ids)) + (", …" if g.count > len(g.ids) else "")
        console.detail(f"{g.kind:<22} {g.table}.{g.column}: {g.count:,} (ids {ids}); e.g. {g.example}")
        if plan is not None and (hint := placeholder_hint(g, plan)):
            console.detail(f"  {hint}")
    if rejects_path is not None:
        total = sum(validation.rejected.values())
        console.detail(
            f"--on-invalid skip: {plural(total, 'row')} will go to {rejects_path} instead of PostgreSQL"
        )


PLACEHOLDERS = {
    "''": "empty text, as sqlite3 .import leaves an empty CSV field (or an editor a cleared cell)",
    "'NULL'": "the text 'NULL', as some editors store it when NULL is typed into a cell",
}


def placeholder_hint(group: ProblemGroup, plan: Plan) -> str | None:
    """For a problem whose example is a placeholder for 'no value' (an empty or 'NULL' text): the
    UPDATE that says so, NULL where the model allows it, else the model's default."""
    value = next((v for v in PLACEHOLDERS if group.example.endswith(f": {v}")), None)
    if value is None:
        return None
    column = plan.table(group.table).column(group.column).column
    t, c = group.table, group.column
    if column.nullable:
        return f"{PLACEHOLDERS[value]}; if it means no value: UPDATE {t} SET {c} = NULL WHERE {c} = {value}"
    default = column.default.arg if column.default is not None and column.default.is_scalar else None
    if default is None:
        return f"{PLACEHOLDERS[value]}; {t}.{c} is NOT NULL with no default: give those rows a value"
    literal = (
        str(int(default))
        if isinstance(default, bool)
        else sql_text(default)
        if isinstance(default, str)
        else str(default)
    )
    return f"{PLACEHOLDERS[value]}; if it means the model's default: UPDATE {t} SET {c} = {literal} WHERE {c} = {value}"


def print_checks(console: Console, checks: list[TableCheck], *, values: bool) -> None:
    for check in checks:
        mark = "❌" if not check.ok else "⚠️" if check.sequence_exhausted else "✅"
        orphans = sum(check.orphans.values())
        shown = f", values {'match' if check.checksum_ok else 'DIFFER'}" if values else ""
        rejected = f" (+ {check.rejected_rows:,} rejected)" if check.rejected_rows else ""
        console.detail(
            f"{mark} {check.table}: {check.target_rows:,} / {check.source_rows - check.rejected_rows:,} rows"
            f"{rejected}{shown}, {orphans} orphans, sequence {check.sequence_detail}"
        )
        if not check.rows_add_up:
            console.detail(f"   ❌ {check.counts()}")  # the differing rows, if found, below: each once
        for m in check.mismatches:
            console.detail(f"   ❌ {m.describe()}")


def print_dry_run(console: Console, plan: Plan, validation: Validation, existing: dict[str, int]) -> None:
    console.step("📋", "Dry run: this is what the migration would do (nothing was changed):")
    if existing:
        console.detail("drop " + ", ".join(existing))
    for tp in plan.tables:
        rejected = validation.rejected[tp.name]
        extra = f", {rejected:,} to the rejects file" if rejected else ""
        console.detail(
            f"create {qualified_table(tp.table)} and copy {tp.source_rows - rejected:,} rows{extra}"
        )
    console.detail("then build primary keys, indexes, foreign keys, set sequences, ANALYZE, verify, COMMIT")


def print_summary(console: Console, report: RunReport, plan: Plan | None, validation: Validation | None,
                  *, mode: str, allow_drift: bool) -> None:  # fmt: skip
    """The per-table counts (read = written + rejected, as verified), then the one result line."""
    console.step("📊", "Summary:")
    if plan is not None and validation is not None:
        label = {"dry-run": "would write", "verify-only": "checked"}.get(mode, "written")
        for table, counts in report.tables.items():
            console.detail(
                f"{table:<20} read {counts['read']:>10,}  {label} {counts['written']:>10,}  "
                f"rejected {counts['rejected']:>8,}"
            )
        conversions = sum(validation.conversions.values())
        if conversions:
            console.detail(f"lossless conversions applied: {conversions:,} values (listed above)")
        if report.rejects_path:
            reasons = ", ".join(f"{t} {k}: {n:,}" for (t, k), n in sorted(validation.reject_reasons.items()))
            console.detail(f"rejects file: {report.rejects_path} ({reasons})")
        if plan.drift and allow_drift:
            console.detail(
                f"schema drift allowed (--allow-drift): {plural(len(plan.drift), 'difference')}, listed above"
            )
    phases = ", ".join(f"{k} {s:.2f}s" for k, s in report.phases.items())
    console.detail(f"phases: {phases}")
    verb = {"migrate": "Migration completed and verified", "dry-run": "Dry run passed: the migration would succeed",
            "verify-only": "Verified: PostgreSQL matches todo.db"}[mode]  # fmt: skip
    console.result("🎉", f"{verb} in {report.duration_s or 0:.2f}s")
