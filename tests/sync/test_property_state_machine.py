"""Several tablets and the back office, driven through the HTTP API in-process (Starlette TestClient).

Tablets edit offline (new customers, customer edits, sales with deliveries and meter readings, confirms,
cancels and payments of their own sales) into a queue, and push random sub-batches of it: in order, in a
shuffled order, sent twice, or with the answer lost (the tablet sends the same changes again later). The
back office creates, confirms and cancels distributions, confirms and cancels tablets' drafts and records
payments. Tablets pull with a server-side checkpoint, in random page sizes.

After every step:

- cylinders are conserved per equipment model (depot + truck + site), and no depot or truck is negative;
- each (device, client_temp_id) was applied at most once: one idempotency record, one created record;
- id maps are stable: a temp id maps to the same permanent id in every answer, forever;
- document numbers (transactions, invoices, distributions) are unique and gap-free per series;
- the audit chain verifies.

After a pull to the end, the tablet holds exactly what a fresh pull of its scope from seq 0 gives.

`LPG_STATE_MACHINE_EXAMPLES` sets the number of examples (default 300 on SQLite, 100 on MariaDB).
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from starlette.testclient import TestClient

from domain.audit.verify import verify_chain
from domain.catalog.models import Customer
from domain.db import Database
from domain.invoicing.models import Invoice, Payment
from domain.logistics.models import Distribution
from domain.sales.models import Transaction
from reconcile.models import AppliedChange
from tests.conftest import ENGINE, bearer
from tests.logistics.test_property_conservation import database_factory, per_model, read_stock

DEFAULT_EXAMPLES = 300 if ENGINE == "sqlite" else 100
EXAMPLES = int(os.environ.get("LPG_STATE_MACHINE_EXAMPLES", DEFAULT_EXAMPLES))
STEPS = int(os.environ.get("LPG_STATE_MACHINE_STEPS", 12))

PUSH, CHANGES = "/api/v1/sync/push", "/api/v1/sync/changes"
# device, user id, truck: two tablets of driver1 (temp ids are per device), one of driver2.
TABLETS = (("tab-a", 2, 1), ("tab-b", 3, 2), ("tab-c", 2, 1))
DEMO_CUSTOMERS = (1, 2, 3, 4, 5)
CODES = ("CYL9", "CYL12.7", "CYL14", "CYL50")
STATISTICS: Counter[str] = Counter()  # what the examples did, printed at the end (`pytest -s`)
NUMBER = re.compile(r"^([A-Z]+-\d{4})-(\d{6})$")


DELIVERY = st.tuples(
    st.integers(0, 3), st.sampled_from(["full_deliver", "empty_return", "half_return"]), st.integers(1, 8)
)
EDIT = st.one_of(
    st.tuples(st.just("new_customer"), st.text("abcdefgh ", min_size=1, max_size=8)),
    st.tuples(st.just("edit_customer"), st.integers(0, 50), st.integers(1000, 9999)),
    st.tuples(st.just("sale"), st.integers(0, 50), st.lists(DELIVERY, max_size=3), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("act_on_sale"), st.integers(0, 50), st.sampled_from(["confirm", "cancel", "pay"])),
)


def occurred(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


class Tablet:
    def __init__(self, device: str, user_id: int, truck: int) -> None:
        self.device, self.user_id, self.truck = device, user_id, truck
        self.queue: list[dict[str, Any]] = []  # changes not yet known to be settled, in the order made
        self.counter = 0
        self.customers: list[str] = []  # temp ids of customers this tablet created
        self.sales: dict[str, bool] = {}  # temp id -> confirmed (as queued)
        self.last_batch: list[dict[str, Any]] | None = None
        self.store: dict[tuple[str, int], dict[str, Any]] = {}  # pulled records
        self.reading = 0
        self.pulled = -1  # the server's write count at this tablet's last pull

    def temp_id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.device}-{kind}-{self.counter}"


class SyncMachine(RuleBasedStateMachine):
    new_db: Callable[[], Database]

    @initialize()
    def start(self) -> None:
        from server import create_app

        self.db = type(self).new_db()
        settings_ = self.db.settings
        self.client = TestClient(create_app(settings_, self.db), base_url="http://127.0.0.1")
        self.client.__enter__()
        self.headers = {uid: bearer(settings_, uid) for uid in (1, 2, 3)}
        self.tablets = [Tablet(*t) for t in TABLETS]
        stock = read_stock(self.db)
        self.totals = per_model(stock)
        self.customers0 = self.count(Customer)
        self.ids: dict[tuple[str, str], tuple[str, int]] = {}  # (device, temp id) -> (entity, permanent id)
        self.created: Counter[str] = Counter()  # applied creates per entity, from the answers
        self.rest_payments = 0
        self.pending_distributions: list[int] = []
        self.steps: Counter[str] = Counter()
        self.writes = 0  # steps that wrote to the server
        self.dirty = False

    def teardown(self) -> None:
        if hasattr(self, "steps"):
            STATISTICS.update(self.steps)
            STATISTICS["examples"] += 1
        if hasattr(self, "client"):
            self.client.__exit__(None, None, None)
            self.db.dispose()

    # -- helpers ---------------------------------------------------------------------------------------

    def count(self, model: Any) -> int:
        return int(self.db.read(lambda s: s.execute(select(func.count()).select_from(model)).scalar_one()))

    def ok(self, response: Any, *allowed: int) -> Any:
        assert response.status_code < 500, response.text
        assert response.status_code in (allowed or (200, 201)) or response.status_code in (400, 404, 409), (
            response.status_code,
            response.text,
        )
        return response.json() if response.content else None

    def send(self, tablet: Tablet, batch: list[dict[str, Any]]) -> dict[str, Any]:
        self.dirty = True
        self.writes += 1
        response = self.client.post(
            PUSH, json={"device_id": tablet.device, "changes": batch}, headers=self.headers[tablet.user_id]
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert [r["client_temp_id"] for r in body["results"]] == [c["client_temp_id"] for c in batch]
        for result in body["results"]:
            key = (tablet.device, result["client_temp_id"])
            self.steps[result["status"] if result["status"] != "rejected" else result["error"]["code"]] += 1
            if result["status"] in ("applied", "duplicate"):
                mapped = (result["entity"], result["id"])
                if key in self.ids:
                    assert self.ids[key] == mapped, f"{key} mapped to {self.ids[key]}, now to {mapped}"
                else:
                    assert result["status"] == "applied", f"{key}: a duplicate of nothing"
                    self.ids[key] = mapped
                    op = next(c["op"] for c in batch if c["client_temp_id"] == result["client_temp_id"])
                    if op.endswith(".create") or op == "invoice.mark_paid":
                        self.created[op] += 1
                assert body["id_map"][result["client_temp_id"]]["id"] == result["id"]
            else:
                assert result["client_temp_id"] not in body["id_map"]
                assert key not in self.ids or result["error"]["code"] == "idempotency_key_reuse", result
        tablet.last_batch = batch
        return body

    @staticmethod
    def settle(tablet: Tablet, body: dict[str, Any]) -> None:
        """The tablet read the answer: applied and duplicate changes leave the queue, and so do refusals
        other than a reference to a record not pushed yet (that one is sent again after it)."""
        done = {
            r["client_temp_id"]
            for r in body["results"]
            if r["status"] != "rejected" or r["error"]["code"] not in ("unknown_reference",)
        }
        tablet.queue = [c for c in tablet.queue if c["client_temp_id"] not in done]

    def customer_ref(self, tablet: Tablet, pick: int) -> int | str:
        choices: list[int | str] = [*DEMO_CUSTOMERS, *tablet.customers]
        return choices[pick % len(choices)]

    def permanent(self, tablet: Tablet, temp_id: str) -> int | None:
        found = self.ids.get((tablet.device, temp_id))
        return found[1] if found else None

    # -- offline edits ----------------------------------------------------------------------------------

    @rule(
        t=st.integers(0, 2),
        edits=st.lists(EDIT, min_size=1, max_size=4),
        then=st.sampled_from(["stay offline", "push", "push, answer lost"]),
        size=st.integers(1, 8),
    )
    def work_offline(self, t: int, edits: list[tuple[Any, ...]], then: str, size: int) -> None:
        """A few edits on one tablet, queued; then maybe the tablet finds a network and pushes the first
        `size` changes of its queue (and maybe never hears the answer)."""
        tablet = self.tablets[t]
        for kind, *args in edits:
            getattr(self, kind)(tablet, *args)
        if then != "stay offline":
            self.push_queue(tablet, size, then.endswith("lost"))

    def new_customer(self, tablet: Tablet, name: str) -> None:
        temp = tablet.temp_id("cust")
        data = {"name": f"Shop {name.strip() or 'x'}", "address": f"{tablet.counter} Jurong Port Rd\n#01-01"}
        tablet.queue.append({"client_temp_id": temp, "op": "customer.create", "data": data})
        tablet.customers.append(temp)

    def edit_customer(self, tablet: Tablet, pick: int, phone: int) -> None:
        ref = self.customer_ref(tablet, pick)
        data = {"id": ref, "phone": f"+65 6{phone}"}
        tablet.queue.append({"client_temp_id": tablet.temp_id("edit"), "op": "customer.update", "data": data})

    def sale(self, tablet: Tablet, pick: int, lines: list[tuple[int, str, int]], read: int, confirm: bool) -> None:
        customer = self.customer_ref(tablet, pick)
        data: dict[str, Any] = {
            "customer": customer,
            "truck": tablet.truck,
            "occurred_at": occurred(60 - tablet.counter % 60),
            "confirm": confirm,
            "deliveries": [
                {"equipment": CODES[e], "kind": k, "qty": q, **({"remaining_kg": "1.50"} if k == "half_return" else {})}
                for e, k, q in lines
            ],
        }
        if isinstance(customer, int) and (read or not lines):
            tablet.reading += read
            data["meter"] = {"reading": f"{tablet.reading * 10 + customer}.00"}
        elif not lines:
            data["services"] = [{"code": "INSTALL"}]
        temp = tablet.temp_id("sale")
        tablet.queue.append({"client_temp_id": temp, "op": "transaction.create", "data": data})
        tablet.sales[temp] = confirm

    def act_on_sale(self, tablet: Tablet, pick: int, action: str) -> None:
        if not tablet.sales:
            return
        temp = sorted(tablet.sales)[pick % len(tablet.sales)]
        if action == "pay":
            data: dict[str, Any] = {"transaction": temp, "amount": "5.00", "method": "cash"}
            op = "invoice.mark_paid"
        else:
            data, op = {"id": temp}, f"transaction.{action}"
        tablet.queue.append({"client_temp_id": tablet.temp_id(action), "op": op, "data": data})

    # -- pushes -----------------------------------------------------------------------------------------

    @precondition(lambda self: any(t.queue for t in self.tablets))
    @rule(t=st.integers(0, 2), size=st.integers(1, 8), lose_answer=st.booleans())
    def push(self, t: int, size: int, lose_answer: bool) -> None:
        self.push_queue(self.tablets[t], size, lose_answer)

    def push_queue(self, tablet: Tablet, size: int, lose_answer: bool) -> None:
        if not tablet.queue:
            return
        body = self.send(tablet, tablet.queue[:size])
        if not lose_answer:
            self.settle(tablet, body)
        self.steps["push" + (" (answer lost)" if lose_answer else "")] += 1

    @precondition(lambda self: any(len(t.queue) > 1 for t in self.tablets))
    @rule(t=st.integers(0, 2), order=st.permutations(range(6)), size=st.integers(2, 6))
    def push_reordered(self, t: int, order: list[int], size: int) -> None:
        tablet = self.tablets[t]
        chosen = [i for i in order if i < min(size, len(tablet.queue))]
        if len(chosen) < 2:
            return
        body = self.send(tablet, [tablet.queue[i] for i in chosen])
        self.settle(tablet, body)
        self.steps["push reordered"] += 1

    @precondition(lambda self: any(t.last_batch for t in self.tablets))
    @rule(t=st.integers(0, 2))
    def push_again(self, t: int) -> None:
        """The same batch once more (a retry after a timeout): every change is a duplicate or refused again."""
        tablet = self.tablets[t]
        if not tablet.last_batch:
            return
        before = dict(self.ids)
        body = self.send(tablet, tablet.last_batch)
        for result in body["results"]:
            key = (tablet.device, result["client_temp_id"])
            if key in before:
                assert result["status"] == "duplicate", result
        self.settle(tablet, body)
        self.steps["push again"] += 1

    # -- the back office --------------------------------------------------------------------------------

    @rule(
        depot=st.sampled_from([1, 2]),
        truck=st.sampled_from([1, 2]),
        items=st.lists(
            st.tuples(st.integers(1, 4), st.sampled_from(["collection", "empty_return"]), st.integers(1, 30)),
            min_size=1,
            max_size=2,
        ),
        confirm=st.booleans(),
    )
    def distribution(self, depot: int, truck: int, items: list[tuple[int, str, int]], confirm: bool) -> None:
        self.dirty = True
        self.writes += 1
        body = {
            "depot": depot,
            "truck": truck,
            "confirm": confirm,
            "items": [{"equipment": e, "movement_type": m, "qty": q} for e, m, q in items],
        }
        response = self.client.post("/api/v1/distributions/", json=body, headers=self.headers[1])
        answer = self.ok(response)
        self.steps[f"office distribution {response.status_code}"] += 1
        if response.status_code == 201 and not confirm:
            self.pending_distributions.append(answer["id"])

    @precondition(lambda self: bool(self.pending_distributions))
    @rule(pick=st.integers(0, 50), action=st.sampled_from(["confirm", "cancel"]))
    def settle_distribution(self, pick: int, action: str) -> None:
        self.dirty = True
        self.writes += 1
        d_id = self.pending_distributions[pick % len(self.pending_distributions)]
        response = self.client.post(f"/api/v1/distributions/{d_id}/{action}/", headers=self.headers[1])
        self.ok(response)
        self.steps[f"office distribution {action} {response.status_code}"] += 1
        if response.status_code == 200:
            self.pending_distributions.remove(d_id)

    @precondition(lambda self: bool(self.ids))
    @rule(pick=st.integers(0, 200), action=st.sampled_from(["confirm", "cancel", "pay"]))
    def office_acts_on_a_sale(self, pick: int, action: str) -> None:
        self.dirty = True
        self.writes += 1
        sales = sorted(v[1] for v in self.ids.values() if v[0] == "transaction")
        if not sales:
            return
        t_id = sales[pick % len(sales)]
        if action == "pay":
            invoice = self.db.read(
                lambda s: s.execute(select(Invoice.id).where(Invoice.transaction_id == t_id)).scalar_one_or_none()
            )
            if invoice is None:
                return
            response = self.client.post(
                f"/api/v1/invoices/{invoice}/mark-paid/",
                json={"amount": "2.50", "method": "paynow"},
                headers=self.headers[1],
            )
            self.ok(response)
            self.rest_payments += response.status_code == 200
            self.steps[f"office payment {response.status_code}"] += 1
            return
        response = self.client.post(f"/api/v1/transactions/{t_id}/{action}/", headers=self.headers[1])
        self.ok(response)
        self.steps[f"office sale {action} {response.status_code}"] += 1

    # -- pulls --------------------------------------------------------------------------------------------

    @precondition(lambda self: any(t.pulled < self.writes for t in self.tablets))
    @rule(t=st.integers(0, 2), limit=st.integers(1, 40))
    def pull(self, t: int, limit: int) -> None:
        """Pull from the tablet's checkpoint to the end, page by page, saving the checkpoint after each page;
        then the tablet holds exactly what a fresh pull of its scope gives."""
        tablet = min(self.tablets[t:] + self.tablets[:t], key=lambda tab: tab.pulled)  # one behind, from t on
        tablet.pulled = self.writes
        headers = self.headers[tablet.user_id]
        checkpoint = f"/api/v1/sync/checkpoints/{tablet.device}"
        got = self.client.get(checkpoint, headers=headers)
        since = got.json()["seq"] if got.status_code == 200 else 0
        assert got.status_code in (200, 404), got.text
        while True:
            page = self.client.get(CHANGES, params={"since": since, "limit": limit}, headers=headers)
            assert page.status_code == 200, page.text
            body = page.json()
            apply_page(tablet.store, body["results"])
            assert body["last_seq"] >= since
            since = body["last_seq"]
            assert self.client.put(checkpoint, json={"seq": since}, headers=headers).status_code == 200
            if body["pending"] == 0:
                break
            assert body["results"], "a page is never empty while changes are pending"
        fresh: dict[tuple[str, int], dict[str, Any]] = {}
        everything = self.client.get(CHANGES, params={"since": 0, "limit": 10000}, headers=headers).json()
        assert everything["pending"] == 0
        apply_page(fresh, everything["results"])
        assert tablet.store == fresh, "a tablet that pulled to the end differs from its scope's state"
        # ... and that state is the database's: every customer, and this driver's own sales, at their versions.
        held = {(e, i): v["version"] for (e, i), v in tablet.store.items() if e in ("customer", "transaction")}
        assert held == self.db.read(lambda s: server_versions(s, tablet.user_id))
        self.steps["pull"] += 1

    # -- after every step ----------------------------------------------------------------------------------

    @invariant()
    def books_exact(self) -> None:
        """Checked after every step that reached the server (an offline edit changes nothing there)."""
        if not getattr(self, "dirty", False):
            return
        self.cylinders_conserved()
        self.applied_once_with_stable_ids()
        self.numbers_unique_and_gap_free()
        self.audit_chain_verifies()
        self.dirty = False

    def cylinders_conserved(self) -> None:
        stock = read_stock(self.db)
        assert {e: n for e, n in per_model(stock).items() if n} == {e: n for e, n in self.totals.items() if n}
        negative = {k: v for k, v in stock.items() if k[0] != "site" and v < 0}
        assert not negative, negative

    def applied_once_with_stable_ids(self) -> None:
        rows = self.db.read(
            lambda s: s.execute(
                select(AppliedChange.device_id, AppliedChange.client_temp_id, AppliedChange.entity_id)
            ).all()
        )
        keys = Counter((r.device_id, r.client_temp_id) for r in rows)
        assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
        for r in rows:  # every applied change the server holds maps as the answers said (lost ones included)
            key = (r.device_id, r.client_temp_id)
            assert key in self.ids and self.ids[key][1] == r.entity_id, (key, self.ids.get(key), r.entity_id)
        assert len(rows) == len(self.ids)
        assert self.count(Customer) == self.customers0 + self.created["customer.create"]
        assert self.count(Transaction) == self.created["transaction.create"]
        assert self.count(Payment) == self.created["invoice.mark_paid"] + self.rest_payments

    def numbers_unique_and_gap_free(self) -> None:
        for model in (Transaction, Invoice, Distribution):
            numbers = self.db.read(
                lambda s, m=model: list(s.scalars(select(m.number).where(m.number.is_not(None))))  # type: ignore[attr-defined]
            )
            assert len(numbers) == len(set(numbers)), numbers
            series: defaultdict[str, list[int]] = defaultdict(list)
            for number in numbers:
                match = NUMBER.match(number)
                assert match, number
                series[match.group(1)].append(int(match.group(2)))
            for prefix, seqs in series.items():
                assert sorted(seqs) == list(range(1, len(seqs) + 1)), (prefix, sorted(seqs))

    def audit_chain_verifies(self) -> None:
        verdict = verify_chain(self.db)
        assert verdict.ok, verdict


def server_versions(session: Any, driver_id: int) -> dict[tuple[str, int], int]:
    customers = session.execute(select(Customer.id, Customer.version)).all()
    sales = session.execute(select(Transaction.id, Transaction.version).where(Transaction.driver_id == driver_id)).all()
    return {("customer", i): v for i, v in customers} | {("transaction", i): v for i, v in sales}


def apply_page(store: dict[tuple[str, int], dict[str, Any]], results: list[dict[str, Any]]) -> None:
    for row in results:
        key = (row["entity"], row["id"])
        if row.get("deleted"):
            store.pop(key, None)
        else:
            store[key] = {"version": row["version"], "last_modified": row["last_modified"], "doc": row["doc"]}


def test_tablets_and_back_office_keep_the_books_exact(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    factory = database_factory(request, tmp_path)

    class Machine(SyncMachine):
        new_db = staticmethod(factory)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
    print(f"\nstate machine ({ENGINE}): " + ", ".join(f"{k} {v}" for k, v in sorted(STATISTICS.items())))
