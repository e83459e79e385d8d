"""The RBAC matrix: every endpoint x {anonymous, driver, other driver, admin} with the expected status.

Each area keeps its rows in `rows_<area>.py` as `ROWS: list[RbacRow]`; `test_matrix.py` runs them all and
fails when the app has a route that no row lists (or a row names a route that does not exist).

`driver` is driver1, who owns whatever `setup` creates; `other_driver` is driver2. `setup(world)` builds
the records a request needs (owned by driver1) and returns the path parameters and the body. It runs once
per role, before that role's request, so a request that changes something never spoils the next role's.

An expectation is a status (`404`) or a status and the error code it must carry (`(400, "read_only_field")`).
Every refusal (4xx) must leave the database as it was: no audit entry, no feed entry, no new row. A row
whose refusals do write (none should) says so with `refusal_writes=True` and a `note` why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROLES = ("anonymous", "driver", "other_driver", "admin")

Expected = int | tuple[int, str]


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
    path: str  # the route template, as registered: "/api/v1/distributions/{id:int}/confirm/"
    expect: dict[str, Expected]  # status (or status and error code) per role, every role in ROLES
    setup: Callable[[World], Request] | None = None
    note: str = ""
    refusal_writes: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def expect(anonymous: Expected, driver: Expected, other_driver: Expected, admin: Expected) -> dict[str, Expected]:
    return {"anonymous": anonymous, "driver": driver, "other_driver": other_driver, "admin": admin}


def status_of(expected: Expected) -> int:
    return expected[0] if isinstance(expected, tuple) else expected


def code_of(expected: Expected) -> str | None:
    return expected[1] if isinstance(expected, tuple) else None


_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z_]+)?}")


def fill_path(template: str, params: dict[str, Any]) -> str:
    """`/api/v1/users/{id:int}/` with `{"id": 2}` -> `/api/v1/users/2/` (Starlette's converters are dropped)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise KeyError(f"the setup gives no value for '{name}' in {template}")
        return str(params[name])

    return _PARAM.sub(value, template)
