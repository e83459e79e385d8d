"""The RBAC matrix: every endpoint x {anonymous, driver, other driver, admin} with the expected status.

Each area keeps its rows in `rows_<area>.py` as `ROWS: list[RbacRow]`; `test_matrix.py` runs them all and
fails when the app has a route that no row lists (or a row names a route that does not exist).

`driver` is driver1, who owns whatever `setup` creates; `other_driver` is driver2. `setup(world)` builds
the records a request needs (owned by driver1) and returns the path parameters and the body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROLES = ("anonymous", "driver", "other_driver", "admin")


@dataclass
class World:
    """What a row's setup may use: the database, settings, a client, user ids and headers per role."""

    db: Any
    settings: Any
    client: Any
    users: dict[str, int]
    headers: dict[str, dict[str, str]]


@dataclass(frozen=True)
class Request:
    path: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    query: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RbacRow:
    method: str
    path: str  # the route template, as registered: "/api/v1/distributions/{id}/confirm/"
    expect: dict[str, int]  # status per role, every role in ROLES
    setup: Callable[[World], Request] | None = None
    note: str = ""


def expect(anonymous: int, driver: int, other_driver: int, admin: int) -> dict[str, int]:
    return {"anonymous": anonymous, "driver": driver, "other_driver": other_driver, "admin": admin}
