"""The login throttle counts only attempts that FAILED: a shift of drivers behind one NAT all log in at once,
an attempt in flight makes a later one wait for its outcome instead of counting as a failure, and failures
still lock as before (tests/accounts/test_integration_throttle.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from starlette.testclient import TestClient

from domain.accounts.models import LoginAttempt, User
from domain.accounts.passwords import hash_password
from domain.accounts.throttle import MAX_FAILURES_PER_ADDRESS, STALE
from domain.clock import utcnow
from domain.db import Database
from domain.settings import Settings
from tests.api.test_integration_http_edge import assert_error

LOGIN = "/api/v1/auth/login/"
NAT = "198.51.100.40"
SHIFT = 40
PASSWORD = "shift-start-2026"


def add_drivers(db: Database, count: int) -> list[str]:
    password_hash = hash_password(PASSWORD)
    names = [f"shift{n:02d}" for n in range(count)]
    now = utcnow()
    rows = [
        {
            "username": name,
            "full_name": name,
            "password_hash": password_hash,
            "role": "driver",
            "active": True,
            "created_at": now,
            "version": 1,
            "last_modified": now,
        }
        for name in names
    ]
    db.run(lambda uow: uow.session.execute(insert(User), rows))
    return names


def in_flight(db: Database, count: int, ago: timedelta, username: str = "elsewhere") -> list[int]:
    """Attempts admitted to the password check by another process that has not settled them (yet, or ever)."""
    at = utcnow() - ago
    rows = [
        {
            "username": f"{username}{n}",
            "client_addr": NAT,
            "at": at,
            "succeeded": False,
            "settled": False,
            "admitted": True,
        }
        for n in range(count)
    ]
    db.run(lambda uow: uow.session.execute(insert(LoginAttempt), rows))
    return db.read(lambda s: list(s.scalars(select(LoginAttempt.id).where(LoginAttempt.settled.is_(False)))))


def test_forty_correct_logins_of_forty_users_from_one_address_at_once_all_succeed(
    demo: Database, settings: Settings
) -> None:
    from server import create_app

    names = add_drivers(demo, SHIFT)
    other_db = Database(settings)
    barrier = threading.Barrier(SHIFT)
    try:
        with (
            TestClient(create_app(settings, demo), client=(NAT, 40001)) as a,
            TestClient(create_app(settings, other_db), client=(NAT, 40002)) as b,
        ):

            def log_in(i: int) -> Any:
                barrier.wait()
                return (a if i % 2 else b).post(LOGIN, json={"username": names[i], "password": PASSWORD})

            with ThreadPoolExecutor(SHIFT) as pool:
                responses = list(pool.map(log_in, range(SHIFT)))
            statuses = [r.status_code for r in responses]
            assert statuses == [200] * SHIFT, [(r.status_code, r.text[:120]) for r in responses if r.status_code != 200]
            # Nothing was counted against the address: a wrong guess from it is an ordinary 401.
            assert_error(
                a.post(LOGIN, json={"username": names[0], "password": "wrong-pass-1"}), 401, "invalid_credentials"
            )
    finally:
        other_db.dispose()
    settled = demo.read(
        lambda s: s.execute(
            select(LoginAttempt.succeeded, func.count())
            .where(LoginAttempt.settled.is_(True))
            .group_by(LoginAttempt.succeeded)
        ).all()
    )
    assert {bool(k): v for k, v in settled} == {True: SHIFT, False: 1}


def test_an_attempt_waits_for_attempts_in_flight_and_goes_on_when_they_succeed(
    client: TestClient, demo: Database
) -> None:
    names = add_drivers(demo, 1)
    ids = in_flight(demo, MAX_FAILURES_PER_ADDRESS, timedelta(seconds=1))
    with ThreadPoolExecutor(1) as pool:
        # 20 attempts in flight from this address: if all failed, the address would be locked, so it waits.
        future = pool.submit(
            lambda: TestClient(client.app, client=(NAT, 40003)).post(
                LOGIN, json={"username": names[0], "password": PASSWORD}
            )
        )
        time.sleep(0.5)  # it is still waiting: none of the 20 has an outcome yet
        assert not future.done(), future.result().text
        demo.run(
            lambda uow: uow.session.execute(
                update(LoginAttempt).where(LoginAttempt.id.in_(ids)).values(settled=True, succeeded=True)
            )
        )
        assert future.result(timeout=30).status_code == 200


def test_an_attempt_waiting_for_attempts_in_flight_is_refused_when_they_fail(
    client: TestClient, demo: Database
) -> None:
    names = add_drivers(demo, 1)
    ids = in_flight(demo, MAX_FAILURES_PER_ADDRESS, timedelta(seconds=1))
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            lambda: TestClient(client.app, client=(NAT, 40004)).post(
                LOGIN, json={"username": names[0], "password": PASSWORD}
            )
        )
        time.sleep(0.5)
        assert not future.done(), future.result().text
        demo.run(
            lambda uow: uow.session.execute(
                update(LoginAttempt).where(LoginAttempt.id.in_(ids)).values(settled=True, succeeded=False)
            )
        )
        response = future.result(timeout=30)
    assert_error(response, 429, "too_many_attempts")
    assert int(response.headers["Retry-After"]) > 0


def test_an_attempt_in_flight_for_too_long_died_and_counts_as_a_failure(client: TestClient, demo: Database) -> None:
    names = add_drivers(demo, 1)
    in_flight(demo, MAX_FAILURES_PER_ADDRESS, STALE + timedelta(seconds=5))
    with TestClient(client.app, client=(NAT, 40005)) as here:
        assert_error(here.post(LOGIN, json={"username": names[0], "password": PASSWORD}), 429, "too_many_attempts")
    with TestClient(client.app, client=("203.0.113.77", 40006)) as elsewhere:
        assert elsewhere.post(LOGIN, json={"username": names[0], "password": PASSWORD}).status_code == 200
