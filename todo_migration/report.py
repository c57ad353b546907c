"""The machine-readable record of a run (--report PATH): what was read, written, rejected, checked."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .options import Options
    from .target import Target
    from .validate import Validation
    from .verify import TableCheck


@dataclass
class RunReport:
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    mode: str = ""
    source: str = ""
    target: str = ""
    schema: str = ""
    target_version: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    source_tables: dict[str, int] = field(default_factory=dict)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)  # read / written / rejected / converted
    drift: list[dict[str, Any]] = field(default_factory=list)
    not_migrated: list[dict[str, Any]] = field(default_factory=list)  # views, triggers, extra indexes
    warnings: list[str] = field(default_factory=list)
    schema_differences: list[str] = field(default_factory=list)  # --verify-only
    problems: list[dict[str, Any]] = field(default_factory=list)
    conversions: list[dict[str, Any]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    reject_reasons: list[dict[str, Any]] = field(default_factory=list)
    rejects_path: str | None = None
    verification: list[dict[str, Any]] = field(default_factory=list)
    delta: dict[str, dict[str, Any]] = field(default_factory=dict)  # --sync: inserted / updated / deleted
    phases: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    committed: bool = False  # a sync that wrote (rows, or only sequences and the ledger)
    result: str = "ok"
    error: str | None = None

    def start(self, options: Options) -> None:
        """The way back reads PostgreSQL and writes (or checks) the file: source and target swap."""
        self.mode = options.mode
        self.source = str(options.sqlite_path)
        self.target = options.target.masked
        if options.reverse:
            self.mode = {"migrate": "export", "dry-run": "export dry-run"}.get(
                self.mode, f"reverse {self.mode}"
            )
            self.source, self.target = self.target, self.source
        self.schema = options.schema
        self.options = options.recordable()
        self._target = options.target

    def scrub(self, text: str) -> str:
        """Text from elsewhere (an unexpected error) without the target's password."""
        target: Target | None = getattr(self, "_target", None)
        return target.scrub(text) if target is not None else text

    def set_validation(self, v: Validation) -> None:
        self.problems = [vars(g) for g in v.groups]
        self.conversions = [
            {"table": t, "column": c, "kind": k, "count": n} for (t, c, k), n in sorted(v.conversions.items())
        ]
        self.rejected = dict(v.rejected)
        self.reject_reasons = [
            {"table": t, "reason": k, "rows": n} for (t, k), n in sorted(v.reject_reasons.items())
        ]

    def set_checks(self, checks: list[TableCheck]) -> None:
        self.verification = [
            {
                "table": ch.table,
                "ok": ch.ok,
                "source_rows": ch.source_rows,
                "sent_rows": ch.sent_rows,
                "rejected_rows": ch.rejected_rows,
                "target_rows": ch.target_rows,
                "checksum_ok": ch.checksum_ok,
                "checksum_sha256": ch.checksum,
                "mismatches": [vars(m) for m in ch.mismatches],
                "orphans": ch.orphans,
                "sequence_ok": ch.sequence_ok,
                "sequence": ch.sequence_detail,
                "sequence_exhausted": ch.sequence_exhausted,
            }
            for ch in checks
        ]

    def set_tables(self, counts: dict[str, dict[str, int]]) -> None:
        self.tables = counts

    def fail(self, line: str) -> None:
        self.result = "failed"
        self.error = line

    def write(self, path: Path) -> None:
        """Atomically, so a half-written report is never mistaken for a whole one."""
        fields = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        data = {"tool": "migrate_sqlite_to_postgres", "version": __version__, **fields}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, ensure_ascii=False, default=str, allow_nan=False)
            out.write("\n")
        os.replace(tmp, path)
