"""CouchDB 3.3's own replicator against `/couchdb/`, both ways, request by request (tests/couch/couch_replicator.py
sends what couch_replicator sends and checks the answers as its Erlang code does): lpg-sync as the SOURCE of a
replication into a CouchDB, and as the TARGET of a CouchDB pushing a tablet's queue."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from domain.catalog.models import Customer
from domain.db import Database
from domain.feed.models import PUBLIC_SCOPE, FeedEntry
from domain.feed.services import record_change
from reconcile.models import AppliedChange, RejectedChange
from sync.couch.common import rev_hash
from tests.conftest import user_id
from tests.couch.couch_replicator import (
    Doc,
    Failed,
    HttpDb,
    Job,
    MemoryDb,
    MissingDoc,
    replication_ids,
    update_checkpoint,
)
from tests.support.pull_support import create_owned, update_customer

PASSWORD = {"driver1": "driver1-lpg-2026", "driver2": "driver2-lpg-2026", "admin": "admin-lpg-2026"}
SOURCE = "/couchdb/lpg"


def endpoint(client: TestClient, path: str, user: str, log: list[str]) -> HttpDb:
    return HttpDb(client, path, user, PASSWORD[user], log)


def scope_of(db: Database, driver: int) -> dict[str, tuple[int, bool]]:
    """`entity:id` -> (revision number, deleted) of every feed row the driver may read."""
    rows = db.read(
        lambda s: s.execute(
            select(FeedEntry.entity, FeedEntry.entity_id, FeedEntry.version, FeedEntry.deleted).where(
                FeedEntry.scope.in_([PUBLIC_SCOPE, driver])
            )
        ).all()
    )
    return {f"{e}:{i}": (v + 1 if d else v, bool(d)) for e, i, v, d in rows}


def many_customers(db: Database, n: int) -> None:
    """`n` more customers (reference data), so a scope holds more than one page of the feed."""
    from decimal import Decimal

    from domain.catalog.docs import customer_doc

    def work(uow: Any) -> None:
        rows = [
            Customer(name=f"Bulk {k}", address=f"{k} Tuas Ave", meter_rate=Decimal("3.10"), kg_rate=Decimal("2.60"))
            for k in range(n)
        ]
        uow.session.add_all(rows)
        uow.session.flush()
        for row in rows:
            record_change(uow.session, "customer", row, doc=lambda row=row: customer_doc(row))

    db.run(work)


def local_doc(client: TestClient, path: str, rep_id: str, user: str) -> dict[str, Any]:
    r = client.get(f"{path}/_local/{rep_id}", auth=(user, PASSWORD[user]))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_one_shot_pull_copies_the_whole_scope_checkpoints_on_both_ends_and_resumes(
    demo: Database, client: TestClient
) -> None:
    d1, d2 = user_id(demo, "driver1"), user_id(demo, "driver2")
    many_customers(demo, 1100)
    mine = create_owned(demo, "transaction", d1)
    theirs = create_owned(demo, "transaction", d2)
    log: list[str] = []
    source, replica = endpoint(client, SOURCE, "driver1", log), MemoryDb()
    ids = replication_ids("http://127.0.0.1/couchdb/lpg/", "replica")
    job = Job(source, replica, ids)
    assert job.start() == 0
    # The session plugin finds no /_session at the server's root (404) and steps aside: Basic on every request.
    assert source.basic is True
    assert log == ["POST /_session", f"GET {SOURCE}/", f"GET {SOURCE}/", *[f"GET {SOURCE}/_local/{i}" for i in ids]]
    del log[:]
    job.run()
    # One _changes request (a normal feed has no limit: every change, not a first page of them) ...
    assert [e for e in log if "_changes" in e] == [f"GET {SOURCE}/_changes"]
    # ... then _bulk_get per batch of 500 and a checkpoint after each: both ends committed, then both written.
    expected = scope_of(demo, d1)
    assert len(expected) > 1000 and job.stats.bulk_get_docs == len(expected) == job.stats.docs_read
    assert {k: (d.revs[0], d.deleted) for k, d in replica.docs.items()} == expected
    assert f"transaction:{mine}" in replica.docs and f"transaction:{theirs}" not in replica.docs
    checkpoints = [e for e in log if "_local" in e or "_ensure_full_commit" in e]
    assert checkpoints[:2] == [f"POST {SOURCE}/_ensure_full_commit", f"PUT {SOURCE}/_local/{ids[0]}"]
    assert len(checkpoints) == 2 * -(-len(expected) // 500) >= 6
    server_doc = client.get(f"{SOURCE}/customer:1", params={"revs": "true"}, auth=("driver1", PASSWORD["driver1"]))
    copied = replica.docs["customer:1"]
    assert copied.rev == server_doc.json()["_rev"] and copied.revs[1] == server_doc.json()["_revisions"]["ids"]
    assert copied.body == {k: v for k, v in server_doc.json().items() if not k.startswith("_")}
    checkpoint = local_doc(client, SOURCE, ids[0], "driver1")
    assert checkpoint["source_last_seq"] == job.through and checkpoint["session_id"] == job.session_id
    assert checkpoint["_rev"] == f"0-{len(checkpoints) // 2}" and "_revisions" not in checkpoint
    assert replica.local[f"_local/{ids[0]}"].body == {k: v for k, v in checkpoint.items() if not k.startswith("_")}

    # Changes: an update, a record deleted (a tombstone), a record of another driver.
    update_customer(demo, 1)
    demo.run(lambda uow: record_change(uow.session, "transaction", mine, 1, doc={"id": mine}, scope=d1, deleted=True))
    later = create_owned(demo, "transaction", d2)
    del log[:]
    again = Job(source, replica, ids)
    assert again.start() == job.through  # resumed from the checkpoint both ends agree on
    assert log[-1] == f"GET {SOURCE}/_local/{ids[0]}" and log.count(f"GET {SOURCE}/_local/{ids[0]}") == 1
    again.run()
    assert replica.docs[f"transaction:{mine}"].deleted is True
    assert replica.docs[f"transaction:{mine}"].revs[1][1] == rev_hash(f"transaction:{mine}", 1)
    assert replica.docs["customer:1"].revs[0] == copied.revs[0] + 1
    assert replica.docs["customer:1"].revs[1][1:] == copied.revs[1]  # one linear history: no conflict
    assert f"transaction:{later}" not in replica.docs
    assert again.stats.docs_read == 2
    # Its checkpoint was written on top of the one read at the start (the `_rev` it read back was current).
    assert local_doc(client, SOURCE, ids[0], "driver1")["_rev"] == f"0-{len(checkpoints) // 2 + 1}"
    assert {k: (d.revs[0], d.deleted) for k, d in replica.docs.items()} == scope_of(demo, d1)


def test_without_bulk_get_documents_come_as_multipart_open_revs(demo: Database, client: TestClient) -> None:
    d1 = user_id(demo, "driver1")
    head = int(client.get(f"{SOURCE}/", auth=("driver1", PASSWORD["driver1"])).json()["update_seq"])
    mine = create_owned(demo, "transaction", d1)
    update_customer(demo, 3)
    demo.run(lambda uow: record_change(uow.session, "customer", 7, 9, doc={"id": 7}, deleted=True))
    log: list[str] = []
    source, replica = endpoint(client, SOURCE, "driver1", log), MemoryDb()
    job = Job(source, replica, replication_ids("lpg", "replica", "no-bulk-get"), use_bulk_get=False, since_seq=head)
    job.start()
    job.run()
    assert set(replica.docs) == {f"transaction:{mine}", "customer:3", "customer:7"}
    assert not [e for e in log if "_bulk_get" in e]
    assert len([e for e in log if e.startswith(f"GET {SOURCE}/customer%3A")]) == 2
    assert replica.docs["customer:7"].deleted is True and replica.docs["customer:7"].revs[0] == 10
    # The same documents as _bulk_get gives.
    by_bulk_get = source.bulk_get([(k, d.rev) for k, d in replica.docs.items()])
    assert {k: d for (k, _), d in by_bulk_get.items()} == replica.docs
    # An ancestor revision with latest=true is the current one; a revision that is not there is a
    # `{"missing"}` part, which the replicator asks for once more before the job fails.
    old = source.open_doc_revs("customer:3", [f"1-{rev_hash('customer:3', 1)}"])
    assert [d.rev for d in old] == [replica.docs["customer:3"].rev]
    theirs = create_owned(demo, "transaction", user_id(demo, "driver2"))
    try:
        source.open_doc_revs(f"transaction:{theirs}", [f"1-{rev_hash(f'transaction:{theirs}', 1)}"])
        raise AssertionError("another driver's record was answered")
    except MissingDoc:
        pass
    # A client that asks for JSON (PouchDB) still gets the JSON list.
    listed = client.get(
        f"{SOURCE}/customer:3",
        params={"open_revs": json.dumps([replica.docs["customer:3"].rev]), "revs": "true"},
        headers={"Accept": "application/json"},
        auth=("driver1", PASSWORD["driver1"]),
    )
    assert (
        listed.headers["content-type"].startswith("application/json") and listed.json()[0]["ok"]["_id"] == "customer:3"
    )


def test_a_continuous_feed_ends_at_its_timeout_with_last_seq(demo: Database, client: TestClient) -> None:
    log: list[str] = []
    source = endpoint(client, SOURCE, "driver1", log)
    source.basic = True
    head = int(client.get(f"{SOURCE}/", auth=("driver1", PASSWORD["driver1"])).json()["update_seq"])
    update_customer(demo, 4)
    began = time.monotonic()
    lines = source.changes_since(head, continuous=True, timeout_ms=1000)
    assert time.monotonic() - began < 10
    assert [line[0] for line in lines] == ["customer:4", "last_seq"] and lines[-1][1] == lines[0][1] > head


def test_checkpoints_keep_a_full_history_and_a_repeated_write_is_recognized(demo: Database, client: TestClient) -> None:
    log: list[str] = []
    source = endpoint(client, SOURCE, "driver1", log)
    source.basic = True
    # A CouchDB 3 source's seqs: "<n>-" and an opaque part of a hundred bytes per shard (q=8 here).
    seq = "184466-g1AAAA" + "x" * 900
    entry = {
        "session_id": "0" * 32,
        "start_time": "Mon, 24 Nov 2026 03:15:30 GMT",
        "end_time": "Mon, 24 Nov 2026 03:15:31 GMT",
        "start_last_seq": seq,
        "end_last_seq": seq,
        "recorded_seq": seq,
        "missing_checked": 100_000,
        "missing_found": 100_000,
        "docs_read": 100_000,
        "docs_written": 100_000,
        "doc_write_failures": 0,
        "bulk_get_docs": 100_000,
        "bulk_get_attempts": 100_000,
    }
    body = {"session_id": "1" * 32, "source_last_seq": seq, "replication_id_version": 4, "history": [entry] * 50}
    assert len(json.dumps(body)) > 100_000
    doc = Doc("_local/" + "a" * 32, (0, []), False, body)
    assert update_checkpoint(source, doc) == (0, "1")
    doc.revs = (0, ["1"])
    assert update_checkpoint(source, doc) == (0, "2")
    # The answer was lost and the write sent again with the old `_rev`: 409, then the body read back is
    # the one sent, so the replicator counts it as written.
    assert update_checkpoint(source, doc) == (0, "2")
    doc.body = {**body, "source_last_seq": "other"}
    try:
        update_checkpoint(source, doc)
        raise AssertionError("a stale checkpoint write was taken")
    except Failed as exc:
        assert exc.args[0] == ("checkpoint_commit_failure", "conflict")
    stored = local_doc(client, SOURCE, "a" * 32, "driver1")
    assert stored["_rev"] == "0-2" and set(stored) == {*body, "_id", "_rev"}


def test_a_couchdb_pushes_a_tablet_queue_and_nothing_is_applied_twice(demo: Database, client: TestClient) -> None:
    tablet = MemoryDb()
    tablet.put("t-1", {"op": "customer.create", "data": {"name": "Replicated House", "address": "1 Pandan Rd"}})
    tablet.put("t-2", {"op": "customer.update", "data": {"id": "t-1", "phone": "+65 61234567"}})
    tablet.put("t-3", {"op": "customer.create", "data": {"name": "", "address": "3 Pandan Rd"}})
    tablet.put("t-4", {"op": "customer.create", "data": {"name": "Dropped", "address": "4 Pandan Rd"}})
    tablet.put("t-4", {}, deleted=True)  # the app dropped it from its queue before it was sent
    queue = "/couchdb/queue-tab-9"
    log: list[str] = []
    target = endpoint(client, queue, "driver1", log)
    ids = replication_ids("tablet/queue", f"http://127.0.0.1{queue}/")
    job = Job(tablet, target, ids, create_target=True)
    assert job.start() == 0
    assert log == [
        "POST /_session",
        f"PUT {queue}/",
        f"GET {queue}/",
        f"GET {queue}/",
        *[f"GET {queue}/_local/{i}" for i in ids],
    ]
    del log[:]
    job.run()
    assert log == [
        f"POST {queue}/_revs_diff",
        f"POST {queue}/_bulk_docs",
        f"POST {queue}/_ensure_full_commit",
        f"PUT {queue}/_local/{ids[0]}",
    ]
    assert [(e["id"], e["error"]) for e in job.errors] == [("t-3", "forbidden")]
    assert job.stats.docs_written == 3 and job.stats.doc_write_failures == 1

    def named(name: str) -> int:
        return int(demo.read(lambda s: s.scalar(select(func.count()).where(Customer.name == name))))

    def applied() -> int:
        return int(demo.read(lambda s: s.scalar(select(func.count()).where(AppliedChange.device_id == "tab-9"))))

    def refused() -> int:
        return int(demo.read(lambda s: s.scalar(select(func.count()).where(RejectedChange.device_id == "tab-9"))))

    assert named("Replicated House") == 1 and named("Dropped") == 0 and applied() == 2 and refused() == 1
    phone = demo.read(lambda s: s.scalar(select(Customer.phone).where(Customer.name == "Replicated House")))
    assert phone == "+65 61234567"
    assert local_doc(client, queue, ids[0], "driver1")["source_last_seq"] == tablet.seq

    # A replication of the same queue that lost its checkpoint starts from 0 and, with nearly everything
    # missing lately, skips _revs_diff: every document comes again by _bulk_docs, none is applied twice.
    del log[:]
    fresh = Job(
        tablet, target, replication_ids("tablet/queue", f"http://127.0.0.1{queue}/", "new"), revs_diff_ratio=1.0
    )
    assert fresh.start() == 0
    fresh.run()
    assert not [e for e in log if "_revs_diff" in e] and fresh.stats.revs_diff_skipped == 4
    assert [e["id"] for e in fresh.errors] == ["t-3"]  # a refused change is tried again, and refused again
    assert named("Replicated House") == 1 and applied() == 2 and refused() == 2
    # With _revs_diff, only what was not applied is missing.
    assert target.get_missing_revs({d: [tablet.docs[d].rev] for d in tablet.docs}) == {
        "t-3": [tablet.docs["t-3"].rev],
        "t-4": [tablet.docs["t-4"].rev],
    }

    # The app fixes the refused change; the first replication resumes from its checkpoint and sends only it.
    tablet.put("t-3", {"op": "customer.create", "data": {"name": "Fixed House", "address": "3 Pandan Rd"}})
    del log[:]
    resumed = Job(tablet, target, ids)
    assert resumed.start() == job.through
    resumed.run()
    assert resumed.stats.missing_checked == 1 and resumed.errors == []
    assert named("Fixed House") == 1 and applied() == 3
    assert log.count(f"POST {queue}/_bulk_docs") == 1
    results = client.get(
        "/couchdb/results-tab-9/_changes", params={"include_docs": "true"}, auth=("driver1", PASSWORD["driver1"])
    )
    status = {r["id"]: r["doc"]["status"] for r in results.json()["results"]}
    assert status == {"t-1": "applied", "t-2": "applied", "t-3": "applied"}
