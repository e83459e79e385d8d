"""Verifying the black box: recompute the hash chain from the first entry, in id order, page by page.

The chain is intact when, for every entry in id order,

1. its `prev_hash` is the stored `hash` of the entry before it (`GENESIS_HASH` for the first entry),
   else `prev_hash_mismatch`: an entry before it was deleted, or entries were reordered;
2. its id is the one after the entry before it (the first is 1), else `id_gap`: an entry was deleted and
   the chain re-linked around the hole;
3. its `hash` is the SHA-256 of its own content and `prev_hash`, else `hash_mismatch`: the entry was changed;

and, at the end, the last entry is the chain's head kept in the counters row `audit` (its id and hash),
else `head_mismatch`: entries were deleted at the end (or appended behind the application's back).
Optionally, hashes noted earlier outside the database (`anchors`) must still match: `anchor_mismatch`.

The first broken entry is the lowest id for which one of the checks fails, in the order above; for a
`head_mismatch` it is the first id that should exist but does not (entries deleted at the end), the first
id beyond the head (entries appended), or the head's id (its hash differs from the counter's).

Verification reads a snapshot of the head first and then only entries up to it, each page in its own short
read (constant memory, no long transaction), so entries committed meanwhile by the running application
neither disturb nor join the check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.audit.models import AuditEntry
from domain.db import Database
from domain.feed.models import Counter
from domain.ledger import AUDIT_COUNTER, GENESIS_HASH, audit_hash

PAGE_SIZE = 2000

PREV_HASH_MISMATCH = "prev_hash_mismatch"
ID_GAP = "id_gap"
HASH_MISMATCH = "hash_mismatch"
HEAD_MISMATCH = "head_mismatch"
ANCHOR_MISMATCH = "anchor_mismatch"

Progress = Callable[[int, int], None]  # (entries checked so far, entries up to the head)

COLUMNS = (
    AuditEntry.id,
    AuditEntry.at,
    AuditEntry.user_id,
    AuditEntry.device_id,
    AuditEntry.action,
    AuditEntry.entity_type,
    AuditEntry.entity_id,
    AuditEntry.context,
    AuditEntry.prev_hash,
    AuditEntry.hash,
)


@dataclass(frozen=True)
class Head:
    """The chain's head as the counters row records it: the last entry's id and hash (0 / None: empty)."""

    last_id: int
    hash: str | None


@dataclass(frozen=True)
class Verdict:
    """`ok`; `checked`: entries found intact before the first broken one (all of them when ok)."""

    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str | None = None
    total: int = 0  # entries up to the head
    head_hash: str | None = None  # when ok: the verified head's hash, worth noting outside the database

    def as_dict(self) -> dict[str, Any]:
        broken = None if self.ok else {"id": self.first_broken_id, "reason": self.reason}
        return {"ok": self.ok, "checked": self.checked, "first_broken": broken}


def read_head(session: Session) -> Head:
    row = session.execute(select(Counter.value, Counter.head).where(Counter.name == AUDIT_COUNTER)).first()
    if row is None:
        return Head(0, None)
    return Head(int(row.value), row.head)


def entry_hash(row: Any) -> str:
    """The hash an entry should carry, recomputed from its stored columns."""
    return audit_hash(
        row.id,
        row.at,
        row.user_id,
        row.device_id,
        row.action,
        row.entity_type,
        row.entity_id,
        row.context,
        row.prev_hash,
    )


def verify_chain(
    db: Database,
    page_size: int = PAGE_SIZE,
    progress: Progress | None = None,
    anchors: dict[int, str] | None = None,
) -> Verdict:
    """Recompute the whole chain up to the head read at the start; stop at the first broken entry.

    `anchors` ({id: hash}) are hashes kept outside the database (noted from an earlier verification):
    an entry whose hash differs is `anchor_mismatch`, which catches a forger who rewrote the whole chain."""
    head = db.read(read_head)
    verdict = walk(_rows(db, head.last_id, page_size, progress), head, anchors)
    if verdict.ok:
        beyond = db.read(partial(_first_beyond_head, head=head))
        if beyond is not None:
            return Verdict(False, verdict.checked, beyond, HEAD_MISMATCH, head.last_id)
    return verdict


def walk(rows: Iterable[Any], head: Head, anchors: dict[int, str] | None = None) -> Verdict:
    """The chain check itself, over entries in id order (rows with the audit_log columns), up to `head`."""
    anchors = anchors or {}
    checked, prev_id, prev_hash = 0, 0, GENESIS_HASH
    for row in rows:
        reason = _check(row, prev_id, prev_hash)
        if reason is None and anchors.get(row.id, row.hash) != row.hash:
            reason = ANCHOR_MISMATCH
        if reason is not None:
            return Verdict(False, checked, row.id, reason, head.last_id)
        checked += 1
        prev_id, prev_hash = row.id, row.hash
    if prev_id < head.last_id:
        return Verdict(False, checked, prev_id + 1, HEAD_MISMATCH, head.last_id)  # the first missing entry
    if prev_hash != (head.hash or GENESIS_HASH):
        return Verdict(False, checked, head.last_id, HEAD_MISMATCH, head.last_id)
    lost = [anchor for anchor in anchors if anchor > prev_id]
    if lost:  # an anchored entry lies beyond a head that was moved back
        return Verdict(False, checked, min(lost), ANCHOR_MISMATCH, head.last_id)
    return Verdict(True, checked, total=head.last_id, head_hash=head.hash)


def _rows(db: Database, last_id: int, page_size: int, progress: Progress | None) -> Iterator[Any]:
    """Entries up to `last_id` in id order, one short read per page (keyset pagination, constant memory)."""
    after: int | None = None  # None: from the very first row, whatever its id
    seen = 0
    while True:
        page = db.read(partial(_page, after=after, last_id=last_id, size=page_size))
        if not page:
            return
        for row in page:
            yield row
            seen += 1
        after = page[-1].id
        if progress is not None:
            progress(seen, last_id)


def _page(session: Session, after: int | None, last_id: int, size: int) -> list[Any]:
    stmt = select(*COLUMNS).where(AuditEntry.id <= last_id)
    if after is not None:
        stmt = stmt.where(AuditEntry.id > after)
    return list(session.execute(stmt.order_by(AuditEntry.id).limit(size)).all())


def _check(row: Any, prev_id: int, prev_hash: str) -> str | None:
    if row.prev_hash != prev_hash:
        return PREV_HASH_MISMATCH
    if row.id != prev_id + 1:
        return ID_GAP
    if entry_hash(row) != row.hash:
        return HASH_MISMATCH
    return None


def _first_beyond_head(session: Session, head: Head) -> int | None:
    """An entry above the head that the application did not write, if any.

    The application moves the counter in the same commit as its entries, so an entry seen above a head
    read *after* it cannot be the application's (on SQLite both reads share one snapshot anyway)."""
    first = session.execute(select(func.min(AuditEntry.id)).where(AuditEntry.id > head.last_id)).scalar()
    if first is None:
        return None
    return int(first) if first > read_head(session).last_id else None


__all__ = [
    "ANCHOR_MISMATCH",
    "HASH_MISMATCH",
    "HEAD_MISMATCH",
    "ID_GAP",
    "PREV_HASH_MISMATCH",
    "Verdict",
    "entry_hash",
    "verify_chain",
    "walk",
]
