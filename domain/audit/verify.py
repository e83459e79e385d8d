"""Verifying the black box: recompute the hash chain from the first entry, in id order, page by page.

The chain is intact when, for every entry in id order,

1. its `prev_hash` is the stored `hash` of the entry before it (`GENESIS_HASH` for the first entry),
   else `prev_hash_mismatch`: an entry before it was deleted, or entries were reordered;
2. its id is the one after the entry before it (the first is 1), else `id_gap`: an entry was deleted and
   the chain re-linked around the hole;
3. its `hash` is the SHA-256 of its own content and `prev_hash`, else `hash_mismatch`: the entry was changed;

and, at the end, the last entry is the chain's head kept in the counters row `audit` (its id and hash),
else `head_mismatch`: entries were deleted at the end (or appended behind the application's back).

The first broken entry is the lowest id for which one of the checks fails, in the order above; for a
`head_mismatch` it is the first id that should exist but does not (entries deleted at the end), the first
id beyond the head (entries appended), or the head's id (its hash differs from the counter's).

Verification reads a snapshot of the head first and then only entries up to it, each page in its own short
read (constant memory, no long transaction), so entries committed meanwhile by the running application
neither disturb nor join the check.
"""

from __future__ import annotations

from collections.abc import Callable
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
    total: int = 0

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


def verify_chain(db: Database, page_size: int = PAGE_SIZE, progress: Progress | None = None) -> Verdict:
    """Recompute the whole chain up to the head read at the start; stop at the first broken entry."""
    head = db.read(read_head)
    checked, prev_id, prev_hash = 0, 0, GENESIS_HASH
    after: int | None = None  # keyset: ids above this one (None: from the very first row, whatever its id)
    while True:
        page = db.read(partial(_page, after=after, last_id=head.last_id, size=page_size))
        if not page:
            break
        for row in page:
            reason = _check(row, prev_id, prev_hash)
            if reason is not None:
                return Verdict(False, checked, row.id, reason, head.last_id)
            checked += 1
            prev_id, prev_hash = row.id, row.hash
        after = prev_id
        if progress is not None:
            progress(checked, head.last_id)
    broken = _check_head(db, head, prev_id, prev_hash)
    if broken is not None:
        return Verdict(False, checked, broken, HEAD_MISMATCH, head.last_id)
    return Verdict(True, checked, total=head.last_id)


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


def _check_head(db: Database, head: Head, last_id: int, last_hash: str) -> int | None:
    """The id to name when the chain does not end at the recorded head, else None."""
    if last_id < head.last_id:
        return last_id + 1  # entries deleted at the end: the first missing one
    if last_hash != (head.hash or GENESIS_HASH):
        return head.last_id

    # Entries beyond the head: the application moves the counter in the same commit as the entries, so
    # an entry above a counter read *after* it was seen was not written by the application.
    def beyond(session: Session) -> int | None:
        first = session.execute(select(func.min(AuditEntry.id)).where(AuditEntry.id > head.last_id)).scalar()
        if first is None:
            return None
        return first if first > read_head(session).last_id else None

    return db.read(beyond)


__all__ = [
    "HASH_MISMATCH",
    "HEAD_MISMATCH",
    "ID_GAP",
    "PREV_HASH_MISMATCH",
    "Verdict",
    "entry_hash",
    "verify_chain",
]
