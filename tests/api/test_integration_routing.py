"""The app's route order (`server.serving_order`: the sync endpoints first) sends every path to the route
that declares it, as the declaration order does."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Match, Route

from server import all_endpoints


def sample_path(template: str) -> str:
    """A concrete path for a route template: `{id:int}` -> 7, any other parameter -> a plain word."""
    return re.sub(r"\{[^}:]+(:int)?\}", lambda m: "7" if m.group(1) else "lpg", template)


def first_match(routes: list[Any], method: str, path: str) -> str | None:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in routes:
        if isinstance(route, Route) and route.matches(scope)[0] == Match.FULL:
            return route.path
    return None


def test_every_path_reaches_its_own_route_and_the_pushes_route_comes_first(app: Any) -> None:
    routes = app.router.routes
    endpoints = all_endpoints()
    assert len(endpoints) > 60
    for endpoint in endpoints:
        assert first_match(routes, endpoint.method, sample_path(endpoint.path)) == endpoint.path, endpoint.path
    paths = [getattr(route, "path", "") for route in routes]
    assert paths.index("/api/v1/sync/push") < 10 and paths.index("/api/v1/sync/changes") < 10
    # Moving them first changed no route: no other route matches a path under /api/v1/sync/.
    for endpoint in endpoints:
        if endpoint.path.startswith("/api/v1/sync/"):
            others = [r for r in routes if getattr(r, "path", "") != endpoint.path]
            assert first_match(others, endpoint.method, sample_path(endpoint.path)) is None, endpoint.path
