"""The command line, and only that: flags and the environment become Options, a job runs, and
every failure becomes one line on stderr and a documented exit code.
"""

from __future__ import annotations

import argparse
import ctypes
import difflib
import os
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from dotenv import dotenv_values

from . import __version__
from .errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    INTERRUPTED,
    MigrationError,
    UsageError,
)
from .export import run_export
from .migrate import run_migration
from .options import DEFAULT_LOCK_TIMEOUT, Options
from .output import Console
from .report import RunReport
from .sync import run_sync
from .sync_back import run_sync_back
from .target import parse_target_url

DEFAULT_SQLITE_PATH = "./todo.db"

EXAMPLES = """\
examples:
  check everything, change nothing:    python %(prog)s --dry-run
  ./todo.db into DATABASE_URL:         python %(prog)s
  explicit source and target:          python %(prog)s --sqlite-path /srv/todo.db \\
                                         --postgres-url 'postgresql://todo:PW@db:5432/todo?sslmode=require'
  replace existing tables, no prompt:  python %(prog)s --force-recreate --yes
  set bad rows aside, migrate the rest: python %(prog)s --on-invalid skip --rejects rejects.jsonl
  compare an existing target:          python %(prog)s --verify-only --report check.json
  catch up before the cutover:         python %(prog)s --sync --dry-run   then   python %(prog)s --sync

exit codes: 0 success, 1 migration or verification failed (PostgreSQL left as it was),
            2 usage error (bad flag, missing file, bad URL), 130 interrupted (Ctrl-C)
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other failure (not the whole usage
    block), with the flag meant when one was mistyped."""

    def error(self, message: str) -> NoReturn:
        fix = "run with --help to see every flag"
        if message.startswith("unrecognized arguments:"):
            known = [o for action in self._actions for o in action.option_strings]
            typed = [a.split("=")[0] for a in message.split(":", 1)[1].split() if a.startswith("-")]
            meant = [m for a in typed for m in difflib.get_close_matches(a, known, n=1, cutoff=0.75)]
            if meant:
                fix = f"did you mean {', '.join(meant)}? Run with --help to see every flag"
        raise UsageError(message, fix)


