"""Replay a device's exported queue on the server, without HTTP.

    python -m reconcile.replay QUEUE_FILE --device ID [--dry-run] [--database-url URL]

The file is JSON or MessagePack: a list of changes, or an envelope with `changes`. It runs through the
same reconciler as a push, as the device's user, in batches of 500, with a progress bar and a summary of
applied / duplicate / rejected by code. Already applied changes come back as duplicates, so replaying a
whole queue is always safe; `--dry-run` applies each batch and rolls it back.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain import codec
from domain.accounts.models import Device, User
from domain.accounts.policy import Actor
from domain.db import Database
from domain.dbfaults import DatabaseUnavailable, database_fault_response
from domain.errors import DomainError, NotFound, ValidationError
from domain.settings import Settings
from reconcile.batch import apply_batch
from reconcile.envelope import MAX_CHANGES, parse_envelope


def read_queue(path: Path) -> list[Any]:
    raw = path.read_bytes()
    fmt = codec.MSGPACK if path.suffix.lower() in {".msgpack", ".mpk", ".bin"} else codec.JSON
    try:
        payload = codec.decode(raw, fmt)
    except DomainError:
        payload = codec.decode(raw, codec.MSGPACK if fmt == codec.JSON else codec.JSON)
    changes = payload.get("changes") if isinstance(payload, dict) else payload
    if not isinstance(changes, list):
        raise ValidationError("the queue file must hold a list of changes or an object with 'changes'")
    return changes


def device_owner(session: Session, device_id: str) -> Actor:
    row = session.execute(
        select(User.id, User.username, User.role)
        .join(Device, Device.user_id == User.id)
        .where(Device.device_id == device_id)
    ).first()
    if row is None:
        raise NotFound(f"device {device_id} has never pushed: nothing to replay as")
    return Actor(row.id, row.username, row.role)


def replay(db: Database, device_id: str, changes: list[Any], dry_run: bool, console: Console) -> Counter[str]:
    owner = db.read(lambda s: device_owner(s, device_id))
    summary: Counter[str] = Counter()
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("replay", total=len(changes))
        for start in range(0, len(changes), MAX_CHANGES):
            chunk = changes[start : start + MAX_CHANGES]
            envelope = parse_envelope({"device_id": device_id, "changes": chunk})
            response = apply_batch(db, owner, envelope, dry_run=dry_run, batch_id=f"replay-cli:{start}")
            for result in response["results"]:
                key = result["status"] if result["status"] != "rejected" else f"rejected: {result['error']['code']}"
                summary[key] += 1
            progress.advance(task, len(chunk))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconcile.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("queue_file", type=Path)
    parser.add_argument("--device", required=True, help="the device whose queue this is")
    parser.add_argument("--dry-run", action="store_true", help="apply and roll back: report only")
    parser.add_argument("--database-url", default=None, help="defaults to LPG_DATABASE_URL")
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = Settings.from_env(**overrides)
    db = Database(settings)
    try:
        summary = replay(db, args.device, read_queue(args.queue_file), args.dry_run, console)
    except DomainError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        return 2
    except DatabaseUnavailable as exc:
        answer = database_fault_response(exc)
        assert answer is not None
        console.print(f"[red]{answer.code}[/red]: {answer.message} ({exc})")
        return 3
    finally:
        db.dispose()
    table = Table(title="dry run: nothing was written" if args.dry_run else "replay summary")
    table.add_column("result")
    table.add_column("changes", justify="right")
    for key in sorted(summary):
        table.add_row(key, str(summary[key]))
    table.add_row("total", str(sum(summary.values())))
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
