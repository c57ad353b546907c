"""What a run was asked to do, parsed once: a plain value every step reads what it needs from.

It holds the parsed target (connection parameters and a masked name), never the URL as typed, so
nothing that prints or records the options can print the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .convert import Conversions
from .target import Target

DEFAULT_LOCK_TIMEOUT = "10s"


@dataclass(frozen=True)
class Options:
    sqlite_path: Path
    target: Target
    url_origin: str  # where the target came from: --postgres-url, DATABASE_URL, .env
    reverse: bool = False  # PostgreSQL -> SQLite: sqlite_path is the destination
    dry_run: bool = False
    force_recreate: bool = False
    yes: bool = False
    on_invalid: str = "fail"
    rejects_path: Path | None = None
    strip_nul: bool = False
    epoch_unit: str | None = None
    allow_drift: bool = False
    verify: bool = True
    verify_only: bool = False
    sync: bool = False  # catch an existing target up with only what changed
    overwrite_changes: bool = False  # --sync over rows someone else wrote in the target
    report_path: Path | None = None
    schema: str = "public"
    wait: bool = False
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    quiet: bool = False
    debug: bool = False

    @property
    def skip_invalid(self) -> bool:
        return self.on_invalid == "skip"

    @property
    def mode(self) -> str:
        if self.sync:
            return "sync dry-run" if self.dry_run else "sync"
        return "verify-only" if self.verify_only else "dry-run" if self.dry_run else "migrate"

    @property
    def conversions(self) -> Conversions:
        """The user's conversion choices; the target's encoding is added once connected."""
        return Conversions(strip_nul=self.strip_nul, epoch_unit=self.epoch_unit)

    def recordable(self) -> dict[str, object]:
        """The flags for the JSON report: plain values only (the target is reported masked)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, (bool, str, int, type(None)))}