class Once(argparse.Action):
    """A flag with a value, given once: `--schema a … --schema b` (a line edited in haste) would
    silently mean the last. The same value again is harmless; the values are not printed (one of
    them may be a URL with its password)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        given = vars(namespace).setdefault("_given", {})
        if self.dest in given and given[self.dest] != values:
            parser.error(f"{option_string} given twice, with different values")
        given[self.dest] = values
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="migrate_sqlite_to_postgres.py",
        description="Move the Todo app's SQLite database (todo.db) to PostgreSQL in one verified "
        "transaction. The target schema comes from models.py.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a typo such as --force-recreat must not silently mean something
    )
    p.register("action", None, Once)  # every flag that takes a value (argparse's default action)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    src = p.add_argument_group("source and target")
    src.add_argument("--sqlite-path", metavar="PATH", default=DEFAULT_SQLITE_PATH,
                     help="the SQLite file to read, never modified (default ./todo.db); e.g. --sqlite-path /srv/app/todo.db")  # fmt: skip
    src.add_argument("--postgres-url", metavar="URL",
                     help="target, e.g. postgresql://todo:PW@localhost:5432/todo_phase5?sslmode=require "
                     "(default: DATABASE_URL from the environment, then ./.env)")  # fmt: skip
    src.add_argument("--schema", default="public", metavar="NAME",
                     help="PostgreSQL schema to create the tables in, created if missing (default public); e.g. --schema todo")  # fmt: skip
    run = p.add_argument_group("what to do")
    run.add_argument("--reverse", action="store_true",
                     help="the way back: export PostgreSQL to a new SQLite file the app runs on (--sqlite-path is "
                     "the destination, built aside, verified, then renamed into place); e.g. --reverse --sqlite-path back.db")  # fmt: skip
    run.add_argument("--sync", action="store_true",
                     help="catch an existing target up with todo.db: compare both row by row and apply only the "
                     "inserts, updates and deletes, in one verified transaction (the cutover's short freeze); "
                     "refused if PostgreSQL changed since the last migrate/sync")  # fmt: skip
    run.add_argument("--overwrite-changes", action="store_true",
                     help="with --sync: make PostgreSQL equal todo.db even where someone else wrote to it since "
                     "the last migrate/sync (those rows are overwritten)")  # fmt: skip
    run.add_argument("--dry-run", action="store_true",
                     help="read the source, check the target, print the plan and every problem; change nothing")  # fmt: skip
    run.add_argument("--force-recreate", action="store_true",
                     help="drop and recreate the app's tables if the target has them (in the same transaction)")  # fmt: skip
    run.add_argument("-y", "--yes", action="store_true",
                     help="do not ask before --force-recreate replaces tables that hold rows, or before --sync applies the changes of another file than last time")  # fmt: skip
    run.add_argument("--verify-only", action="store_true",
                     help="compare an existing target with the source value by value; write nothing")  # fmt: skip
    run.add_argument("--no-verify", dest="verify", action="store_false",
                     help="skip the value checksums after loading (row counts, orphans and sequences are still checked)")  # fmt: skip
    run.add_argument("--wait", action="store_true",
                     help="if another migration into this database is running, wait for it instead of failing")  # fmt: skip
    run.add_argument("--lock-timeout", default=DEFAULT_LOCK_TIMEOUT, metavar="DURATION",
                     help="how long to wait for locks held by other sessions (default 10s); e.g. --lock-timeout 1min")  # fmt: skip
    data = p.add_argument_group("data that PostgreSQL cannot store as it is")
    data.add_argument("--on-invalid", choices=("fail", "skip"), default="fail",
                      help="fail (default): refuse before writing anything; skip: migrate the rest and write "
                      "bad rows, and rows that depend on them, to the rejects file")  # fmt: skip
    data.add_argument("--rejects", metavar="PATH",
                      help="rejects file for --on-invalid skip (default: next to the source, todo.db.rejects.jsonl)")  # fmt: skip
    data.add_argument("--strip-nul", action="store_true",
                      help="remove NUL bytes from text instead of rejecting those values (counted in the summary)")  # fmt: skip
    data.add_argument("--epoch-unit", choices=("seconds", "milliseconds"),
                      help="read numbers in datetime columns (as other tools write them) as seconds or milliseconds "
                      "since 1970 UTC; without it they are refused, never guessed; e.g. --epoch-unit milliseconds")  # fmt: skip
    data.add_argument("--allow-drift", action="store_true",
                      help="proceed when todo.db and models.py differ (unknown columns or tables are left out, "
                      "missing columns get their default); every difference is reported")  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument(
        "--report", metavar="PATH", help="write a JSON report of the run, e.g. --report migration.json"
    )
    out.add_argument("-q", "--quiet", action="store_true", help="only errors and the final result line")
    out.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    return p


def resolve_target_url(cli_url: str | None, environ: dict[str, str], dotenv_path: Path) -> tuple[str, str]:
    """--postgres-url, else DATABASE_URL from the environment, else from ./.env (real env wins)."""
    if cli_url is not None:
        return cli_url, "--postgres-url"
    if environ.get("DATABASE_URL"):
        return environ["DATABASE_URL"], "DATABASE_URL"
    if dotenv_path.is_file():
        value = dotenv_values(dotenv_path).get("DATABASE_URL")
        if value:
            return value, f"DATABASE_URL in {dotenv_path}"
    raise UsageError(
        "no PostgreSQL target given",
        "pass --postgres-url postgresql://USER:PASSWORD@HOST:5432/DBNAME or set DATABASE_URL (environment or ./.env)",
    )


EXAMPLE_NAMES = {"--rejects": "rejects.jsonl", "--report": "report.json"}  # in the advice of refusals
URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):/")  # two letters at least: C:/ is a path


def sqlite_path_of(value: str) -> str:
    """--sqlite-path as typed, or the file an app's `sqlite:///PATH` URL (its DATABASE_URL in
    development) or a `file:///PATH` URL names; any other URL is refused before it is printed
    anywhere: a PostgreSQL URL
    swapped into a path flag would put its password in every message about that path."""
    scheme = URL_SCHEME.match(value)
    if scheme is None:
        return value
    if scheme.group(1).lower() == "sqlite" and value.lower().startswith("sqlite:///"):
        return value[len("sqlite:///") :].split("?")[0] or DEFAULT_SQLITE_PATH  # ?options: SQLAlchemy's
    if scheme.group(1).lower() == "file" and value.lower().startswith("file:///"):
        return value[len("file://") :].split("?")[0]  # a file URL's path is absolute
    raise UsageError(
        f"--sqlite-path is a {scheme.group(1)}:// URL, not a file (not shown: it may hold a password)",
        "did you swap the flags? --sqlite-path takes the SQLite file, e.g. --sqlite-path ./todo.db; "
        "the PostgreSQL URL goes to --postgres-url",
    )


def refuse_url_as_output(flag: str, value: str | None) -> None:
    """--report and --rejects are files; a URL there is a swapped flag (and its password would be
    printed in the error about the path)."""
    if value and (scheme := URL_SCHEME.match(value)):
        raise UsageError(
            f"{flag} is a {scheme.group(1)}:// URL, not a file (not shown: it may hold a password)",
            f"pass a file name, e.g. {flag} {EXAMPLE_NAMES[flag]}",
        )


def output_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(--rejects, --report), refused where they would overwrite the source. Checked first, so a
    refused --report is never written either."""
    args.sqlite_path = sqlite_path_of(args.sqlite_path)
    refuse_url_as_output("--report", args.report)
    refuse_url_as_output("--rejects", args.rejects)
    sqlite_path = Path(args.sqlite_path).expanduser()
    rejects = Path(args.rejects).expanduser() if args.rejects else None
    if rejects is not None and not args.on_invalid == "skip":
        raise UsageError(
            "--rejects is used only with --on-invalid skip", "add --on-invalid skip or drop --rejects"
        )
    report = Path(args.report).expanduser() if args.report else None
    refuse_output_over_source(sqlite_path, {"--report": report})
    for flag, path in (("--report", report), ("--rejects", rejects)):
        refuse_unwritable_output(flag, path)
    defaulted = rejects is None
    rejects = rejects or sqlite_path.with_name(sqlite_path.name + ".rejects.jsonl")
    if args.on_invalid == "skip" and defaulted and not args.reverse and sqlite_path.is_file():
        try:  # a dry run that passed must mean the real run can write it
            refuse_unwritable_output("--rejects", rejects)
        except UsageError as exc:
            raise UsageError(
                f"{exc.what} (the rejects file's default place, beside the SQLite file)",
                "pass --rejects PATH in a directory you can write to",
            ) from None
    if args.on_invalid == "skip":
        refuse_output_over_source(sqlite_path, {"--rejects": rejects, "--report": report})
    return rejects, report


