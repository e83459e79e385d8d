"""The console's fragments without a browser: who may read them, what they say, and that a dry run writes
nothing while applying resolves the refusals once. The browser test (test_console_browser.py) drives the same
pages through Chromium."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import msgpack
import orjson
from sqlalchemy import select, update
from starlette.testclient import TestClient

from console.web import CSP, FRAGMENTS, HTMX, STATIC
from domain.accounts.models import Device
from domain.db import Database
from domain.sales.models import Transaction
from domain.settings import Settings
from reconcile.models import RejectedChange
from tests.conftest import ENGINE, bearer
from tests.support.sync_support import count, push, recent, table_fingerprint

DEVICE = "tab-017"


def text_of(html: str) -> str:
    """What a person reads: tags dropped, whitespace folded, entities left as they are (none matter here)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'").replace("&amp;", "&")


def refused_sale(client: TestClient, driver: dict[str, str]) -> dict[str, Any]:
    sale = {
        "client_temp_id": "t-big",
        "op": "transaction.create",
        "data": {
            "customer": 2,
            "truck": 2,
            "confirm": True,
            "occurred_at": recent(),
            "deliveries": [{"equipment": "CYL50", "kind": "full_deliver", "qty": 25}],
        },
    }
    printed = {"client_temp_id": "t-print", "op": "invoice.mark_printed", "data": {"transaction": "t-big"}}
    printed["data"]["occurred_at"] = recent(29)
    results = push(client, driver, [sale, printed], device=DEVICE)["results"]
    assert [r["error"]["code"] for r in results] == ["insufficient_stock", "dependency_rejected"]
    return sale


def meter_went_backwards(client: TestClient, driver: dict[str, str]) -> None:
    at = recent()
    first = {
        "client_temp_id": "m-1",
        "op": "transaction.create",
        "data": {"customer": 1, "truck": 1, "confirm": True, "occurred_at": at, "meter": {"reading": "100.00"}},
    }
    second = {
        "client_temp_id": "m-2",
        "op": "transaction.create",
        "data": {"customer": 1, "truck": 1, "confirm": True, "occurred_at": at, "meter": {"reading": "50.00"}},
    }
    results = push(client, driver, [first, second], device="tab-009")["results"]
    assert results[1]["error"]["code"] == "meter_regression", results


def open_ids(db: Database, device: str) -> list[int]:
    return db.read(
        lambda s: list(
            s.scalars(
                select(RejectedChange.id).where(
                    RejectedChange.device_id == device, RejectedChange.resolved_at.is_(None)
                )
            )
        )
    )


def test_the_shell_is_public_holds_no_data_and_no_inline_script(client: TestClient, demo: Database) -> None:
    shell = client.get("/console/")
    assert shell.status_code == 200
    assert shell.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert shell.headers["cache-control"] == "no-store" and shell.headers["x-frame-options"] == "DENY"
    html = shell.text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in attrs and body.strip() == "" for attrs, body in scripts)
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html, re.I)  # no onclick= or any inline handler
    assert "style=" not in html
    assert "driver1" not in html and "CYL50" not in html  # nothing of the business before a login
    assert client.get("/console", follow_redirects=False).headers["location"] == "/console/"
    js = client.get(f"/console/static/{HTMX}")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert (STATIC / "htmx-LICENSE.txt").read_text().startswith("Zero-Clause BSD")
    own = client.get("/console/static/console.js").text
    for forbidden in ("localStorage", "sessionStorage", "document.cookie", "eval(", ".innerHTML", "insertAdjacentHTML"):
        assert forbidden not in own, forbidden  # tokens stay in memory; no markup built from strings


def test_every_fragment_refuses_anonymous_callers_and_drivers(
    client: TestClient, demo: Database, driver_headers: dict[str, str]
) -> None:
    assert len(FRAGMENTS) >= 12
    for method, path, _, _ in FRAGMENTS:
        url = "/console" + path.replace("{id:int}", "1")
        anonymous = client.request(method, url, json={} if method == "POST" else None)
        assert anonymous.status_code == 401, (url, anonymous.text)
        assert anonymous.json()["error"]["code"] == "not_authenticated"
        assert anonymous.headers["content-security-policy"] == CSP
        driver = client.request(method, url, json={} if method == "POST" else None, headers=driver_headers)
        assert driver.status_code == 403, (url, driver.text)
        assert driver.json()["error"]["code"] == "forbidden"


