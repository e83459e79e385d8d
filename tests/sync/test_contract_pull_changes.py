"""The pull contract: GET /api/v1/sync/changes (every field, both encodings, three feed modes), checkpoints,
the device registry, validation, compaction and scope."""

from __future__ import annotations

import threading
import time
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select, update

from domain.accounts.models import Device
from domain.clock import parse_rfc3339
from domain.db import Database
from domain.feed.models import FeedEntry
from domain.feed.services import FEED_ENTITIES
from tests.conftest import bearer
from tests.support.pull_support import OWNED, create_owned, touch_owned, update_customer

URL = "/api/v1/sync/changes"
MSGPACK = {"Accept": "application/msgpack"}
RESULT_FIELDS = {"seq", "entity", "id", "version", "last_modified", "deleted", "doc"}


def get(client: Any, headers: dict[str, str], fmt: str = "json", **params: Any) -> dict[str, Any]:
    h = dict(headers, **(MSGPACK if fmt == "msgpack" else {}))
    r = client.get(URL, params=params, headers=h)
    assert r.status_code == 200, r.text
    if fmt == "msgpack":
        assert r.headers["content-type"].startswith("application/msgpack")
        return msgpack.unpackb(r.content)
    assert r.headers["content-type"].startswith("application/json")
    return orjson.loads(r.content)