def refuse_unwritable_output(flag: str, path: Path | None) -> None:
    """A file the run writes at its end must be writable before anything else happens: found
    only after COMMIT, it turned a migration that succeeded into an exit 1."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(
            f"{flag} {path} is a directory",
            f"pass a file name, e.g. {flag} {path / EXAMPLE_NAMES[flag]}",
        )
    if not parent.is_dir():
        raise UsageError(
            f"{flag} {path}: the directory {parent} does not exist", "create it, or pass another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(
            f"{flag} {path} cannot be written (permission denied)", "pass a path you can write to"
        )


def options_from(args: argparse.Namespace, rejects: Path | None, report: Path | None) -> Options:
    if args.reverse:
        refuse_forward_only_flags(args)
    if args.sync:
        refuse_flags_beside_sync(args)
    elif args.overwrite_changes:
        raise UsageError("--overwrite-changes only means something with --sync", "add --sync, or drop it")
    if args.dry_run and args.verify_only:
        raise UsageError("--dry-run and --verify-only cannot be combined", "choose one")
    if args.verify_only and args.force_recreate:
        raise UsageError(
            "--verify-only writes nothing, so --force-recreate makes no sense with it", "drop one"
        )
    if not args.verify and args.verify_only:
        raise UsageError("--verify-only with --no-verify would check nothing", "drop --no-verify")
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(ms|s|min|h)?\s*", args.lock_timeout):
        raise UsageError(
            f"--lock-timeout {args.lock_timeout!r} is not a duration",
            "use e.g. --lock-timeout 10s, 500ms, 2min",
        )
    if not args.schema.strip():
        raise UsageError("--schema is empty", "pass a schema name, e.g. --schema public")
    if args.schema.lower().startswith("pg_") or args.schema.lower() == "information_schema":
        raise UsageError(
            f"--schema {args.schema} is one of PostgreSQL's own (pg_* and information_schema are the system's)",
            "pass the app's schema, e.g. --schema public",
        )
    url, origin = resolve_target_url(args.postgres_url, dict(os.environ), Path.cwd() / ".env")
    return Options(
        sqlite_path=Path(args.sqlite_path).expanduser(),
        target=parse_target_url(url),
        url_origin=origin,
        reverse=args.reverse,
        dry_run=args.dry_run,
        force_recreate=args.force_recreate,
        yes=args.yes,
        on_invalid=args.on_invalid,
        rejects_path=rejects,
        strip_nul=args.strip_nul,
        epoch_unit=args.epoch_unit,
        allow_drift=args.allow_drift,
        verify=args.verify,
        verify_only=args.verify_only,
        sync=args.sync,
        overwrite_changes=args.overwrite_changes,
        report_path=report,
        schema=args.schema.strip(),
        wait=args.wait,
        lock_timeout=args.lock_timeout,
        quiet=args.quiet,
        debug=args.debug,
    )


def refuse_forward_only_flags(args: argparse.Namespace) -> None:
    """The export writes a new file from PostgreSQL, whose values SQLite always takes: flags about
    todo.db's bad values mean nothing there, and saying so beats ignoring them."""
    given = [
        flag
        for flag, on in (
            ("--on-invalid skip", args.on_invalid == "skip"),
            ("--rejects", args.rejects is not None),
            ("--strip-nul", args.strip_nul),
            ("--epoch-unit", args.epoch_unit is not None),
            ("--no-verify", not args.verify),
            ("--wait", args.wait),
        )
        if on
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} {'has' if len(given) == 1 else 'have'} no meaning with --reverse "
            "(the export is always verified; PostgreSQL's values always fit SQLite)",
            "drop " + ", ".join(given),
        )