def test_the_inbox_reads_each_refusal_as_a_person_would(
    client: TestClient, demo: Database, driver_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    refused_sale(client, driver_headers)
    meter_went_backwards(client, driver_headers)
    page = client.get("/console/f/inbox", headers=admin_headers)
    assert page.status_code == 200
    text = text_of(page.text)
    assert "3 open rejections on 2 devices" in text
    assert "Not enough stock: truck 2 has 20 full CYL50, the change asks for 25." in text
    assert "Meter reading went backwards: the last recorded reading is 100.00, this one is 50.00" in text
    assert "Depends on t-big, which was refused (insufficient_stock)." in text
    assert "Depends on it: t-print" in text
    # the groups: causes first, the dependent refusal last
    order = re.findall(r'id="group-([a-z_]+)"', page.text)
    assert order[-1] == "dependency_rejected" and set(order) == {
        "insufficient_stock",
        "meter_regression",
        "dependency_rejected",
    }


def test_a_dry_run_writes_nothing_and_apply_resolves_once(
    client: TestClient, demo: Database, driver_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    sale = refused_sale(client, driver_headers)
    ids = open_ids(demo, DEVICE)
    assert len(ids) == 2
    before = table_fingerprint(demo)
    dry = client.post(
        "/console/f/inbox/dry-run", json={"device_id": DEVICE, "ids": [str(i) for i in ids]}, headers=admin_headers
    )
    assert dry.status_code == 200, dry.text
    assert "0 would apply, 2 would still be refused" in text_of(dry.text)
    assert table_fingerprint(demo) == before, "a dry run changed the database"
    # stock through the console's adjustment form
    adjusted = client.post(
        "/console/f/stock/adjust",
        json={"place": "truck", "holder": "2", "equipment": "CYL50", "full_delta": "10", "reason": "count"},
        headers=admin_headers,
    )
    assert adjusted.status_code == 200, adjusted.text
    assert "Recorded adjustment #" in text_of(adjusted.text)
    dry = client.post("/console/f/inbox/dry-run", json={"device_id": DEVICE, "ids": ids}, headers=admin_headers)
    assert "2 would apply, 0 would still be refused" in text_of(dry.text)
    transactions = count(demo, Transaction)
    applied = client.post("/console/f/inbox/apply", json={"device_id": DEVICE, "ids": ids}, headers=admin_headers)
    assert applied.status_code == 200, applied.text
    text = text_of(applied.text)
    assert "t-big: applied" in text and "t-print: applied" in text
    assert "The inbox is empty" in text
    assert count(demo, Transaction) == transactions + 1
    resolved = demo.read(lambda s: s.scalars(select(RejectedChange)).all())
    assert all(r.resolved_at is not None and r.resolved_by == 1 for r in resolved)
    assert re.findall(r'class="resolved-by">([^<]+)<', applied.text) == ["admin", "admin"]
    # applying again: nothing is open any more, nothing changes
    again = client.post("/console/f/inbox/apply", json={"device_id": DEVICE, "ids": ids}, headers=admin_headers)
    assert again.status_code == 400 and again.json()["error"]["code"] == "validation_error"
    assert count(demo, Transaction) == transactions + 1
    assert push(client, driver_headers, [sale], device=DEVICE)["results"][0]["status"] == "duplicate"


def test_bad_input_changes_nothing(client: TestClient, demo: Database, admin_headers: dict[str, str]) -> None:
    before = table_fingerprint(demo)
    cases = [
        ("/console/f/inbox/dry-run", {"ids": [1]}),
        ("/console/f/inbox/apply", {"device_id": DEVICE, "ids": []}),
        ("/console/f/inbox/apply", {"device_id": DEVICE, "ids": ["x"]}),
        ("/console/f/stock/adjust", {"place": "moon", "holder": "1", "equipment": "CYL50", "reason": "x"}),
        ("/console/f/stock/adjust", {"place": "truck", "holder": "two", "equipment": "CYL50", "reason": "x"}),
        ("/console/f/stock/adjust", {"place": "truck", "holder": "2", "equipment": "CYL50", "reason": ""}),
        ("/console/f/audit/verify", {"cursor": {"head_id": "x"}}),
    ]
    for path, body in cases:
        response = client.post(path, json=body, headers=admin_headers)
        assert response.status_code == 400, (path, body, response.text)
        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert client.post("/console/f/inbox/apply", content=b"[1]", headers=admin_headers).status_code == 400
    assert client.get("/console/f/devices?sort=password", headers=admin_headers).status_code == 400
    assert client.get("/console/f/device?id=nope", headers=admin_headers).status_code == 404
    assert client.get("/console/f/audit?date_from=yesterday", headers=admin_headers).status_code == 400
    assert table_fingerprint(demo) == before


def test_devices_are_sorted_filtered_and_marked(
    client: TestClient, demo: Database, driver_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    refused_sale(client, driver_headers)
    meter_went_backwards(client, driver_headers)
    demo.run(
        lambda uow: uow.session.execute(
            update(Device).where(Device.device_id == "tab-009").values(clock_skew_ms=-600_000)
        )
    )
    page = client.get("/console/f/devices?sort=open_rejections&dir=desc", headers=admin_headers)
    assert page.status_code == 200
    rows = re.findall(r'<tr class="([^"]*)" data-device="([^"]+)">', page.text)
    assert [device for _, device in rows] == [DEVICE, "tab-009"]  # 2 open, then 1
    marks = {device: cls.split() for cls, device in rows}
    assert "skewed" in marks["tab-009"] and "skewed" not in marks[DEVICE]
    assert "stale" not in marks[DEVICE]  # it pushed a moment ago
    assert "-600.0 s" in page.text
    skewed = client.get("/console/f/devices?only=skewed", headers=admin_headers)
    assert re.findall(r'data-device="([^"]+)"', skewed.text) == ["tab-009"]
    found = client.get("/console/f/devices?q=017", headers=admin_headers)
    assert re.findall(r'data-device="([^"]+)"', found.text) == [DEVICE]
    device = client.get(f"/console/f/device?id={DEVICE}", headers=admin_headers)
    text = text_of(device.text)
    assert "Device tab-017" in text and "truck 2 has 20 full CYL50" in text and "2 open" in text


def test_stock_page_marks_adjustments_and_negative_sites(
    client: TestClient, demo: Database, driver_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    before = text_of(client.get("/console/f/stock", headers=admin_headers).text)
    assert "None: every customer site holds zero or more." in before
    # a driver collects more empties than the site was known to hold: applied, with a warning
    collect = {
        "client_temp_id": "e-1",
        "op": "transaction.create",
        "data": {
            "customer": 3,
            "truck": 1,
            "confirm": True,
            "occurred_at": recent(),
            "deliveries": [{"equipment": "CYL9", "kind": "empty_return", "qty": 500}],
        },
    }
    assert push(client, driver_headers, [collect])["results"][0]["status"] == "applied"
    client.post(
        "/console/f/stock/adjust",
        json={"place": "depot", "holder": "1", "equipment": "CYL9", "full_delta": "-3", "reason": "three scrapped"},
        headers=admin_headers,
    )
    page = client.get("/console/f/stock", headers=admin_headers).text
    negative = re.search(r'<ul id="negative-sites">(.*?)</ul>', page, re.S)
    assert negative is not None and "CYL9" in negative.group(1)
    series = re.search(r'<table class="grid series" id="series-CYL9">(.*?)</table>', page, re.S)
    assert series is not None
    steps = re.findall(r'<tr class="(adjusted)?"><td>[^<]+</td><td class="num">(-?\d+)</td>', series.group(1))
    assert [flag for flag, _ in steps] == ["adjusted", ""]
    adjusted_figure, now_figure = (int(figure) for _, figure in steps)
    assert adjusted_figure == now_figure  # nothing moved since the adjustment
    assert "(%d → %d)" % (now_figure + 3, now_figure) in page  # the figure before and after it


def test_audit_diff_and_the_stepwise_chain_verification(
    client: TestClient, demo: Database, admin_headers: dict[str, str]
) -> None:
    created = client.post(
        "/api/v1/customers/", json={"name": "Diff Kopi", "address": "9 Diff Rd"}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    customer = created.json()
    changed = client.patch(
        f"/api/v1/customers/{customer['id']}/",
        json={"phone": "+6561234567", "base_version": customer["version"]},
        headers=admin_headers,
    )
    assert changed.status_code == 200, changed.text
    listing = client.get(f"/console/f/audit?entity_type=customer&entity_id={customer['id']}", headers=admin_headers)
    ids = [int(i) for i in re.findall(r'hx-get="/console/f/audit/(\d+)"', listing.text)]
    assert len(ids) == 2, listing.text
    entry = client.get(f"/console/f/audit/{max(ids)}", headers=admin_headers)
    assert entry.status_code == 200
    diff = re.search(r'<table class="grid diff" id="entry-diff">(.*?)</table>', entry.text, re.S)
    assert diff is not None, entry.text
    assert re.search(r'<tr class="diff-changed"><th scope="row">phone', diff.group(1))
    # verification: step by step with a cursor carried by the caller, the verdict at the end
    answer = client.post("/console/f/audit/verify", json={}, headers=admin_headers).json()
    steps = 1
    while answer["verdict"] is None:
        answer = client.post("/console/f/audit/verify", json={"cursor": answer["cursor"]}, headers=admin_headers).json()
        steps += 1
    assert answer["verdict"] == {"ok": True, "checked": answer["total"], "first_broken": None}
    assert answer["total"] > 0


def test_the_stepwise_verification_finds_a_broken_entry(
    client: TestClient, demo: Database, admin_headers: dict[str, str]
) -> None:
    answer = client.post("/console/f/audit/verify", json={}, headers=admin_headers).json()
    cursor = answer["cursor"]
    forged = {**cursor, "prev_id": 0, "prev_hash": "f" * 64, "checked": 0}  # as if entry 1 followed another
    verdict = client.post("/console/f/audit/verify", json={"cursor": forged}, headers=admin_headers).json()["verdict"]
    assert verdict["ok"] is False and verdict["first_broken"]["id"] == 1


def test_a_queue_file_decodes_from_json_and_msgpack(
    client: TestClient, demo: Database, admin_headers: dict[str, str]
) -> None:
    changes = [
        {"client_temp_id": f"q-{i}", "op": "customer.create", "data": {"name": f"Q {i}", "address": "x"}}
        for i in range(3)
    ]
    for body, kind in (
        (orjson.dumps({"device_id": DEVICE, "changes": changes}), "application/json"),
        (msgpack.packb(changes), "application/msgpack"),
        (msgpack.packb({"changes": changes}), "application/json"),  # a wrong hint: the other format is tried
    ):
        answer = client.post("/console/f/replay/decode", content=body, headers={**admin_headers, "Content-Type": kind})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"count": 3, "changes": changes, "batch": 500}
    bad = client.post("/console/f/replay/decode", content=b"\xc1 not a queue", headers=admin_headers)
    assert bad.status_code == 400
    empty = client.post("/console/f/replay/decode", content=b"  ", headers=admin_headers)
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "validation_error"


def test_a_database_that_does_not_answer_is_a_503_with_retry_after(settings: Settings) -> None:
    """The console's fragments behind a dead database: 503 and Retry-After, never a 500."""
    from server import create_app

    dead = (
        "mysql+pymysql://root@127.0.0.1:18799/nowhere?connect_timeout=2"
        if ENGINE == "mysql"
        else "sqlite:////nonexistent-directory/lpg.db"
    )
    broken = dataclasses.replace(settings, database_url=dead)
    db = Database(broken)
    try:
        with TestClient(create_app(broken, db), base_url="http://127.0.0.1") as client:
            response = client.get("/console/f/devices", headers=bearer(broken, 1))
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"]["code"] == "service_unavailable"
            assert client.get("/console/").status_code == 200  # the shell needs no database
    finally:
        db.dispose()
