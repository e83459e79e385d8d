"""The read-only CouchDB replication source: what a replicating client (PouchDB, CouchDB's replicator) needs."""

from __future__ import annotations

import base64
import re
import threading
import time
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from domain.db import Database
from domain.feed.models import FeedEntry
from domain.feed.services import record_change
from tests.conftest import bearer
from tests.support.pull_support import create_owned, update_customer

REV = re.compile(r"^[1-9][0-9]*-[0-9a-f]{32}$")


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def changes(client: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = client.get("/couchdb/lpg/_changes", params={"style": "all_docs", **params}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_root_and_db_info(demo: Database, client: Any, driver_headers: dict[str, str]) -> None:
    one = client.get("/couchdb/", headers=driver_headers).json()
    assert one["couchdb"] == "Welcome" and re.fullmatch(r"[0-9a-f]{32}", one["uuid"])
    assert client.get("/couchdb/", headers=driver_headers).json()["uuid"] == one["uuid"]
    info = client.get("/couchdb/lpg/", headers=driver_headers).json()
    head = demo.read(lambda s: max(s.scalars(select(FeedEntry.seq))))
    assert info["db_name"] == "lpg" and info["update_seq"] == str(head)
    r = client.get("/couchdb/other/", headers=driver_headers)
    assert r.status_code == 404 and r.json() == {"error": "not_found", "reason": "Database does not exist."}


def test_changes_all_docs_scoped_paged_and_with_deletions(demo: Database, client: Any, settings: Any) -> None:
    mine = create_owned(demo, "transaction", 2)
    theirs = create_owned(demo, "transaction", 3)
    demo.run(lambda uow: record_change(uow.session, "customer", 5, 9, doc={"id": 5}, deleted=True))
    d1 = bearer(settings, 2)
    seen: list[dict[str, Any]] = []
    since: Any = 0
    while True:
        page = changes(client, d1, since=since, limit=4)
        if not page["results"]:
            break
        seen += page["results"]
        since = page["last_seq"]
    ids = [r["id"] for r in seen]
    assert f"transaction:{mine}" in ids and f"transaction:{theirs}" not in ids
    assert len(ids) == len(set(ids))
    assert all(REV.match(r["changes"][0]["rev"]) for r in seen)
    assert next(r for r in seen if r["id"] == "customer:5")["deleted"] is True
    assert all("deleted" not in r for r in seen if r["id"] != "customer:5")
    seqs = [r["seq"] for r in seen]
    assert seqs == sorted(seqs)


def test_bulk_get_and_get_give_documents_with_revisions(demo: Database, client: Any, settings: Any) -> None:
    theirs = create_owned(demo, "transaction", 3)
    d1 = bearer(settings, 2)
    first = changes(client, d1, limit=1)["results"][0]
    body = {
        "docs": [
            {"id": first["id"], "rev": first["changes"][0]["rev"]},
            {"id": f"transaction:{theirs}"},
            {"id": "nope"},
        ]
    }
    r = client.post("/couchdb/lpg/_bulk_get", params={"revs": "true", "latest": "true"}, json=body, headers=d1)
    assert r.status_code == 200
    found, hidden, bogus = r.json()["results"]
    doc = found["docs"][0]["ok"]
    assert doc["_id"] == first["id"] and doc["_rev"] == first["changes"][0]["rev"]
    assert doc["_revisions"] == {"start": doc["version"], "ids": [doc["_rev"].split("-")[1]]}
    assert hidden["docs"][0]["error"]["error"] == "not_found"  # another driver's record is simply missing
    assert bogus["docs"][0]["error"]["error"] == "not_found"
    got = client.get(f"/couchdb/lpg/{first['id']}", params={"revs": "true"}, headers=d1).json()
    assert got == doc
    assert "_revisions" not in client.get(f"/couchdb/lpg/{first['id']}", headers=d1).json()
    listed = client.get(f"/couchdb/lpg/{first['id']}", params={"open_revs": "all", "revs": "true"}, headers=d1).json()
    assert listed == [{"ok": doc}]
    r = client.get(f"/couchdb/lpg/transaction:{theirs}", headers=d1)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    # a new revision after an update: the version and the hash move
    update_customer(demo, 1)
    r = client.get("/couchdb/lpg/customer:1", headers=d1).json()
    assert r["_rev"].startswith("2-") and r["version"] == 2


def test_all_docs_by_keys_as_pouchdb_asks_for_first_revisions(demo: Database, client: Any, settings: Any) -> None:
    theirs = create_owned(demo, "transaction", 3)
    demo.run(lambda uow: record_change(uow.session, "customer", 5, 9, doc={"id": 5}, deleted=True))
    d1 = bearer(settings, 2)
    keys = ["customer:1", f"transaction:{theirs}", "customer:5", "bogus"]
    r = client.post(
        "/couchdb/lpg/_all_docs", params={"include_docs": "true", "conflicts": "true"}, json={"keys": keys}, headers=d1
    )
    assert r.status_code == 200
    one, hidden, deleted, bogus = r.json()["rows"]
    assert one["id"] == "customer:1" and one["doc"]["_id"] == "customer:1" and one["value"]["rev"] == one["doc"]["_rev"]
    assert hidden == {"key": f"transaction:{theirs}", "error": "not_found"}
    assert deleted["value"]["deleted"] is True and deleted["doc"] is None
    assert bogus == {"key": "bogus", "error": "not_found"}
    r = client.get("/couchdb/lpg/_all_docs", params={"keys": '["customer:1"]'}, headers=d1)
    assert r.json()["rows"][0]["value"] == one["value"] and "doc" not in r.json()["rows"][0]
    assert client.post("/couchdb/lpg/_all_docs", json={"keys": "x"}, headers=d1).status_code == 400


def test_local_checkpoint_documents_are_stored_faithfully_per_user(demo: Database, client: Any, settings: Any) -> None:
    d1, d2 = bearer(settings, 2), bearer(settings, 3)
    url = "/couchdb/lpg/_local/rep-abc"
    assert client.get(url, headers=d1).status_code == 404
    doc = {
        "session_id": "s1",
        "last_seq": 12,
        "history": [{"last_seq": 12, "session_id": "s1"}],
        "replicator": "pouchdb",
    }
    r = client.put(url, json=doc, headers=d1)
    assert r.status_code == 201 and r.json() == {"ok": True, "id": "_local/rep-abc", "rev": "0-1"}
    assert client.get(url, headers=d1).json() == {**doc, "_id": "_local/rep-abc", "_rev": "0-1"}
    assert client.get(url, headers=d2).status_code == 404
    r = client.put(url, json={**doc, "_rev": "0-1", "last_seq": 20}, headers=d1)
    assert r.json()["rev"] == "0-2"
    assert client.get(url, headers=d1).json()["last_seq"] == 20


def test_writes_are_refused_with_a_couchdb_error_pointing_to_push(
    demo: Database, client: Any, driver_headers: dict[str, str]
) -> None:
    for method, path, body in (
        ("POST", "/couchdb/lpg/_bulk_docs", {"docs": [{"_id": "customer:1"}]}),
        ("POST", "/couchdb/lpg/_revs_diff", {"customer:1": ["1-a"]}),
        ("PUT", "/couchdb/lpg/customer:1", {"name": "x"}),
        ("DELETE", "/couchdb/lpg/customer:1", None),
        ("POST", "/couchdb/lpg/", {"_id": "x"}),
    ):
        r = client.request(method, path, json=body, headers=driver_headers)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"] == "forbidden" and "/api/v1/sync/push" in r.json()["reason"]


def test_basic_authentication_and_couchdb_error_shape(demo: Database, client: Any) -> None:
    assert client.get("/couchdb/lpg/", headers=basic("driver1", "driver1-lpg-2026")).status_code == 200
    assert client.get("/couchdb/lpg/", headers=basic("driver1", "driver1-lpg-2026")).status_code == 200  # cached
    r = client.get("/couchdb/lpg/", headers=basic("driver1", "wrong"))
    assert r.status_code == 401 and r.json() == {"error": "unauthorized", "reason": "Name or password is incorrect."}
    r = client.get("/couchdb/lpg/")
    assert r.status_code == 401 and set(r.json()) == {"error", "reason"}


def test_basic_authentication_is_throttled_like_login(demo: Database, client: Any) -> None:
    """Found by the audit registry: Basic credentials were checked on their own, so a replicator could guess
    passwords without the login throttle and without a `login_failed` audit entry."""
    for _ in range(5):
        r = client.get("/couchdb/lpg/", headers=basic("driver2", "guess"))
        assert r.status_code == 401, r.text
    r = client.get("/couchdb/lpg/", headers=basic("driver2", "driver2-lpg-2026"))  # not cached by other tests
    assert r.status_code == 429 and r.json()["error"] == "too_many_requests", r.text
    r = client.post("/api/v1/auth/login/", json={"username": "driver2", "password": "driver2-lpg-2026"})
    assert r.status_code == 429, r.text


def test_longpoll_changes_wake_on_a_commit(demo: Database, client: Any, admin_headers: dict[str, str]) -> None:
    head = int(client.get("/couchdb/lpg/", headers=admin_headers).json()["update_seq"])
    threading.Timer(0.4, lambda: update_customer(demo, 3)).start()
    t0 = time.monotonic()
    page = changes(client, admin_headers, since=head, feed="longpoll", timeout=5000)
    assert time.monotonic() - t0 < 2
    assert [r["id"] for r in page["results"]] == ["customer:3"]
    t0 = time.monotonic()
    page = changes(client, admin_headers, since=page["last_seq"], feed="longpoll", timeout=500)
    assert page["results"] == [] and 0.45 < time.monotonic() - t0 < 2


def test_cors_for_configured_origins(settings: Any, demo: Database, driver_headers: dict[str, str]) -> None:
    from server import create_app

    app = create_app(settings.with_(cors_origins=("http://tablet.example",)), demo)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.get("/couchdb/lpg/", headers={**driver_headers, "Origin": "http://tablet.example"})
        assert r.headers["access-control-allow-origin"] == "http://tablet.example"
        r = c.get("/couchdb/lpg/", headers={**driver_headers, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
