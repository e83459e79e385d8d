"""One result per change, always, in order: a batch that names one `client_temp_id` several times answers
each change. A repeat of a change applied earlier (in this batch or a previous one) is `duplicate` when its
content is the same and `idempotency_key_reuse` when it is not; a repeat of a refused change is evaluated
again. With `atomic: true` and a refusal, every change answers `rejected` and nothing is written.

The Hypothesis fuzz of pushes found a batch of 4 changes sharing one key that answered 1 result."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient

from domain.catalog.models import Customer
from domain.db import Database
from reconcile.models import AppliedChange

# A few contents: two valid customers, one change that is always refused (missing address).
CONTENTS = {
    "a": {"op": "customer.create", "data": {"name": "Repeat Kopitiam A", "address": "1 Repeat Rd"}},
    "b": {"op": "customer.create", "data": {"name": "Repeat Kopitiam B", "address": "2 Repeat Rd"}},
    "bad": {"op": "customer.create", "data": {"name": "No Address"}},
}

changes = st.lists(
    st.tuples(st.sampled_from(["k-1", "k-2"]), st.sampled_from(sorted(CONTENTS))), min_size=1, max_size=7
)


def counts(db: Database) -> tuple[int, int]:
    def read(s: Any) -> tuple[int, int]:
        customers = s.execute(select(func.count()).select_from(Customer)).scalar_one()
        applied = s.execute(select(func.count()).select_from(AppliedChange)).scalar_one()
        return customers, applied

    return db.read(read)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=changes, second=changes, atomic=st.booleans())
def test_every_change_of_a_batch_has_its_result_in_order(
    client: TestClient, driver_headers: dict[str, str], demo: Database, first: Any, second: Any, atomic: bool
) -> None:
    # A fresh device per example, so its keys start unused. Not named by `id()` of the examples' lists: CPython
    # reuses the addresses of freed objects, and a later example then found an earlier one's keys applied.
    device = f"tab-rep-{uuid.uuid4().hex[:16]}"
    applied: dict[str, str] = {}  # key -> content of the change applied under it (kept forever)
    for batch in (first, second):
        before = counts(demo)
        body = {
            "device_id": device,
            "atomic": atomic,
            "changes": [{"client_temp_id": key, **CONTENTS[content]} for key, content in batch],
        }
        response = client.post("/api/v1/sync/push", json=body, headers=driver_headers)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["client_temp_id"] for r in results] == [key for key, _ in batch]
        after = counts(demo)

        if atomic and any(r["status"] == "rejected" for r in results):
            # Everything rolled back: every result is a refusal, the culprit's own or `rolled_back`.
            assert after == before
            for r in results:
                assert r["status"] in ("rejected", "duplicate"), r
                if r["status"] == "duplicate":  # only a repeat of a change applied by an earlier batch
                    assert r["client_temp_id"] in applied
            assert any(r["status"] == "rejected" and r["error"]["code"] != "rolled_back" for r in results)
            continue

        expected_new = dict(applied)
        for (key, content), r in zip(batch, results, strict=True):
            if key in expected_new:
                if expected_new[key] == content:
                    assert r["status"] == "duplicate", (batch, results)
                else:
                    assert r["status"] == "rejected", (batch, results)
                    assert r["error"]["code"] == "idempotency_key_reuse", r
            elif content == "bad":
                assert r["status"] == "rejected" and r["error"]["code"] == "validation_error", r
            else:
                assert r["status"] == "applied", (batch, results)
                expected_new[key] = content
        new = len(expected_new) - len(applied)
        assert after == (before[0] + new, before[1] + new)
        applied = expected_new
