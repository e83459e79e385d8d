"""Reading the change feed without gaps: only rows at or below the committed feed counter are returned.

The counter is read first, in its own statement; every row with a seq at or below it belongs to a
committed transaction (seqs are taken under the counter's lock and committed with it), so the page can
never skip a change that commits later: such a change gets a seq above the counter value read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from domain.feed.models import PUBLIC_SCOPE, FeedEntry
from domain.feed.services import current_seq


@dataclass(frozen=True)
class FeedPage:
    rows: Sequence[FeedEntry]
    last_seq: int
    pending: int


def _scoped(stmt: Select, scope_user: int | None, entities: Sequence[str] | None) -> Select:  # type: ignore[type-arg]
    if scope_user is not None:
        stmt = stmt.where(or_(FeedEntry.scope == PUBLIC_SCOPE, FeedEntry.scope == scope_user))
    if entities:
        stmt = stmt.where(FeedEntry.entity.in_(list(entities)))
    return stmt


def read_page(
    session: Session,
    since: int,
    limit: int,
    scope_user: int | None = None,
    entities: Sequence[str] | None = None,
) -> FeedPage:
    """The next page after `since`: rows in scope, `last_seq` (highest seq examined), `pending` after it."""
    ceiling = current_seq(session)
    rows = session.scalars(
        _scoped(select(FeedEntry), scope_user, entities)
        .where(and_(FeedEntry.seq > since, FeedEntry.seq <= ceiling))
        .order_by(FeedEntry.seq)
        .limit(limit)
    ).all()
    last_seq = rows[-1].seq if len(rows) == limit else max(ceiling, since)
    pending = session.execute(
        _scoped(select(func.count()).select_from(FeedEntry), scope_user, entities).where(
            and_(FeedEntry.seq > last_seq, FeedEntry.seq <= ceiling)
        )
    ).scalar_one()
    return FeedPage(rows, last_seq, pending)