def refuse_flags_beside_sync(args: argparse.Namespace) -> None:
    """A sync changes an existing target in place and always verifies what it changed."""
    for flag, on, fix in (
        ("--force-recreate", args.force_recreate, "a sync keeps the tables; drop --sync to replace them"),
        ("--verify-only", args.verify_only, "--sync --dry-run compares without writing"),
        ("--no-verify", not args.verify, "a sync always verifies what it changed"),
    ):
        if on:
            raise UsageError(f"--sync cannot be combined with {flag}", fix)


def refuse_output_over_source(source: Path, outputs: dict[str, Path | None]) -> None:
    """The tool never writes to its source: an output path that is todo.db, one of its -wal, -shm
    or -journal companions (through any symlink or hard link), or another output, is refused."""
    bases = {source, source.resolve()}  # SQLite names the companions after the file a symlink points at
    protected = [Path(f"{base}{suffix}") for base in bases for suffix in ("", "-wal", "-shm", "-journal")]
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        for other in protected:
            if _same_file(path, other):
                raise UsageError(
                    f"{flag} {str(path)!r} would overwrite {other.name!r}, a file of the source database: "
                    "the tool never writes to its source",
                    f"pass another path, e.g. {flag} {source.with_name(source.name + '.rejects.jsonl' if flag == '--rejects' else 'migration-report.json')}",
                )
        resolved = path.resolve()
        if resolved in seen:
            raise UsageError(
                f"{flag} and {seen[resolved]} name the same file {str(path)!r}", "pass two paths"
            )
        seen[resolved] = flag


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def main(argv: list[str] | None = None) -> int:
    """Run the tool; every failure becomes one line on stderr and a documented exit code."""
    INTERRUPTED.clear()
    steady_memory()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


