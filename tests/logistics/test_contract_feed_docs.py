"""The change feed's `doc` is exactly the REST detail representation, for every catalog and stock record."""

from __future__ import annotations

import orjson
from sqlalchemy import select

from domain.feed.models import FeedEntry

DETAIL = {
    "equipment": "/api/v1/equipment/{}/",
    "depot": "/api/v1/depots/{}/",
    "truck": "/api/v1/trucks/{}/",
    "service": "/api/v1/services/{}/",
    "customer": "/api/v1/customers/{}/",
    "distribution": "/api/v1/distributions/{}/",
}


def test_every_feed_doc_equals_its_rest_representation(demo, client, admin_headers) -> None:
    # some traffic first: a confirmed distribution, an adjustment at a site, a customer with prices
    client.post(
        "/api/v1/distributions/",
        json={
            "depot": 2,
            "truck": 3,
            "confirm": True,
            "items": [{"equipment": "CYL14", "movement_type": "collection", "qty": 9}],
        },
        headers=admin_headers,
    )
    client.post(
        "/api/v1/stock/adjustments/",
        json={
            "place": "site",
            "customer": 5,
            "equipment": "CYL9",
            "on_site_delta": 2,
            "reason": "installed before go-live",
        },
        headers=admin_headers,
    )
    client.patch(
        "/api/v1/customers/4/",
        json={"kg_rate": "2.75", "prices": {"equipment": {"CYL9": "22.00"}}},
        headers=admin_headers,
    )
    stock = client.get("/api/v1/stock/", params={"page_size": 500}, headers=admin_headers).json()["results"]
    stock_by_key = {(f"{row['place']}_stock", row["id"]): row for row in stock}
    entries = demo.read(lambda s: s.scalars(select(FeedEntry).order_by(FeedEntry.seq)).all())
    checked = set()
    for entry in entries:
        doc = orjson.loads(entry.doc)
        if entry.entity in DETAIL:
            rest = client.get(DETAIL[entry.entity].format(entry.entity_id), headers=admin_headers).json()
        elif entry.entity in ("depot_stock", "truck_stock", "site_stock"):
            rest = stock_by_key[(entry.entity, entry.entity_id)]
        else:
            continue
        assert doc == rest, (entry.entity, entry.entity_id)
        assert entry.version == rest["version"]
        checked.add(entry.entity)
    assert checked == set(DETAIL) | {"depot_stock", "truck_stock", "site_stock"}
