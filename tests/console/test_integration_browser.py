"""The support console in a real browser: Debian's Chromium driven by Playwright, against `python server.py`
on a free port. A driver gets no console; an admin finds the tablet whose sale was refused for stock (and
the change that depended on it), reads why, adds stock, dry-runs the replay, applies it, and the REST API
shows the sale exactly once. Every page is photographed into tests/artifacts/console/ (gitignored);
`LPG_CONSOLE_DOCS=1` also refreshes the committed pictures in docs/console/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgpack
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import create_engine, update

from domain.accounts.models import Device
from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
DOCS = ROOT / "docs" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PORTS = range(18700, 18800)  # this suite's own range; a free one is picked
TABLET = {"width": 1180, "height": 820}  # a 10-11 inch tablet held landscape
DEVICE = "tab-017"
ADMIN = ("admin", "admin-lpg-2026")
# What a person would wait on a loaded machine (a login hashes a password with Argon2): not a speed test.
expect.set_options(timeout=30_000)
DRIVER = ("driver1", "driver1-lpg-2026")


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 18700-18799")


def api(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # only 127.0.0.1
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def login(base: str, who: tuple[str, str]) -> str:
    status, pair = api(base, "POST", "/api/v1/auth/login/", {"username": who[0], "password": who[1]})
    assert status == 200, pair
    return str(pair["access"])


def recent(minutes: int = 30) -> str:
    moment = datetime.now(UTC) - timedelta(minutes=minutes)
    return moment.astimezone(timezone(timedelta(hours=8))).isoformat(timespec="seconds")


@contextmanager
def serving(database_url: str, tmp_path: Path, **env_extra: str) -> Iterator[str]:
    """`python server.py`: migrates, loads the demo data, serves with uvicorn on a port of our range."""
    port = free_port()
    env = {**os.environ, "LPG_SECRET_KEY": SECRET, "LPG_ENV": "test", "LPG_DATABASE_URL": database_url, **env_extra}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # migrations and the demo data on a busy CI machine
        while True:
            try:
                if api(base, "GET", "/api/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-2000:]
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    with serving(database_url, tmp_path) as base:
        yield base


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM), "apt-get install chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def photograph(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if os.environ.get("LPG_CONSOLE_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS / f"{name}.png")


def console_login(page: Page, base: str, who: tuple[str, str]) -> None:
    page.goto(f"{base}/console/")
    page.get_by_label("Username").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Log in").click()


def refused_sale_and_its_dependent(base: str, driver: str) -> dict[str, Any]:
    """A tablet sells 25 CYL50 from truck 2, which holds 20, and marks the invoice printed: both refused."""
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
    status, answer = api(base, "POST", "/api/v1/sync/push", {"device_id": DEVICE, "changes": [sale, printed]}, driver)
    assert status == 200, answer
    codes = [r["error"]["code"] for r in answer["results"]]
    assert codes == ["insufficient_stock", "dependency_rejected"], answer
    return sale


def sales_of_25_cylinders(base: str, admin: str) -> list[dict[str, Any]]:
    status, page = api(base, "GET", "/api/v1/transactions/?customer=2&truck=2&page_size=500", token=admin)
    assert status == 200, page
    return [
        t
        for t in page["results"]
        if any(d["equipment"] in ("CYL50", 3) and d["qty"] == 25 for d in t.get("deliveries", []))
        or t.get("client_temp_id") == "t-big"
    ]


def test_a_driver_gets_no_console(live_server: str, browser: Browser) -> None:
    page = browser.new_page(viewport=TABLET)
    console_login(page, live_server, DRIVER)
    expect(page.locator("#login-message")).to_contain_text("administrators only")
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("#main")).to_be_empty()
    photograph(page, "login-refused-driver")
    # and the fragments themselves refuse a driver's token, whatever the page does
    driver = login(live_server, DRIVER)
    for path in ("/console/f/devices", "/console/f/inbox", "/console/f/stock", "/console/f/audit"):
        status, body = api(live_server, "GET", path, token=driver)
        assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
        assert api(live_server, "GET", path)[0] == 401


def other_tablets(base: str, database_url: str) -> None:
    """A tablet whose clock runs 7 minutes ahead, and one that has not been heard of for three days."""
    driver2 = login(base, ("driver2", "driver2-lpg-2026"))
    ahead = (datetime.now(UTC) + timedelta(minutes=7)).isoformat(timespec="seconds")
    for device, client in (("tab-021", {"app_version": "2.4.0", "device_time": ahead}), ("tab-033", None)):
        change = {
            "client_temp_id": f"{device}-c",
            "op": "customer.create",
            "data": {"name": f"Kedai {device}", "address": "x"},
        }
        body: dict[str, Any] = {"device_id": device, "changes": [change], **({"client": client} if client else {})}
        status, answer = api(base, "POST", "/api/v1/sync/push", body, driver2)
        assert status == 200 and answer["results"][0]["status"] == "applied", answer
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(Device)
                .where(Device.device_id == "tab-033")
                .values(last_push_at=datetime.now(UTC) - timedelta(days=3))
            )
    finally:
        engine.dispose()


def test_an_admin_finds_the_refused_sale_fixes_stock_and_replays_it_once(
    live_server: str, browser: Browser, database_url: str
) -> None:
    base = live_server
    driver, admin = login(base, DRIVER), login(base, ADMIN)
    before = len(sales_of_25_cylinders(base, admin))
    other_tablets(base, database_url)
    sale = refused_sale_and_its_dependent(base, driver)

    page = browser.new_page(viewport=TABLET)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{base}/console/")
    photograph(page, "login")
    console_login(page, base, ADMIN)

    # Devices: tab-017 has two open rejections
    expect(page.locator("#devices-title")).to_be_visible()
    row = page.locator(f'#devices-table tr[data-device="{DEVICE}"]')
    expect(row).to_contain_text("driver1")
    expect(row.locator("td").nth(9)).to_have_text("2")
    page.locator("button[data-sort=open_rejections]").click()  # sort by open rejections
    expect(page.locator("#devices-table th[aria-sort='ascending']")).to_contain_text("Open")
    expect(page.locator('#devices-table tr.skewed[data-device="tab-021"]')).to_contain_text("skewed")
    expect(page.locator('#devices-table tr.stale[data-device="tab-033"]')).to_contain_text("stale")
    page.locator("button[data-sort=open_rejections]").click()  # again: descending, tab-017 first
    expect(page.locator("#devices-table tbody tr").first).to_have_attribute("data-device", DEVICE)
    photograph(page, "devices")

    # the device page: the refusal read as a person reads it
    page.locator(f'#devices-table tr[data-device="{DEVICE}"] a').click()
    expect(page.locator("#device-title")).to_have_text(f"Device {DEVICE}")
    expect(page.locator("#device-rejections")).to_contain_text("truck 2 has 20 full CYL50, the change asks for 25")
    photograph(page, "device")

    # the inbox: the cause, and the change that depends on it
    page.locator("#nav a", has_text="Rejection inbox").click()
    cause = page.locator(f'.rejection[data-temp="t-big"][data-device="{DEVICE}"]')
    expect(cause.locator(".reading")).to_have_text(
        "Not enough stock: truck 2 has 20 full CYL50, the change asks for 25."
    )
    expect(cause.locator(".dependents")).to_contain_text("t-print")
    dependent = page.locator('.rejection[data-temp="t-print"]')
    expect(dependent.locator(".reading")).to_contain_text("Depends on t-big, which was refused (insufficient_stock)")
    photograph(page, "inbox")

    # a dry run before the stock is there: both still refused
    page.get_by_label("Device", exact=True).select_option(DEVICE)
    page.get_by_label("Select all of this device's").check()
    page.get_by_role("button", name="Dry run the selected").click()
    expect(page.locator("#dry-title")).to_contain_text("0 would apply, 2 would still be refused")

    # support staff add the missing cylinders on the Stock page (an adjustment)
    page.locator("#nav a", has_text="Stock and conservation").click()
    form = page.locator("#adjust-form")
    form.get_by_label("Place").select_option("truck")
    form.get_by_label("Holder id").fill("2")
    form.get_by_label("Model").fill("CYL50")
    form.get_by_label("Full").fill("10")
    form.get_by_label("Reason").fill("stock count after the day: 10 full CYL50 were not booked")
    form.get_by_role("button", name="Record the adjustment").click()
    expect(page.locator("#adjust-outcome")).to_contain_text("adjustment #")
    expect(page.locator("#series-CYL50 tr.adjusted")).to_have_count(1)
    photograph(page, "stock")

    # dry run again: both would apply, side by side with why they were refused
    page.locator("#nav a", has_text="Rejection inbox").click()
    page.get_by_label("Device", exact=True).select_option(DEVICE)
    page.get_by_label("Select all of this device's").check()
    expect(page.locator('#inbox-form input[name="ids"]:checked')).to_have_count(2)
    page.get_by_role("button", name="Dry run the selected").click()
    expect(page.locator("#dry-title")).to_contain_text("2 would apply, 0 would still be refused")
    table = page.locator("#dry-run-result table")
    expect(table.locator("tr.result-applied")).to_have_count(2)
    expect(table).to_contain_text("Not enough stock")  # the left side: why it was refused
    photograph(page, "inbox-dry-run")
    assert len(sales_of_25_cylinders(base, admin)) == before, "a dry run wrote the sale"

    # apply: the inbox empties and shows who resolved them
    page.get_by_role("button", name="Apply these 2 now").click()
    expect(page.locator("#apply-outcome")).to_contain_text("t-big: applied")
    expect(page.locator("#inbox-empty")).to_be_visible()
    expect(page.locator("#resolved td.resolved-by", has_text="admin")).to_have_count(2)
    photograph(page, "inbox-applied")

    # the REST state: no open rejection, the sale once
    status, open_rejections = api(base, "GET", f"/api/v1/sync/rejections?device_id={DEVICE}&open=true", token=admin)
    assert status == 200 and open_rejections["count"] == 0, open_rejections
    assert len(sales_of_25_cylinders(base, admin)) == before + 1
    # the tablet sends its queue again: duplicates, still one sale
    again = api(base, "POST", "/api/v1/sync/push", {"device_id": DEVICE, "changes": [sale]}, driver)[1]
    assert again["results"][0]["status"] == "duplicate", again
    assert len(sales_of_25_cylinders(base, admin)) == before + 1

    # Audit: verification with progress, one entry's before/after (a customer's phone changed)
    status, customer = api(base, "GET", "/api/v1/customers/2/", token=admin)
    assert status == 200, customer
    changed = {"phone": "+6562223333", "base_version": customer["version"]}
    assert api(base, "PATCH", "/api/v1/customers/2/", changed, admin)[0] == 200
    page.locator("#nav a", has_text="Audit").click()
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("#verify-status")).to_contain_text("The chain is intact")
    photograph(page, "audit")
    page.get_by_label("Entity", exact=True).select_option("customer")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.locator("#audit-table tbody tr").first).to_contain_text("customer")
    page.locator("#audit-table tbody tr a").first.click()
    expect(page.locator("#entry-title")).to_contain_text("customer 2")
    expect(page.locator("#entry-diff tr.diff-changed", has_text="phone")).to_contain_text("+6562223333")
    photograph(page, "audit-entry")

    # Replay a queue file: a JSON export of the tablet's queue, dry run
    queue = ARTIFACTS / "tab-017-queue.json"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    queue.write_text(json.dumps({"device_id": DEVICE, "changes": queue_changes(sale)}))
    page.locator("#nav a", has_text="Replay a queue file").click()
    page.get_by_label("Device id", exact=True).fill(DEVICE)
    page.get_by_label("Queue file", exact=True).set_input_files(str(queue))
    page.get_by_role("button", name="Dry run", exact=True).click()
    expect(page.locator("#replay-status")).to_contain_text("Dry run, nothing written: 3 changes")
    expect(page.locator("#replay-summary")).to_contain_text("duplicate")
    expect(page.locator("#replay-progress")).to_have_attribute("value", "3")
    photograph(page, "replay")

    # the live feed: a change committed now shows up, filtered by entity
    page.locator("#nav a", has_text="Live feed").click()
    page.get_by_label("Entity", exact=True).select_option("customer")
    expect(page.locator("#feed-status")).to_contain_text("customer only")
    created = {
        "client_temp_id": "c-live",
        "op": "customer.create",
        "data": {"name": "Live Feed Kopitiam", "address": "1 Jalan Besar, Singapore"},
    }
    status, answer = api(base, "POST", "/api/v1/sync/push", {"device_id": DEVICE, "changes": [created]}, driver)
    assert answer["results"][0]["status"] == "applied", answer
    expect(page.locator("#feed-table tbody tr").first).to_contain_text("Live Feed Kopitiam", timeout=20_000)
    expect(page.locator("#feed-table tbody tr", has_text="transaction")).to_have_count(0)
    photograph(page, "feed")

    assert problems == [], problems  # no script error, no CSP violation


def queue_changes(sale: dict[str, Any]) -> list[dict[str, Any]]:
    """An exported queue: the replayed sale again (a duplicate), a new customer and a meter reading."""
    return [
        sale,
        {"client_temp_id": "q-cust", "op": "customer.create", "data": {"name": "Queue Customer", "address": "2 Jalan Besar"}},
        {"client_temp_id": "q-meter", "op": "meter_reading.create", "data": {"customer": 2, "reading": "1.00", "occurred_at": recent()}},
    ]  # fmt: skip


def test_a_large_msgpack_queue_replays_in_batches_with_progress(live_server: str, browser: Browser) -> None:
    base = live_server
    driver, admin = login(base, DRIVER), login(base, ADMIN)
    changes = [
        {"client_temp_id": f"big-{i}", "op": "customer.create", "data": {"name": f"Kedai {i}", "address": f"{i} Jalan"}}
        for i in range(1100)
    ]
    # the tablet's first change got through before it went offline: replayed, it is a duplicate
    assert api(base, "POST", "/api/v1/sync/push", {"device_id": "tab-big", "changes": changes[:1]}, driver)[0] == 200
    customers = api(base, "GET", "/api/v1/customers/?page_size=1", token=admin)[1]["count"]
    queue = ARTIFACTS / "tab-big-queue.msgpack"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    queue.write_bytes(msgpack.packb({"device_id": "tab-big", "changes": changes}))

    page = browser.new_page(viewport=TABLET)
    console_login(page, base, ADMIN)
    expect(page.locator("#devices-title")).to_be_visible()
    page.locator("#nav a", has_text="Replay a queue file").click()
    page.get_by_label("Device id", exact=True).fill("tab-big")
    page.get_by_label("Queue file", exact=True).set_input_files(str(queue))
    page.evaluate(
        """() => { window.seen = []; new MutationObserver(() => window.seen.push(
             document.getElementById('replay-status').textContent)).observe(
             document.getElementById('replay-status'), {childList: true, characterData: true, subtree: true}); }"""
    )
    page.get_by_role("button", name="Dry run", exact=True).click()
    expect(page.locator("#replay-status")).to_have_text("Dry run, nothing written: 1100 changes", timeout=60_000)
    expect(page.locator("#replay-progress")).to_have_attribute("max", "1100")
    expect(page.locator("#replay-progress")).to_have_attribute("value", "1100")
    seen = page.evaluate("() => window.seen")
    assert [s for s in seen if s.startswith("Dry run: ")] == [
        "Dry run: 500 of 1100 changes",
        "Dry run: 1000 of 1100 changes",
        "Dry run: 1100 of 1100 changes",
    ], seen
    summary = page.locator("#replay-summary tbody")
    expect(summary).to_contain_text("would apply1099")
    expect(summary).to_contain_text("duplicate1")
    assert api(base, "GET", "/api/v1/customers/?page_size=1", token=admin)[1]["count"] == customers
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page.locator("#replay-status")).to_have_text("Applied: 1100 changes", timeout=60_000)
    expect(summary).to_contain_text("applied1099")
    assert api(base, "GET", "/api/v1/customers/?page_size=1", token=admin)[1]["count"] == customers + 1099


def test_tokens_live_in_memory_and_the_access_token_is_refreshed(
    database_url: str, tmp_path: Path, browser: Browser
) -> None:
    """Access tokens of 6 seconds: the page refreshes (rotating the refresh token) before they expire and goes
    on working; nothing is kept in a cookie or in storage, so a reload asks for the login again."""
    with serving(database_url, tmp_path, LPG_ACCESS_TTL="6") as base:
        page = browser.new_page(viewport=TABLET)
        refreshes: list[str] = []
        page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith("/api/v1/auth/refresh/") else None)
        console_login(page, base, ADMIN)
        expect(page.locator("#devices-title")).to_be_visible()
        page.wait_for_timeout(8_000)  # past the first access token's life
        assert len(refreshes) >= 1, refreshes
        page.locator("#nav a", has_text="Stock and conservation").focus()  # by keyboard: focus, Enter
        page.keyboard.press("Enter")
        expect(page.locator("#stock-title")).to_be_visible()
        expect(page.locator("#stock-title")).to_be_focused()  # the new page's heading takes the focus
        expect(page.locator("#alert")).to_be_hidden()
        assert page.context.cookies() == []
        stored = page.evaluate(
            """() => [localStorage, sessionStorage].flatMap(store =>
                 Object.keys(store).map(key => [key, store.getItem(key)]))"""
        )
        # htmx notes the current path (no page is cached: historyCacheSize 0); no token, no business data
        assert all(key == "htmx-current-path-for-history" and value.startswith("/console/") for key, value in stored)
        page.reload()
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#nav")).to_be_hidden()