def pull_all(
    client: Any, headers: dict[str, str], since: int = 0, limit: int = 7, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    results: list[dict[str, Any]] = []
    while True:
        page = get(client, headers, since=since, limit=limit, **params)
        results += page["results"]
        assert page["last_seq"] >= since
        since = page["last_seq"]
        if not page["results"]:
            assert page["pending"] == 0
            return results, since
        if page["pending"]:
            assert len(page["results"]) == limit


def feed_docs(db: Database) -> dict[tuple[str, int], FeedEntry]:
    return db.read(lambda s: {(r.entity, r.entity_id): r for r in s.scalars(select(FeedEntry))})


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_every_field_of_a_result_and_of_the_page(
    demo: Database, client: Any, admin_headers: dict[str, str], fmt: str
) -> None:
    page = get(client, admin_headers, fmt, limit=5)
    assert set(page) == {"results", "last_seq", "pending"}
    rows = feed_docs(demo)
    assert len(page["results"]) == 5
    assert page["pending"] == len(rows) - 5
    assert page["last_seq"] >= page["results"][-1]["seq"]
    for result in page["results"]:
        assert set(result) == RESULT_FIELDS
        stored = rows[(result["entity"], result["id"])]
        assert result["seq"] == stored.seq
        assert result["entity"] in FEED_ENTITIES
        assert result["version"] == stored.version
        assert result["deleted"] is False
        assert parse_rfc3339(result["last_modified"]) == stored.last_modified
        assert result["last_modified"].endswith("Z") and len(result["last_modified"]) == 27
        assert result["doc"] == orjson.loads(stored.doc)
    seqs = [r["seq"] for r in page["results"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_paging_to_the_end_sees_everything_once_and_an_empty_page_means_up_to_date(
    demo: Database, client: Any, admin_headers: dict[str, str], fmt: str
) -> None:
    rows = feed_docs(demo)
    since, seen = 0, []
    while True:
        page = get(client, admin_headers, fmt, since=since, limit=4)
        if not page["results"]:
            break
        assert page["pending"] == len(rows) - len(seen) - len(page["results"])
        seen += page["results"]
        since = page["last_seq"]
    assert page["pending"] == 0
    assert page["last_seq"] == max(r.seq for r in rows.values())
    assert sorted((r["entity"], r["id"]) for r in seen) == sorted(rows)


def test_deleted_records_appear_with_deleted_true(demo: Database, client: Any, admin_headers: dict[str, str]) -> None:
    from domain.feed.services import record_change

    demo.run(lambda uow: record_change(uow.session, "customer", 5, 9, doc={"id": 5}, deleted=True))
    page = get(client, admin_headers, entities="customer", limit=100)
    five = [r for r in page["results"] if r["id"] == 5]
    assert five == [{**five[0], "deleted": True, "version": 9}]


def test_compaction_a_record_updated_five_times_appears_once_with_its_latest_version(
    demo: Database, client: Any, admin_headers: dict[str, str]
) -> None:
    start = get(client, admin_headers, limit=10_000)["last_seq"]
    for _ in range(5):
        update_customer(demo, 3)
    results, _ = pull_all(client, admin_headers, since=0, limit=3)
    threes = [r for r in results if r["entity"] == "customer" and r["id"] == 3]
    assert len(threes) == 1
    assert threes[0]["version"] == 6 and threes[0]["doc"]["version"] == 6
    assert threes[0]["seq"] == start + 5
    assert len(results) == len({(r["entity"], r["id"]) for r in results})
    after, _ = pull_all(client, admin_headers, since=start)
    assert [(r["entity"], r["id"]) for r in after] == [("customer", 3)]


def test_entities_filters(demo: Database, client: Any, admin_headers: dict[str, str]) -> None:
    results, _ = pull_all(client, admin_headers, entities="customer,truck", limit=3)
    assert {r["entity"] for r in results} == {"customer", "truck"}
    assert len(results) == 5 + 3


@pytest.mark.parametrize(
    "params",
    [
        {"since": "-1"},
        {"since": "abc"},
        {"since": "1.5"},
        {"limit": "0"},
        {"limit": "10001"},
        {"limit": "x"},
        {"entities": "customer,unicorn"},
        {"entities": ""},
        {"feed": "sometimes"},
        {"timeout": "60001"},
        {"timeout": "-5"},
        {"heartbeat": "0"},
        {"heartbeat": "x"},
        {"style": "all_docs"},
    ],
)
def test_bad_parameters_are_400_validation_error(
    client: Any, admin_headers: dict[str, str], params: dict[str, str]
) -> None:
    r = client.get(URL, params=params, headers=admin_headers)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == next(iter(params))
    assert set(error) == {"code", "message", "details"}


def test_limits_at_the_edges_are_accepted(demo: Database, client: Any, admin_headers: dict[str, str]) -> None:
    assert get(client, admin_headers, limit=10_000, timeout=60_000, heartbeat=100)["pending"] == 0
    assert len(get(client, admin_headers, limit=1)["results"]) == 1


def test_pull_needs_a_token(client: Any, demo: Database) -> None:
    r = client.get(URL)
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"


def test_a_since_beyond_the_head_restarts_at_the_head(
    demo: Database, client: Any, admin_headers: dict[str, str]
) -> None:
    head = get(client, admin_headers, limit=10_000)["last_seq"]
    page = get(client, admin_headers, since=head + 1000)
    assert page == {"results": [], "last_seq": head, "pending": 0}


# -- scope -----------------------------------------------------------------------------------------------


def test_a_driver_sees_reference_data_and_own_records_and_last_seq_covers_skipped_rows(
    demo: Database, client: Any, settings: Any
) -> None:
    mine = create_owned(demo, "transaction", 2)
    theirs = [create_owned(demo, "transaction", 3) for _ in range(5)]
    d1 = bearer(settings, 2)
    head = get(client, bearer(settings, 1), limit=10_000)["last_seq"]
    results, last = pull_all(client, d1, limit=1000)
    trx = [r["id"] for r in results if r["entity"] == "transaction"]
    assert trx == [mine] and not set(theirs) & set(trx)
    assert last == head  # the other driver's rows after the last own row were examined and skipped
    page = get(client, d1, since=0, limit=2)
    assert page["pending"] == len(results) - 2


@hsettings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    plan=st.lists(
        st.tuples(st.sampled_from(OWNED), st.sampled_from([2, 3, 3]), st.integers(0, 2)), min_size=1, max_size=12
    ),
    limit=st.integers(1, 6),
)
def test_a_drivers_feed_has_no_other_drivers_owned_records(plan: Any, limit: int, demo_factory: Any) -> None:
    db, client, settings = demo_factory()
    owner: dict[tuple[str, int], int] = {}
    for entity, driver, touches in plan:
        record = create_owned(db, entity, driver)
        owner[(entity, record)] = driver
        for _ in range(touches):
            touch_owned(db, entity, record)
    for driver in (2, 3):
        results, _ = pull_all(client, bearer(settings, driver), limit=limit)
        got = {(r["entity"], r["id"]) for r in results if r["entity"] in OWNED}
        assert got == {key for key, who in owner.items() if who == driver}
        assert all(r["doc"]["driver"] == driver for r in results if r["entity"] in OWNED)
        assert {r["entity"] for r in results} - set(OWNED) <= {
            "equipment",
            "depot",
            "truck",
            "service",
            "customer",
            "depot_stock",
            "truck_stock",
            "site_stock",
        }
        filtered, _ = pull_all(client, bearer(settings, driver), limit=limit, entities="transaction,invoice")
        assert {(r["entity"], r["id"]) for r in filtered} == {k for k in got if k[0] in ("transaction", "invoice")}


@pytest.fixture
def demo_factory(tmp_path_factory: Any, request: Any) -> Any:
    """A fresh demo database and client per Hypothesis example (function fixtures are not reset between them)."""
    from starlette.testclient import TestClient

    from server import create_app
    from tests.conftest import ENGINE, empty_mysql, test_settings

    made: list[Any] = []

    def factory() -> tuple[Database, Any, Any]:
        from domain.demo import load_demo

        if ENGINE == "mysql":
            engine = request.getfixturevalue("mysql_engine")
            empty_mysql(engine)
            url = str(engine.url.render_as_string(hide_password=False))
        else:
            import shutil

            target = tmp_path_factory.mktemp("ex") / "lpg.db"
            shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
            url = f"sqlite:///{target}"
        for old in made:
            old[1].__exit__(None, None, None)
            old[0].dispose()
        made.clear()
        settings = test_settings(url)
        db = Database(settings)
        load_demo(db)
        client = TestClient(create_app(settings, db), base_url="http://127.0.0.1").__enter__()
        made.append((db, client))
        return db, client, settings

    yield factory
    for db, client in made:
        client.__exit__(None, None, None)
        db.dispose()


# -- longpoll and continuous -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_longpoll_answers_at_once_when_there_is_something_and_at_timeout_when_not(
    demo: Database, client: Any, admin_headers: dict[str, str], fmt: str
) -> None:
    page = get(client, admin_headers, fmt, feed="longpoll", timeout=5000, limit=2)
    assert len(page["results"]) == 2
    head = get(client, admin_headers, limit=10_000)["last_seq"]
    t0 = time.monotonic()
    page = get(client, admin_headers, fmt, feed="longpoll", since=head, timeout=600)
    elapsed = time.monotonic() - t0
    assert page == {"results": [], "last_seq": head, "pending": 0}
    assert 0.55 <= elapsed < 2.0


def test_longpoll_wakes_within_100ms_of_a_commit_in_this_process(
    demo: Database, client: Any, admin_headers: dict[str, str]
) -> None:
    head = get(client, admin_headers, limit=10_000)["last_seq"]
    committed: list[float] = []
    demo.commit_listeners.append(lambda: committed.append(time.monotonic()))  # the moment of the commit

    def later() -> None:
        time.sleep(0.8)
        update_customer(demo, 2)

    writer = threading.Thread(target=later)
    writer.start()
    page = get(client, admin_headers, feed="longpoll", since=head, timeout=10_000)
    woke = time.monotonic()
    writer.join()
    assert [(r["entity"], r["id"]) for r in page["results"]] == [("customer", 2)]
    assert page["last_seq"] == head + 1
    assert woke - committed[0] < 0.2  # 100 ms, plus the test client's own hops on a busy machine


def test_a_drivers_longpoll_ignores_other_drivers_changes_until_its_own(
    demo: Database, client: Any, settings: Any
) -> None:
    d1 = bearer(settings, 2)
    head = get(client, d1, limit=10_000)["last_seq"]

    def later() -> None:
        time.sleep(0.3)
        create_owned(demo, "transaction", 3)
        time.sleep(0.3)
        create_owned(demo, "transaction", 2)

    threading.Thread(target=later).start()
    t0 = time.monotonic()
    page = get(client, d1, feed="longpoll", since=head, timeout=5000)
    assert 0.5 < time.monotonic() - t0 < 2
    assert [(r["entity"], r["doc"]["driver"]) for r in page["results"]] == [("transaction", 2)]
    assert page["last_seq"] == head + 2


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_continuous_streams_backlog_then_live_changes_heartbeats_and_ends_with_last_seq(
    demo: Database, client: Any, admin_headers: dict[str, str], fmt: str
) -> None:
    total = len(feed_docs(demo))

    def later() -> None:
        time.sleep(0.5)
        update_customer(demo, 4)

    threading.Thread(target=later).start()
    headers = dict(admin_headers, **(MSGPACK if fmt == "msgpack" else {}))
    items: list[Any] = []
    t0 = time.monotonic()
    with client.stream(
        "GET", URL, params={"feed": "continuous", "limit": 3, "timeout": 1500, "heartbeat": 200}, headers=headers
    ) as r:
        assert r.status_code == 200
        if fmt == "json":
            assert r.headers["content-type"].startswith("application/x-ndjson")
            buffer = b""
            for chunk in r.iter_bytes():
                buffer += chunk
            lines = buffer.split(b"\n")
            assert lines[-1] == b""
            items = [orjson.loads(line) if line else None for line in lines[:-1]]
        else:
            assert r.headers["content-type"].startswith("application/msgpack")
            unpacker = msgpack.Unpacker()
            for chunk in r.iter_bytes():
                unpacker.feed(chunk)
                items.extend(unpacker)
            items = [item or None for item in items]  # {} is a msgpack heartbeat
    assert 1.4 < time.monotonic() - t0 < 3
    results = [i for i in items if i and "seq" in i]
    beats = [i for i in items if i is None]
    assert items[-1] == {"last_seq": results[-1]["seq"]}
    assert len(results) == total + 1
    assert results[-1]["entity"] == "customer" and results[-1]["id"] == 4 and results[-1]["version"] == 2
    assert all(set(r) == RESULT_FIELDS for r in results)
    assert 3 <= len(beats) <= 8


# -- device registry -------------------------------------------------------------------------------------


def register_device(db: Database, device_id: str, user: int) -> None:
    db.run(lambda uow: uow.session.add(Device(device_id=device_id, user_id=user)))


def test_a_pull_with_x_device_id_records_the_devices_last_pull_for_its_own_user_only(
    demo: Database, client: Any, settings: Any, admin_headers: dict[str, str]
) -> None:
    register_device(demo, "tab-1", 2)
    register_device(demo, "tab-2", 3)
    d1 = bearer(settings, 2)
    _, last = pull_all(client, dict(d1, **{"X-Device-ID": "tab-1", "X-Client-Version": "3.4.1"}), limit=1000)
    get(client, dict(d1, **{"X-Device-ID": "tab-2"}))  # another driver's device: ignored
    get(client, dict(d1, **{"X-Device-ID": "tab-unknown"}))  # unknown: ignored, not created
    rows = demo.read(lambda s: {d.device_id: d for d in s.scalars(select(Device))})
    assert set(rows) == {"tab-1", "tab-2"}
    assert rows["tab-1"].last_pulled_seq == last and rows["tab-1"].last_pull_at is not None
    assert rows["tab-1"].app_version == "3.4.1"
    assert rows["tab-2"].last_pulled_seq is None and rows["tab-2"].last_pull_at is None
    update_customer(demo, 1)
    update_customer(demo, 2)
    r = client.get("/api/v1/sync/devices", headers=admin_headers)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"count", "next", "previous", "results"} and body["count"] == 2
    one = next(d for d in body["results"] if d["device_id"] == "tab-1")
    assert set(one) == {
        "device_id",
        "user",
        "username",
        "first_seen",
        "last_push_at",
        "last_pull_at",
        "last_pulled_seq",
        "lag",
        "applied",
        "duplicate",
        "rejected",
        "app_version",
        "clock_skew",
    }
    assert one["user"] == 2 and one["username"] == "driver1" and one["lag"] == 2
    assert one["last_pulled_seq"] == last and one["applied"] == 0 and one["last_push_at"] is None
    two = next(d for d in body["results"] if d["device_id"] == "tab-2")
    assert two["lag"] is None and two["last_pull_at"] is None
    paged = client.get("/api/v1/sync/devices", params={"page_size": 1}, headers=admin_headers).json()
    assert len(paged["results"]) == 1 and paged["next"] is not None
    assert client.get("/api/v1/sync/devices", params={"user": 3}, headers=admin_headers).json()["count"] == 1


