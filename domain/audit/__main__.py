"""`python -m domain.audit verify [--database-url URL]`: recompute the audit log's hash chain.

Exit status 0 when the chain is intact, 1 when it is broken (the first broken entry is printed), 2 when
the log cannot be read (no such database, no audit table) or on usage errors. A progress bar (on
stderr) follows large logs; the verdict goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from domain.audit.verify import PAGE_SIZE, Verdict, verify_chain
from domain.db import Database
from domain.dbfaults import DatabaseUnavailable
from domain.settings import DEFAULT_DATABASE_URL, Settings


def anchor(text: str) -> tuple[int, str]:
    entry_id, _, digest = text.partition(":")
    if not (entry_id.isascii() and entry_id.isdigit()) or len(digest) != 64:
        raise argparse.ArgumentTypeError("an anchor is ID:HASH (the entry id and its 64-digit hash)")
    return int(entry_id), digest.lower()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m domain.audit", description="The audit log's tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="recompute the hash chain and name the first broken entry")
    verify.add_argument(
        "--database-url",
        default=None,
        help=f"SQLAlchemy URL (default: LPG_DATABASE_URL, else {DEFAULT_DATABASE_URL})",
    )
    verify.add_argument("--page-size", type=int, default=PAGE_SIZE, help="entries read per query")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON only")
    verify.add_argument(
        "--anchor",
        action="append",
        default=[],
        type=anchor,
        metavar="ID:HASH",
        help="an entry's hash noted earlier outside the database (repeatable); it must still match",
    )
    return parser.parse_args(argv)


def run_verify(
    database_url: str, page_size: int, show_progress: bool, anchors: dict[int, str] | None = None
) -> Verdict:
    db = Database(Settings(database_url=database_url, db_pool_size=1))
    try:
        if not show_progress:
            return verify_chain(db, page_size, anchors=anchors)
        columns = (
            TextColumn("verifying the audit chain"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("verify", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return verify_chain(db, page_size, advance, anchors)
    finally:
        db.dispose()


def _unreadable(url: str) -> str | None:
    """Verification only reads: a SQLite file that does not exist is an error, never created empty."""
    parsed = make_url(url)
    on_disk = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    return "no such database file" if on_disk and not Path(str(parsed.database)).is_file() else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    url = args.database_url or os.environ.get("LPG_DATABASE_URL") or DEFAULT_DATABASE_URL
    show_progress = not args.no_progress and not args.json
    problem = _unreadable(url)
    if problem is None:
        try:
            verdict = run_verify(url, max(1, args.page_size), show_progress, dict(args.anchor))
        except DBAPIError as exc:
            problem = str(exc.orig)
        except DatabaseUnavailable as exc:  # unreachable, or the attempts ran out (domain.dbfaults)
            problem = str(exc)
    if problem is not None:
        print(f"cannot read the audit log at {make_url(url).render_as_string()}: {problem}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(verdict.as_dict()).decode())
    elif verdict.ok:
        print(f"ok: {verdict.checked} entries checked, the chain is intact up to the head")
        if verdict.head_hash:
            print(f"head: {verdict.checked}:{verdict.head_hash}  (note it elsewhere; pass it later as --anchor)")
    else:
        print(
            f"BROKEN: first broken entry id {verdict.first_broken_id} ({verdict.reason}); "
            f"{verdict.checked} entries before it are intact"
        )
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
