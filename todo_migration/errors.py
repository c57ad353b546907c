"""The one exception type the pipeline raises for anything a user can fix."""

from __future__ import annotations

import threading

EXIT_OK = 0
EXIT_FAILURE = 1  # migration or verification failed; target untouched
EXIT_USAGE = 2  # bad flags or input the user must correct
EXIT_INTERRUPTED = 130  # Ctrl-C

# Set by the SIGINT/SIGTERM handler. Long work polls it (SQLite's progress handler, the COPY
# reader), and a failure that follows it is reported as the interruption it is.
INTERRUPTED = threading.Event()


class MigrationError(Exception):
    """A failure told as one line: what happened, then what to do.

    `exit_code` follows the documented codes; `target_untouched` adds the reassurance that the
    PostgreSQL transaction was rolled back, where that is true.
    """

    def __init__(
        self,
        what: str,
        fix: str = "",
        *,
        exit_code: int = EXIT_FAILURE,
        target_untouched: bool = False,
    ) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix
        self.exit_code = exit_code
        self.target_untouched = target_untouched

    def one_line(self) -> str:
        parts = [self.what.rstrip(".")]
        if self.target_untouched:
            parts.append("nothing was changed in PostgreSQL")
        line = "; ".join(parts) + "."
        if self.fix:
            fix = self.fix.rstrip(".")
            line += f" {fix[:1].upper()}{fix[1:]}" + ("" if fix.endswith(("?", "!")) else ".")
        return line


class UsageError(MigrationError):
    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what, fix, exit_code=EXIT_USAGE)
