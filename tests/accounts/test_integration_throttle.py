"""Login throttling lives in the database: it holds across two app instances (two processes' worth of
engines and pools) sharing one database, and its Retry-After is the truth."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from starlette.testclient import TestClient

from domain.accounts.models import LoginAttempt
from domain.accounts.throttle import MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_USERNAME, WINDOW
from domain.clock import utcnow
from domain.db import Database
from domain.settings import Settings
from tests.api.test_integration_http_edge import assert_error

LOGIN = "/api/v1/auth/login/"
GOOD = {"username": "driver1", "password": "driver1-lpg-2026"}
BAD = {"username": "driver1", "password": "wrong-password-0"}


@pytest.fixture
def two_apps(demo: Database, settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """Two independent server instances (each its own Database: engine and pool) on the same database."""
    from server import create_app

    other_db = Database(settings)
    first, second = create_app(settings, demo), create_app(settings, other_db)
    with (
        TestClient(first, client=("198.51.100.7", 40001)) as a,
        TestClient(second, client=("198.51.100.7", 40002)) as b,
    ):
        yield a, b
    other_db.dispose()


def attempts(db: Database) -> int:
    return db.read(lambda s: int(s.execute(select(func.count()).select_from(LoginAttempt)).scalar_one()))


def earlier_failures(db: Database, count: int, ago: timedelta, username: str = "driver1", addr: str = "x") -> None:
    at = utcnow() - ago
    rows = [{"username": username, "client_addr": addr, "at": at, "succeeded": False} for _ in range(count)]
    db.run(lambda uow: uow.session.execute(insert(LoginAttempt), rows))


def test_five_failures_for_a_username_across_two_instances_lock_it(
    two_apps: tuple[TestClient, TestClient], demo: Database
) -> None:
    a, b = two_apps
    for i in range(MAX_FAILURES_PER_USERNAME):
        assert_error((a if i % 2 else b).post(LOGIN, json=BAD), 401, "invalid_credentials")
    for client in (a, b):
        response = client.post(LOGIN, json=GOOD)  # even the right password: the username is locked
        err = assert_error(response, 429, "too_many_attempts")
        retry_after = int(response.headers["Retry-After"])
        assert 0 < retry_after <= WINDOW.total_seconds()
        assert err["details"]["retry_after"] == retry_after
    # A throttled attempt is not counted and checks no password: the lock ends when Retry-After says.
    assert attempts(demo) == MAX_FAILURES_PER_USERNAME
    # Another username from the same address is not locked.
    assert a.post(LOGIN, json={"username": "driver2", "password": "driver2-lpg-2026"}).status_code == 200


def test_retry_after_is_when_the_oldest_counted_failure_leaves_the_window(client: TestClient, demo: Database) -> None:
    earlier_failures(demo, MAX_FAILURES_PER_USERNAME, WINDOW - timedelta(seconds=60))
    response = client.post(LOGIN, json=GOOD)
    assert_error(response, 429, "too_many_attempts")
    assert 55 <= int(response.headers["Retry-After"]) <= 61


def test_failures_older_than_the_window_do_not_count(client: TestClient, demo: Database) -> None:
    earlier_failures(demo, 50, WINDOW + timedelta(seconds=5))
    earlier_failures(demo, MAX_FAILURES_PER_USERNAME - 1, timedelta(minutes=1))
    assert client.post(LOGIN, json=GOOD).status_code == 200


def test_a_successful_login_clears_the_usernames_failures(client: TestClient, demo: Database) -> None:
    earlier_failures(demo, MAX_FAILURES_PER_USERNAME - 1, timedelta(minutes=2))
    assert client.post(LOGIN, json=GOOD).status_code == 200
    for _ in range(MAX_FAILURES_PER_USERNAME - 1):
        assert_error(client.post(LOGIN, json=BAD), 401, "invalid_credentials")
    assert client.post(LOGIN, json=GOOD).status_code == 200


def test_twenty_failures_from_one_address_lock_the_address_not_others(
    two_apps: tuple[TestClient, TestClient], demo: Database, settings: Settings
) -> None:
    a, b = two_apps
    # 18 earlier failures for many usernames from this address, then two real ones, one per instance.
    for n in range(MAX_FAILURES_PER_ADDRESS - 2):
        earlier_failures(demo, 1, timedelta(minutes=3), username=f"guess{n}", addr="198.51.100.7")
    assert_error(a.post(LOGIN, json={"username": "nobody-a", "password": "x-password"}), 401, "invalid_credentials")
    assert_error(b.post(LOGIN, json={"username": "nobody-b", "password": "x-password"}), 401, "invalid_credentials")
    response = a.post(LOGIN, json=GOOD)  # right password, fresh username, but this address is locked
    assert_error(response, 429, "too_many_attempts")
    assert 170 <= int(response.headers["Retry-After"]) <= WINDOW.total_seconds()
    # X-Forwarded-For is not trusted: claiming another address changes nothing.
    assert_error(b.post(LOGIN, json=GOOD, headers={"X-Forwarded-For": "203.0.113.9"}), 429, "too_many_attempts")
    # The same user from another address logs in.
    from server import create_app

    with TestClient(create_app(settings, demo), client=("203.0.113.9", 40003)) as elsewhere:
        assert elsewhere.post(LOGIN, json=GOOD).status_code == 200


def test_the_limit_is_strict_under_concurrent_guesses(demo: Database, settings: Settings) -> None:
    """Eight simultaneous wrong guesses against two instances: at most five reach the password check."""
    from server import create_app

    other_db = Database(settings)
    apps = [create_app(settings, demo), create_app(settings, other_db)]
    barrier = threading.Barrier(8)
    try:
        with TestClient(apps[0]) as a, TestClient(apps[1]) as b:

            def guess(i: int) -> Any:
                barrier.wait()
                return (a if i % 2 else b).post(LOGIN, json={"username": "driver1", "password": f"guess-{i:04d}"})

            with ThreadPoolExecutor(8) as pool:
                statuses = sorted(r.status_code for r in pool.map(guess, range(8)))
    finally:
        other_db.dispose()
    assert statuses.count(401) <= MAX_FAILURES_PER_USERNAME
    assert statuses.count(401) + statuses.count(429) == 8, statuses
    assert attempts(demo) == statuses.count(401)
