"""Random and malformed envelopes, in both encodings: a 4xx in the error shape, or a 200 with a result per
change; never a 5xx, and never a partial write (what was refused left nothing behind)."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient

from domain.db import Database
from domain.logistics.models import DepotStock, SiteStock, TruckStock
from reconcile.models import AppliedChange
from reconcile.ops import OPS

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=12),
    st.sampled_from(["CYL9", "CYL12.7", "INSTALL", "full_deliver", "collection", "12.70", "-1", "t-1", "cash"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "name",
        "address",
        "customer",
        "truck",
        "depot",
        "id",
        "base_version",
        "items",
        "deliveries",
        "services",
        "confirm",
        "occurred_at",
        "reading",
        "meter",
        "amount",
        "method",
        "invoice",
        "transaction",
        "qty",
        "equipment",
        "price",
        "phone",
    ]
)
data = st.dictionaries(field_names, values, max_size=6)
change = st.fixed_dictionaries(
    {
        "client_temp_id": st.one_of(st.sampled_from(["t-1", "t-2", "t-3"]), st.text(max_size=6)),
        "op": st.one_of(st.sampled_from(sorted(OPS)), st.text(max_size=10)),
        "data": st.one_of(data, values),
    },
)
envelope = st.one_of(
    st.fixed_dictionaries(
        {"device_id": st.sampled_from(["tab-f", "tab-g"]), "changes": st.lists(change, max_size=6)},
        optional={"atomic": st.one_of(st.booleans(), values), "client": values},
    ),
    st.dictionaries(st.sampled_from(["device_id", "changes", "atomic", "junk"]), values, max_size=4),
    values,
)


def totals(db: Database) -> tuple[int, int]:
    def read(s: Any) -> tuple[int, int]:
        stock = (
            sum(
                s.execute(select(func.coalesce(func.sum(m.full + m.empty), 0))).scalar_one()
                for m in (DepotStock, TruckStock)
            )
            + s.execute(select(func.coalesce(func.sum(SiteStock.on_site), 0))).scalar_one()
        )
        return int(stock), s.execute(select(func.count()).select_from(AppliedChange)).scalar_one()

    return db.read(read)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=envelope, packed=st.booleans())
def test_fuzzed_pushes_never_fail_the_server(
    client: TestClient, driver_headers: dict[str, str], demo: Database, body: Any, packed: bool
) -> None:
    stock_before, applied_before = totals(demo)
    if packed:
        raw, kind = msgpack.packb(body), "application/msgpack"
    else:
        raw, kind = orjson.dumps(body), "application/json"
    response = client.post(
        "/api/v1/sync/push", content=raw, headers={**driver_headers, "Content-Type": kind, "Accept": "application/json"}
    )
    assert response.status_code < 500, response.text
    payload = response.json()
    stock_after, applied_after = totals(demo)
    assert stock_after == stock_before  # no op creates or destroys cylinders
    if response.status_code != 200:
        assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "details"}
        assert applied_after == applied_before
        return
    assert len(payload["results"]) == len(body["changes"])
    applied_now = sum(1 for r in payload["results"] if r["status"] == "applied")
    assert applied_after == applied_before + applied_now
    for result in payload["results"]:
        assert result["status"] in ("applied", "duplicate", "rejected")
        if result["status"] == "rejected":
            assert set(result["error"]) == {"code", "message", "details"}


def test_garbage_bytes_are_malformed(client: TestClient, driver_headers: dict[str, str]) -> None:
    for raw, kind in (
        (b"\xc1\xc1", "application/msgpack"),
        (b"\xff", "application/json"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "application/json"),
    ):
        response = client.post("/api/v1/sync/push", content=raw, headers={**driver_headers, "Content-Type": kind})
        assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_body"
