"""The /couchdb protocol, endpoint by endpoint: fields, revisions, errors in CouchDB's shape, auth, _local."""

from __future__ import annotations

import base64
from typing import Any

from starlette.testclient import TestClient

from domain.db import Database
from domain.feed.services import record_change
from tests.conftest import bearer, user_id
from tests.support.pull_support import create_owned, update_customer


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def couch_error(r: Any, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "reason"} and body["error"] == error and isinstance(body["reason"], str), body
    return body


def test_revisions_are_linear_reproducible_and_agree_everywhere(
    demo: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    first = client.get("/couchdb/lpg/customer:1", params={"revs": "true"}, headers=admin_headers).json()
    for _ in range(3):
        update_customer(demo, 1)
    doc = client.get("/couchdb/lpg/customer%3A1", params={"revs": "true"}, headers=admin_headers).json()
    n = int(doc["_rev"].split("-")[0])
    assert n == int(first["_rev"].split("-")[0]) + 3 == doc["version"]
    ids = doc["_revisions"]["ids"]
    assert doc["_revisions"]["start"] == n and len(ids) == n and ids[0] == doc["_rev"].split("-")[1]
    m = int(first["_rev"].split("-")[0])
    assert ids[n - m :] == first["_revisions"]["ids"]  # the old revision is an ancestor
    # the same record and version give the same revision in another app over the same database
    from server import create_app

    with TestClient(create_app(client.app.state.lpg.settings)) as other:  # type: ignore[attr-defined]
        assert other.get("/couchdb/lpg/customer:1", headers=admin_headers).json()["_rev"] == doc["_rev"]
    # rev=, open_revs, latest, _bulk_get and _changes agree
    assert client.get("/couchdb/lpg/customer:1", params={"rev": doc["_rev"]}, headers=admin_headers).status_code == 200
    couch_error(
        client.get("/couchdb/lpg/customer:1", params={"rev": first["_rev"]}, headers=admin_headers), 404, "not_found"
    )
    couch_error(
        client.get("/couchdb/lpg/customer:1", params={"rev": "9-unknown"}, headers=admin_headers), 404, "not_found"
    )
    old = client.get(
        "/couchdb/lpg/customer:1", params={"open_revs": f'["{first["_rev"]}"]', "latest": "true"}, headers=admin_headers
    ).json()
    assert old[0]["ok"]["_rev"] == doc["_rev"]
    missing = client.get("/couchdb/lpg/customer:1", params={"open_revs": f'["{first["_rev"]}"]'}, headers=admin_headers)
    assert missing.json() == [{"missing": first["_rev"]}]
    got = client.post(
        "/couchdb/lpg/_bulk_get",
        params={"revs": "true", "latest": "true"},
        json={"docs": [{"id": "customer:1", "rev": first["_rev"]}]},
        headers=admin_headers,
    ).json()
    assert got["results"][0]["docs"][0]["ok"]["_rev"] == doc["_rev"]
    feed = client.post(
        "/couchdb/lpg/_changes", params={"filter": "_doc_ids"}, json={"doc_ids": ["customer:1"]}, headers=admin_headers
    ).json()
    assert [(r["id"], r["changes"][0]["rev"]) for r in feed["results"]] == [("customer:1", doc["_rev"])]


def test_a_deleted_record_is_a_tombstone_with_a_newer_revision(
    demo: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    before = client.get("/couchdb/lpg/customer:5", headers=admin_headers).json()
    demo.run(lambda uow: record_change(uow.session, "customer", 5, before["version"], doc={"id": 5}, deleted=True))
    change = client.get(
        "/couchdb/lpg/_changes",
        params={"filter": "_doc_ids", "doc_ids": '["customer:5"]', "include_docs": "true"},
        headers=admin_headers,
    ).json()["results"][0]
    assert change["deleted"] is True and change["doc"]["_deleted"] is True
    assert int(change["changes"][0]["rev"].split("-")[0]) == int(before["_rev"].split("-")[0]) + 1
    couch_error(client.get("/couchdb/lpg/customer:5", headers=admin_headers), 404, "not_found")
    rows = client.get("/couchdb/lpg/_all_docs", headers=admin_headers).json()["rows"]
    assert "customer:5" not in [r["id"] for r in rows]


def test_changes_options(demo: Database, client: TestClient, settings: Any) -> None:
    d1 = bearer(settings, user_id(demo, "driver1"))
    mine = create_owned(demo, "transaction", user_id(demo, "driver1"))
    full = client.get("/couchdb/lpg/_changes", params={"include_docs": "true"}, headers=d1).json()
    assert full["pending"] == 0 and all(r["doc"]["_id"] == r["id"] for r in full["results"])
    assert f"transaction:{mine}" in [r["id"] for r in full["results"]]
    plain = client.get("/couchdb/lpg/_changes", headers=d1).json()
    assert all("doc" not in r for r in plain["results"]) and plain["last_seq"] == full["last_seq"]
    down = client.get("/couchdb/lpg/_changes", params={"descending": "true", "limit": 3}, headers=d1).json()
    seqs = [r["seq"] for r in down["results"]]
    assert seqs == sorted(seqs, reverse=True) and seqs[0] == full["results"][-1]["seq"]
    picked = client.get(
        "/couchdb/lpg/_changes", params={"filter": "_doc_ids", "doc_ids": '["equipment:2","customer:1"]'}, headers=d1
    ).json()
    assert sorted(r["id"] for r in picked["results"]) == ["customer:1", "equipment:2"]
    sel = client.post(
        "/couchdb/lpg/_changes",
        params={"filter": "_selector"},
        json={"selector": {"code": {"$eq": "CYL14"}}},
        headers=d1,
    ).json()
    assert [r["id"] for r in sel["results"]] == ["equipment:3"]
    for params, body in (
        ({"filter": "_selector"}, {"selector": {"code": {"$gt": "A"}}}),
        ({"filter": "_selector"}, {"selector": {"a.b": 1}}),
        ({"filter": "app/by_type"}, {}),
        ({"feed": "websocket"}, {}),
        ({"limit": "-1"}, {}),
    ):
        couch_error(client.post("/couchdb/lpg/_changes", params=params, json=body, headers=d1), 400, "bad_request")
    stream = client.get(
        "/couchdb/lpg/_changes",
        params={"feed": "continuous", "timeout": "200", "since": full["last_seq"] - 2},
        headers=d1,
    )
    lines = [line for line in stream.text.split("\n") if line.strip()]
    assert stream.status_code == 200 and lines[-1].startswith('{"last_seq":')
    events = client.get(
        "/couchdb/lpg/_changes", params={"feed": "eventsource", "timeout": "200", "limit": "2"}, headers=d1
    ).text
    assert events.count("data: ") == 2 and "\nid: " in events


def test_bulk_get_and_all_docs_with_more_ids_than_sqlite_allows_in_an_expression(
    demo: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    ids = [f"customer:{n}" for n in range(1, 1500)] + ["equipment:1"]
    r = client.post(
        "/couchdb/lpg/_bulk_get",
        params={"revs": "true"},
        json={"docs": [{"id": i} for i in ids]},
        headers=admin_headers,
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(ids) and "ok" in results[0]["docs"][0] and "ok" in results[-1]["docs"][0]
    assert results[1000]["docs"][0]["error"]["error"] == "not_found"
    r = client.post(
        "/couchdb/lpg/_all_docs", params={"include_docs": "true"}, json={"keys": ids}, headers=admin_headers
    )
    assert r.status_code == 200 and len(r.json()["rows"]) == len(ids)


def test_all_docs_ranges(demo: Database, client: TestClient, admin_headers: dict[str, str]) -> None:
    every = client.get("/couchdb/lpg/_all_docs", headers=admin_headers).json()
    ids = [r["id"] for r in every["rows"]]
    assert ids == sorted(ids) and every["total_rows"] == len(ids) and every["offset"] == 0
    eq = client.get(
        "/couchdb/lpg/_all_docs",
        params={"startkey": '"equipment:"', "endkey": '"equipment:\ufff0"', "include_docs": "true"},
        headers=admin_headers,
    ).json()
    assert [r["id"] for r in eq["rows"]] == [i for i in ids if i.startswith("equipment:")]
    assert all(r["doc"]["_rev"] == r["value"]["rev"] for r in eq["rows"])
    page = client.get("/couchdb/lpg/_all_docs", params={"limit": 2, "skip": 1}, headers=admin_headers).json()
    assert [r["id"] for r in page["rows"]] == ids[1:3] and page["offset"] == 1
    down = client.get("/couchdb/lpg/_all_docs", params={"descending": "true", "limit": 3}, headers=admin_headers).json()
    assert [r["id"] for r in down["rows"]] == ids[::-1][:3]


def test_everything_under_couchdb_answers_in_couchdbs_shape(
    demo: Database, client: TestClient, driver_headers: dict[str, str]
) -> None:
    r = couch_error(client.get("/couchdb/nosuch/", headers=driver_headers), 404, "not_found")
    assert r["reason"] == "Database does not exist."
    couch_error(client.get("/couchdb/lpg/_design/x", headers=driver_headers), 404, "not_found")
    couch_error(client.patch("/couchdb/lpg/_changes", headers=driver_headers), 405, "method_not_allowed")
    couch_error(client.put("/couchdb/lpg/", headers=driver_headers), 412, "file_exists")
    big = b'{"docs": [' + b'{"_id": "x"},' * 600_000 + b"{}]}"
    r = client.post(
        "/couchdb/queue-t1/_bulk_docs", content=big, headers={**driver_headers, "Content-Type": "application/json"}
    )
    couch_error(r, 413, "too_large")
    r = client.get("/couchdb/lpg/")
    couch_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Basic")
    session = client.get("/couchdb/_session", headers=driver_headers).json()
    assert session["ok"] is True and session["userCtx"]["name"] == "driver1"


def test_rate_limited_basic_auth_is_429_with_retry_after(demo: Database, client: TestClient) -> None:
    for _ in range(5):
        couch_error(client.get("/couchdb/lpg/", headers=basic("driver2", "guess")), 401, "unauthorized")
    r = client.get("/couchdb/lpg/", headers=basic("driver2", "driver2-lpg-2026"))
    couch_error(r, 429, "too_many_requests")
    assert int(r.headers["retry-after"]) > 0


def test_an_ended_session_and_a_changed_password_end_access_at_once(
    demo: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    login = client.post("/api/v1/auth/login/", json={"username": "driver1", "password": "driver1-lpg-2026"}).json()
    token = {"Authorization": f"Bearer {login['access']}"}
    assert client.get("/couchdb/lpg/_changes", headers=token).status_code == 200
    assert client.post("/api/v1/auth/logout/", json={"refresh": login["refresh"]}).status_code == 204
    couch_error(client.get("/couchdb/lpg/_changes", headers=token), 401, "unauthorized")
    couch_error(client.get("/couchdb/lpg/customer:1", headers=token), 401, "unauthorized")
    old = basic("driver1", "driver1-lpg-2026")
    assert client.get("/couchdb/lpg/", headers=old).status_code == 200
    assert client.get("/couchdb/lpg/", headers=old).status_code == 200  # the remembered check
    driver = user_id(demo, "driver1")
    r = client.patch(f"/api/v1/users/{driver}/", json={"password": "a-new-password-2026"}, headers=admin_headers)
    assert r.status_code == 200, r.text
    couch_error(client.get("/couchdb/lpg/", headers=old), 401, "unauthorized")
    new = basic("driver1", "a-new-password-2026")
    assert client.get("/couchdb/lpg/", headers=new).status_code == 200
    assert client.patch(f"/api/v1/users/{driver}/", json={"active": False}, headers=admin_headers).status_code == 200
    couch_error(client.get("/couchdb/lpg/", headers=new), 401, "unauthorized")


def test_local_documents_check_revs_and_are_limited(demo: Database, client: TestClient, settings: Any) -> None:
    d1 = bearer(settings, user_id(demo, "driver1"))
    url = "/couchdb/lpg/_local/rep%20one"
    assert client.put(url, json={"last_seq": 1}, headers=d1).json() == {
        "ok": True,
        "id": "_local/rep one",
        "rev": "0-1",
    }
    couch_error(client.put(url, json={"last_seq": 2}, headers=d1), 409, "conflict")
    couch_error(client.put(url, json={"last_seq": 2, "_rev": "0-7"}, headers=d1), 409, "conflict")
    assert client.put(url, json={"last_seq": 2, "_rev": "0-1"}, headers=d1).json()["rev"] == "0-2"
    assert client.get(url, headers=d1).json() == {"last_seq": 2, "_id": "_local/rep one", "_rev": "0-2"}
    couch_error(client.put(url, json={"x": "y" * 1024 * 1024, "_rev": "0-2"}, headers=d1), 413, "too_large")
    for n in range(55):
        assert client.put(f"/couchdb/lpg/_local/c{n}", json={"n": n}, headers=d1).status_code == 201
    assert client.get("/couchdb/lpg/_local/c54", headers=d1).status_code == 200
    couch_error(client.get(url, headers=d1), 404, "not_found")  # the least recently written ones made room
    from sqlalchemy import func, select

    from sync.models import CouchLocalDoc

    assert demo.read(lambda s: s.scalar(select(func.count()).select_from(CouchLocalDoc))) == 50
    assert client.delete("/couchdb/lpg/_local/c54", params={"rev": "0-1"}, headers=d1).status_code == 200


def test_queue_revs_diff_bulk_docs_and_results(demo: Database, client: TestClient, settings: Any) -> None:
    d1 = bearer(settings, user_id(demo, "driver1"))
    q = "/couchdb/queue-tab%2017"
    info = client.get(f"{q}/", headers=d1).json()
    assert info["db_name"] == "queue-tab 17"
    docs = [
        {"_id": "t 1", "_rev": "1-a", "op": "customer.create", "data": {"name": "Queue House", "address": "1 Rd"}},
        {"_id": "t 2", "_rev": "1-b", "op": "customer.create", "data": {"name": "", "address": "2 Rd"}},
        {"_id": "t 3", "_rev": "1-c", "op": "customer.update", "data": {"id": "t 2", "phone": "1"}},
        {"_id": "t 4", "_rev": "1-d", "op": "customer.create"},
        {"_id": "t 5", "_rev": "1-e", "_deleted": True},
    ]
    diff = client.post(f"{q}/_revs_diff", json={d["_id"]: [d["_rev"]] for d in docs}, headers=d1).json()
    assert set(diff) == {"t 1", "t 2", "t 3", "t 4", "t 5"} and diff["t 1"] == {"missing": ["1-a"]}
    r = client.post(f"{q}/_bulk_docs", json={"docs": docs, "new_edits": False}, headers=d1)
    assert r.status_code == 201
    errors = {e["id"]: e for e in r.json()}
    assert set(errors) == {"t 2", "t 3", "t 4"} and all(e["error"] == "forbidden" for e in errors.values())
    assert errors["t 2"]["reason"].startswith("validation_error") and "dependency_rejected" in errors["t 3"]["reason"]
    diff = client.post(f"{q}/_revs_diff", json={"t 1": ["1-a"], "t 2": ["1-b"]}, headers=d1).json()
    assert diff == {"t 2": {"missing": ["1-b"]}}
    again = client.post(f"{q}/_bulk_docs", json={"docs": docs[:1], "new_edits": False}, headers=d1)
    assert again.json() == []
    assert client.post(f"{q}/_ensure_full_commit", headers=d1).json()["ok"] is True
    res = "/couchdb/results-tab%2017"
    feed = client.get(f"{res}/_changes", params={"include_docs": "true"}, headers=d1).json()
    by_id = {r["id"]: r["doc"] for r in feed["results"]}
    assert by_id["t 1"]["status"] == "applied" and by_id["t 1"]["entity"] == "customer"
    assert by_id["t 2"]["status"] == "rejected" and by_id["t 3"]["error"]["code"] == "dependency_rejected"
    assert client.get(f"{res}/_changes", params={"since": feed["last_seq"]}, headers=d1).json()["results"] == []
    assert client.get(f"{res}/", headers=d1).json()["update_seq"] == feed["last_seq"]
    one = client.get(f"{res}/t%201", params={"revs": "true"}, headers=d1).json()
    assert one["_id"] == "t 1" and one["_revisions"]["start"] == 1
    couch_error(client.get(f"{res}/", headers=bearer(settings, user_id(demo, "driver2"))), 404, "not_found")
    couch_error(client.post("/couchdb/lpg/_bulk_docs", json={"docs": []}, headers=d1), 403, "forbidden")
    other = client.post(
        f"{q}/_bulk_docs",
        json={"docs": docs[:1], "new_edits": False},
        headers=bearer(settings, user_id(demo, "driver2")),
    )
    couch_error(other, 403, "forbidden")


def test_cors_for_credentialed_requests(settings: Any, demo: Database, driver_headers: dict[str, str]) -> None:
    import pytest

    from server import create_app

    app = create_app(settings.with_(cors_origins=("http://tablet.example",)), demo)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        pre = c.options(
            "/couchdb/lpg/_changes",
            headers={
                "Origin": "http://tablet.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-credentials"] == "true"
        assert pre.headers["access-control-allow-origin"] == "http://tablet.example"
        r = c.get("/couchdb/lpg/", headers={**driver_headers, "Origin": "http://tablet.example"})
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers.get_list("vary") == ["Origin"]
        r = c.get("/couchdb/nosuch/", headers={**driver_headers, "Origin": "http://tablet.example"})
        assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "http://tablet.example"
        r = c.get("/couchdb/lpg/", headers={**driver_headers, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    with pytest.raises(ValueError, match="refused"):
        create_app(settings.with_(cors_origins=("*",)), demo)


def test_a_database_fault_is_503_with_retry_after_and_a_bug_500_both_in_couchdbs_shape(
    demo: Database, client: TestClient, driver_headers: dict[str, str], monkeypatch: Any
) -> None:
    from domain.dbfaults import UNREACHABLE, DatabaseUnavailable, Fault
    from sync.couch import feed

    def down(*args: Any) -> Any:
        raise DatabaseUnavailable(
            Fault(UNREACHABLE, 2003, "Can't connect"), attempts=3, outcome_unknown=False, idempotent=False
        )

    monkeypatch.setattr(feed, "head_seq", down)
    r = client.get("/couchdb/lpg/", headers=driver_headers)
    body = couch_error(r, 503, "service_unavailable")
    assert int(r.headers["retry-after"]) > 0 and "send the same request again" in body["reason"]

    def bug(*args: Any) -> Any:
        raise RuntimeError("a defect")

    monkeypatch.setattr(feed, "head_seq", bug)
    couch_error(client.get("/couchdb/lpg/", headers=driver_headers), 500, "unknown_error")


def test_results_longpoll_waits_for_a_result(demo: Database, client: TestClient, settings: Any) -> None:
    import threading
    import time

    d1 = bearer(settings, user_id(demo, "driver1"))
    res = "/couchdb/results-tab-lp"
    t0 = time.monotonic()
    empty = client.get(f"{res}/_changes", params={"feed": "longpoll", "timeout": "600"}, headers=d1).json()
    assert empty["results"] == [] and 0.5 < time.monotonic() - t0 < 5
    doc = {"_id": "lp-1", "op": "customer.create", "data": {"name": "Longpoll House", "address": "1 Rd"}}
    push = threading.Timer(
        0.3,
        lambda: client.post("/couchdb/queue-tab-lp/_bulk_docs", json={"docs": [doc], "new_edits": False}, headers=d1),
    )
    push.start()
    t0 = time.monotonic()
    page = client.get(
        f"{res}/_changes", params={"feed": "longpoll", "timeout": "10000", "since": empty["last_seq"]}, headers=d1
    ).json()
    push.join()
    assert [r["id"] for r in page["results"]] == ["lp-1"] and time.monotonic() - t0 < 5


def test_non_ascii_digits_in_ids_revisions_and_parameters_are_refused_not_a_crash(
    demo: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    # str.isdigit() holds for '²' and '١', which int() refuses or reads as a number: each must be a 4xx.
    for doc_id in ("customer:²", "customer:١", "customer:1²"):
        couch_error(client.get(f"/couchdb/lpg/{doc_id}", headers=admin_headers), 404, "not_found")
    r = client.post("/couchdb/lpg/_bulk_get", json={"docs": [{"id": "customer:²"}]}, headers=admin_headers)
    assert r.status_code == 200 and "error" in r.json()["results"][0]["docs"][0], r.text
    couch_error(
        client.get("/couchdb/lpg/customer:1", params={"rev": "²-abc"}, headers=admin_headers), 400, "bad_request"
    )
    for name, value in (("limit", "²"), ("since", "²"), ("heartbeat", "١")):
        couch_error(
            client.get("/couchdb/lpg/_changes", params={name: value}, headers=admin_headers), 400, "bad_request"
        )
    couch_error(
        client.get("/couchdb/results-t1/_changes", params={"since": "².1"}, headers=admin_headers), 400, "bad_request"
    )
