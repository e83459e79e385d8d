"""How many objects a session has had added: the fast path's check that a refused change added nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from domain.ledger import unit_state


@event.listens_for(Session, "transient_to_pending")
def _count_added(session: Session, _instance: Any) -> None:
    unit_state(session).added += 1


def added_count(session: Session) -> int:
    return unit_state(session).added
