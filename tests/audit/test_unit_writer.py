"""The audit writer refuses what the audit_log columns could not store exactly as it was hashed."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from domain.audit.services import audit
from domain.ledger import ledger_of


@pytest.mark.parametrize(
    ("action", "entity", "device"),
    [("x" * 41, "user", None), ("create", "e" * 41, None), ("", "user", None), ("create", "user", "d" * 101)],
)
def test_values_wider_than_their_columns_are_refused(action: str, entity: str, device: str | None) -> None:
    session = Session()
    with pytest.raises(ValueError):
        audit(session, 1, device, action, entity, 1, after={"a": 1})
    assert ledger_of(session).audits == []


def test_a_callable_before_is_taken_when_audit_is_called_not_at_commit() -> None:
    session = Session()
    state = {"full": 20}
    audit(session, 1, "d" * 100, "a" * 40, "e" * 40, 1, before=lambda: dict(state), after=lambda: dict(state))
    state["full"] = 15
    context = ledger_of(session).audits[0].context
    assert callable(context)
    assert context() == {"before": {"full": 20}, "after": {"full": 15}}