def test_devices_is_admin_only(demo: Database, client: Any, driver_headers: dict[str, str]) -> None:
    r = client.get("/api/v1/sync/devices", headers=driver_headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


# -- checkpoints -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_checkpoints_per_user(demo: Database, client: Any, settings: Any, fmt: str) -> None:
    d1, d2 = bearer(settings, 2), bearer(settings, 3)
    url = "/api/v1/sync/checkpoints/tablet-main"
    if fmt == "msgpack":
        d1 = dict(d1, **MSGPACK)

    def decode(r: Any) -> Any:
        return msgpack.unpackb(r.content) if fmt == "msgpack" else r.json()

    r = client.get(url, headers=d1)
    assert r.status_code == 404 and decode(r)["error"]["code"] == "not_found"
    r = client.put(url, json={"seq": 184466}, headers=d1)
    assert r.status_code == 200
    body = decode(r)
    assert set(body) == {"name", "seq", "updated_at"}
    assert body["name"] == "tablet-main" and body["seq"] == 184466
    parse_rfc3339(body["updated_at"])
    assert decode(client.get(url, headers=d1)) == body
    assert client.get(url, headers=d2).status_code == 404  # per user
    r = client.put(url, content=msgpack.packb({"seq": 7}), headers=dict(d1, **{"Content-Type": "application/msgpack"}))
    assert decode(r)["seq"] == 7
    assert decode(client.get(url, headers=d1))["seq"] == 7


@pytest.mark.parametrize("body", [{}, {"seq": -1}, {"seq": "5"}, {"seq": 1.5}, {"seq": True}, {"seq": 1, "x": 2}])
def test_bad_checkpoint_bodies_are_validation_errors(
    demo: Database, client: Any, driver_headers: dict[str, str], body: Any
) -> None:
    r = client.put("/api/v1/sync/checkpoints/a", json=body, headers=driver_headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_error"


def test_a_device_registered_to_a_driver_keeps_its_counters_after_pulls(
    demo: Database, client: Any, settings: Any
) -> None:
    register_device(demo, "tab-9", 2)
    demo.run(lambda uow: uow.session.execute(update(Device).values(applied_count=4)))
    get(client, dict(bearer(settings, 2), **{"X-Device-ID": "tab-9"}))
    device = demo.read(lambda s: s.scalars(select(Device)).one())
    assert device.applied_count == 4 and device.version == 2


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@given(doc=JSON_VALUES)
@hsettings(max_examples=300, deadline=None)
def test_a_msgpack_page_is_the_bytes_msgpack_itself_packs_for_the_same_results(doc: Any) -> None:
    """Pages are packed with ormsgpack; for any JSON value (what a stored document decodes to) the bytes
    are the ones msgpack's own Packer writes, so every msgpack client reads them alike."""
    from domain import codec
    from domain.feed.reader import RawPage
    from sync.changes import encode_lines, encode_page

    row = orjson.dumps({"seq": 7, "doc": doc})
    expected = {"seq": 7, "doc": orjson.loads(row)["doc"]}  # what orjson reads back (floats round-trip)
    page = encode_page(RawPage([(7, row)], 7, 0, 7), codec.MSGPACK)
    assert page == msgpack.packb({"results": [expected], "last_seq": 7, "pending": 0}, use_bin_type=True)
    assert encode_lines([(7, row)], codec.MSGPACK) == msgpack.packb(expected, use_bin_type=True)