INTERRUPTED_LINE = "interrupted; the transaction was rolled back, nothing was changed in PostgreSQL"
INTERRUPTED_EXPORT = "interrupted; the temporary file was removed, the destination was not touched"
INTERRUPTED_SYNC_BACK = "interrupted; the transaction on todo.db was rolled back, todo.db was not changed"


def _main(argv: list[str] | None) -> int:
    console = Console()
    report = RunReport()
    report_path: Path | None = None
    debug = False
    interrupted = INTERRUPTED_LINE
    code = EXIT_OK
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        interrupted = INTERRUPTED_LINE
        if args.reverse and not args.verify_only:
            interrupted = INTERRUPTED_SYNC_BACK if args.sync else INTERRUPTED_EXPORT
        console = Console(quiet=args.quiet)
        rejects_path, report_path = output_paths(args)
        options = options_from(args, rejects_path, report_path)
        if options.sync and options.reverse:
            run_sync_back(options, console, report)
        elif options.sync:
            run_sync(options, console, report)
        elif options.reverse and not options.verify_only:
            run_export(options, console, report)
        else:  # --reverse --verify-only compares the same two databases as the forward check
            run_migration(options, console, report)
    except KeyboardInterrupt:
        console.error(interrupted)
        report.fail(interrupted)
        code = EXIT_INTERRUPTED
    except MigrationError as exc:
        line = interrupted if INTERRUPTED.is_set() else exc.one_line()  # e.g. a cancelled query
        console.error(line)
        report.fail(line)
        code = EXIT_INTERRUPTED if INTERRUPTED.is_set() else exc.exit_code
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except Exception as exc:
        if INTERRUPTED.is_set():
            console.error(interrupted)
            report.fail(interrupted)
            return _write_report(console, report, report_path, EXIT_INTERRUPTED)
        if debug:
            traceback.print_exc()
        line = scrub_unexpected(exc, report)
        console.error(
            f"unexpected error: {line}; nothing was committed. Re-run with --debug for the traceback and report it"
        )
        report.fail(line)
        code = EXIT_FAILURE
    return _write_report(console, report, report_path, code)


def steady_memory() -> None:
    """Large buffers (the COPY chunks) straight from the OS and back, and few malloc arenas: glibc
    otherwise keeps what each thread freed, and under load memory would not stay flat."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD: fixed, no longer raised as buffers are freed
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl, say): nothing to tune
        pass


def _write_report(console: Console, report: RunReport, path: Path | None, code: int) -> int:
    if path is not None:
        try:
            report.write(path)
        except OSError as exc:
            console.error(f"cannot write the report {path} ({exc.strerror})")
            code = code or EXIT_FAILURE
    return code


def scrub_unexpected(exc: BaseException, report: RunReport) -> str:
    """An unexpected error's first line, with the target's password removed if it is in there."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return report.scrub(text)


def _interrupt(signum, frame) -> None:
    """Ctrl-C, or SIGTERM (docker stop, kill): stop where we are and roll back."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


__all__ = ["main", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED"]
