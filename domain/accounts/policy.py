"""Who may do what: the RBAC table of the domain spec, in one place. Handlers and services ask this module;
nobody checks roles inline.

| may                                                             | driver    | admin |
|-----------------------------------------------------------------|-----------|-------|
| log in, refresh, log out                                        | yes       | yes   |
| read equipment, depots, trucks, services, customers             | yes       | yes   |
| create customers, edit their contact fields                     | yes       | yes   |
| set customer rates, prices, fees                                | no        | yes   |
| create, edit, confirm, cancel distributions and transactions    | own only  | all   |
| read distributions, transactions, invoices, meter readings      | own only  | all   |
| mark invoices printed / emailed / paid                          | own only  | all   |
| sync push and pull                                              | own devices; pull sees reference data and own records | all |
| users, stock adjustments, reports, audit log, device status, replay, rejections | no | yes |

A driver asking for another driver's record gets 404 (not 403: it does not confirm the record exists).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from domain.errors import Forbidden, NotFound, ReadOnlyField

DRIVER, ADMIN = "driver", "admin"


@dataclass(frozen=True)
class Actor:
    """The user a service acts for."""

    id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def require_admin(actor: Actor, what: str = "this") -> None:
    """Users, stock adjustments, reports, audit log, devices, replay and rejections are admin-only."""
    if not actor.is_admin:
        raise Forbidden(f"only an admin may do {what}")


def owner_filter(actor: Actor) -> int | None:
    """The owner id a list must be restricted to (a driver's own records), or None for an admin."""
    return None if actor.is_admin else actor.id


def ensure_visible(actor: Actor, owner_id: int | None, entity: str, record_id: object) -> None:
    """A driver sees only their own records; another driver's is `not_found`, exactly like a missing one."""
    if not actor.is_admin and owner_id != actor.id:
        raise NotFound(f"{entity} {record_id} not found", {"entity": entity, "id": record_id})


def refuse_admin_only_fields(actor: Actor, sent: Iterable[str], admin_only: Iterable[str], prefix: str = "") -> None:
    """Mass assignment: a driver who sends a rate, price or owner field gets `read_only_field`, nothing changes."""
    if actor.is_admin:
        return
    restricted = set(admin_only)
    for name in sent:
        if name in restricted:
            raise ReadOnlyField(prefix + name, f"only an admin may set '{prefix + name}'")
