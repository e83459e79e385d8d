"""Every state-changing service writes exactly the expected audit entries, with before/after snapshots.

The cases live in `audit_cases_<area>.py` modules (see `audit_cases.py`): add yours there.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from domain.audit.models import AuditEntry
from domain.audit.verify import verify_chain
from domain.clock import utcnow
from tests.conftest import bearer, user_id
from tests.support.audit_cases import ANY, USERNAMES, AuditCase, AuditWorld, Entry, all_cases

CASES = all_cases()


def test_the_registry_is_well_formed() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "two cases share a name"
    assert {c.base for c in CASES} <= {"demo", "empty"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_service_writes_exactly_the_expected_audit_entries(case: AuditCase, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue("demo" if case.base == "demo" else "db")
    settings = request.getfixturevalue("settings")
    world = AuditWorld(db, settings, request.getfixturevalue("client"))
    if case.base == "demo":
        world.users = {role: user_id(db, name) for role, name in USERNAMES.items()}
        world.headers = {role: bearer(settings, uid) for role, uid in world.users.items()}
    start = db.read(lambda s: s.execute(select(func.coalesce(func.max(AuditEntry.id), 0))).scalar_one())
    started = utcnow()
    result = case.perform(world)
    log = db.read(
        lambda s: list(s.execute(select(AuditEntry).where(AuditEntry.id > start).order_by(AuditEntry.id)).scalars())
    )
    got = [(e.action, e.entity_type) for e in log]
    want = [(x.action, x.entity_type) for x in case.expected]
    assert (got if case.ordered else sorted(got)) == (want if case.ordered else sorted(want))
    for expected, written in pair_up(case, log):
        assert_entry(world, expected, written, result, started)
    if case.check is not None:
        case.check(world, result, log)
    assert verify_chain(db).ok


def pair_up(case: AuditCase, log: list[Any]) -> list[tuple[Entry, Any]]:
    """Expected and written entries side by side: in order, or by (action, entity) in id order."""
    if case.ordered:
        return list(zip(case.expected, log, strict=True))
    written: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for e in log:
        written[(e.action, e.entity_type)].append(e)
    pairs = []
    for expected in case.expected:
        pairs.append((expected, written[(expected.action, expected.entity_type)].pop(0)))
    return pairs


def assert_entry(world: AuditWorld, expected: Entry, written: Any, result: Any, started: Any) -> None:
    where = f"entry {written.id} ({written.action} {written.entity_type})"
    context = orjson.loads(written.context)
    assert expected.context <= set(context), f"{where}: context lacks {sorted(expected.context - set(context))}"
    for snapshot in {"before", "after"} & expected.context:
        assert isinstance(context[snapshot], dict) and context[snapshot], f"{where}: empty {snapshot} snapshot"
    if "before" in context and "after" in context:
        assert context["before"] != context["after"], f"{where}: before and after are the same"
    assert written.entity_id is not None, f"{where}: names no record"
    if expected.actor is not ANY:
        want = None if expected.actor is None else world.users[expected.actor]
        assert written.user_id == want, f"{where}: actor {written.user_id}, expected {expected.actor}"
    if expected.device is not ANY:
        assert written.device_id == expected.device, where
    if expected.entity_id is not ANY:
        want_id = expected.entity_id(result) if callable(expected.entity_id) else expected.entity_id
        assert written.entity_id == want_id, where
    assert started <= written.at <= utcnow(), f"{where}: not written by this call"
