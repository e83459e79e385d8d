"""The registry of state-changing services and the audit entries each must write (test_audit_services.py).

Every area adds its services in its own module `tests/support/audit_cases_<area>.py`, as
`CASES: list[AuditCase]`, so that areas never edit the same file. One case is:

- `perform(world)`: one service call, through the public API (`world.client` with `world.headers[...]`)
  or the service function in a unit of work (`world.call(...)`); it asserts its own response;
- `expected`: exactly the audit entries that call writes, as `entry(action, entity_type, ...)` with the
  context keys that must be there (`after` by default; add `before` for updates, `client_temp_id` and
  `batch` for sync changes), and optionally the actor, the device and the entity id;
- `base`: `"demo"` (the demo data loaded; the default) or `"empty"` (a migrated, empty database).

A refused call is a case too: `expected=[]` (nothing written, no entry either).

    CASES = [
        AuditCase(
            "confirm_distribution",
            lambda w: w.client.post(f"/api/v1/distributions/{make_pending(w)}/confirm/", headers=w.headers["driver"]),
            [entry("confirm", "distribution", "before", "after", actor="driver"),
             *entries(4, "adjust", "depot_stock", "before", "after")],
        ),
    ]
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.accounts.policy import Actor
from domain.db import Database
from domain.service import Call
from domain.settings import Settings

USERNAMES = {"admin": "admin", "driver": "driver1", "other_driver": "driver2"}
ANY: Any = object()  # "whatever": actor, device or entity id not checked


@dataclass(frozen=True)
class Entry:
    """One expected audit entry."""

    action: str
    entity_type: str
    context: frozenset[str] = frozenset({"after"})
    actor: Any = ANY  # "admin" | "driver" | "other_driver" | None (the system) | ANY
    device: Any = ANY  # a device id, None, or ANY
    entity_id: Any = ANY  # an int, a callable(result) -> int, or ANY


def entry(action: str, entity_type: str, *context: str, **checks: Any) -> Entry:
    return Entry(action, entity_type, frozenset(context or ("after",)), **checks)


def entries(n: int, action: str, entity_type: str, *context: str, **checks: Any) -> list[Entry]:
    return [entry(action, entity_type, *context, **checks)] * n


@dataclass
class AuditWorld:
    """What a case may use: the database, settings, an HTTP client, user ids and headers per role."""

    db: Database
    settings: Settings
    client: Any
    users: dict[str, int] = field(default_factory=dict)  # role -> user id
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> Authorization header

    def call(self, work: Callable[[Call], Any], role: str = "admin", **call_options: Any) -> Any:
        """Run `work(call)` in one committed unit, as `role` (the service-function route)."""
        actor = Actor(self.users[role], USERNAMES[role], "admin" if role == "admin" else "driver")
        return self.db.run(lambda uow: work(Call(uow.session, actor, self.settings, **call_options)))


@dataclass(frozen=True)
class AuditCase:
    name: str
    perform: Callable[[AuditWorld], Any]
    expected: list[Entry]
    base: str = "demo"
    ordered: bool = False  # True: the entries must come in exactly this order
    check: Callable[[AuditWorld, Any, list[Any]], None] | None = None  # extra checks on (world, result, entries)


def all_cases() -> list[AuditCase]:
    cases: list[AuditCase] = []
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("audit_cases_"):
            cases.extend(importlib.import_module(f"tests.support.{info.name}").CASES)
    return cases
