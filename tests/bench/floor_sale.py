"""The raw floor of a 1-change confirmed sale: the rows our push writes for it, by bare PyMySQL, in 4 round trips.

What a push of one confirmed sale (one full cylinder delivered, one delivery fee) writes: the transaction and
its two lines, the invoice and its two lines, the truck's and the site's stock rows, the idempotency record,
the device row, four feed rows (the two stock rows, the invoice, the transaction, upserted by entity) and two
chained audit entries, the four counters (TRX and INV numbers, audit, feed). Documents and audit contexts are
built here with orjson at the sizes ours have (~0.3-1 KB each); audit hashes are SHA-256 over the previous
head, as ours.

The fewest round trips a client of the text protocol can manage (multi-statement texts, one per trip):

1. the pusher, the idempotency lookup and the sale's catalog rows with its prices (three SELECTs);
2. the site's and the truck's stock rows locked, in the fixed order (two `SELECT ... FOR UPDATE`);
3. the four counters locked late in one sorted statement, and the transaction and invoice inserted with
   their numbers, returning their ids and the counters;
4. every other write and COMMIT.

Our push takes 4 round trips for the same sale too (see docs/write-path.md). Each device sells from its own
truck to its own customer, as in the fleet row of the benchmark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

# Round trips of our own 1-change confirmed sale on MariaDB, for the table's label: the statement budget test
# (tests/sync/test_integration_push_statements.py) checks it against the count it pins.
OUR_SALE_TRIPS = 4


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def floor_sale_setup(cur: Any, pairs: list[tuple[int, int]], now: datetime) -> None:
    """Each pair's site stock row exists (our first sale to a site creates it; every later one finds it), and
    this year's number counters do (our first sale of a year creates them)."""
    for name in (f"TRX-{now.year}", f"INV-{now.year}"):
        cur.execute("INSERT IGNORE INTO counters (name, value) VALUES (%s, 0)", (name,))
    cur.execute("SELECT id FROM equipment WHERE code = 'CYL12.7'")
    (equipment,) = cur.fetchone()
    for _truck, customer in pairs:
        cur.execute(
            "INSERT IGNORE INTO site_stock (customer_id, equipment_id, on_site, version, last_modified)"
            " VALUES (%s, %s, 0, 1, %s)",
            (customer, equipment, now),
        )


def floor_sale_push(pairs: list[tuple[int, int]]) -> Callable[[Any, int, int], None]:
    """push(conn, client, i): one confirmed sale of device `floor-<client>` (a connection opened with
    CLIENT.MULTI_STATEMENTS, READ COMMITTED), its truck and customer `pairs[client]`."""

    def results(cur: Any) -> list[list[tuple[Any, ...]]]:
        sets = [list(cur.fetchall())]
        while cur.nextset():
            sets.append(list(cur.fetchall()))
        return sets

    def push(conn: Any, client: int, i: int) -> None:
        truck, customer = pairs[client % len(pairs)]
        device, tag = f"floor-{client}", f"floor-sale-{client}-{i}"
        now = datetime.now(UTC).replace(tzinfo=None)
        year = now.year
        cur = conn.cursor()
        # 1. who pushes, what this device pushed before, the catalog rows and prices
        cur.execute(
            "SELECT id, role, active FROM users WHERE id = 2;"
            " SELECT client_temp_id, fingerprint, result FROM sync_applied WHERE device_id = %s AND client_temp_id IN (%s);"
            " SELECT c.id, c.name, c.address, c.email, e.id, e.unit_price, s.id, s.price, p.equipment_id, p.service_id,"
            " p.price FROM customers c JOIN equipment e ON e.code = 'CYL12.7' JOIN services s ON s.code = 'DELIVERY'"
            " JOIN trucks t ON t.id = %s LEFT JOIN customer_prices p ON p.customer_id = c.id"
            " AND (p.equipment_id = e.id OR p.service_id = s.id) WHERE c.id = %s",
            (device, tag, truck, customer),
        )
        _user, _known, catalog = results(cur)
        _cid, name, address, email, equipment, unit_price, service, fee = catalog[0][:8]
        for row in catalog:  # the customer's own prices, if any
            if row[8] == equipment and row[10] is not None:
                unit_price = row[10]
            if row[9] == service and row[10] is not None:
                fee = row[10]
        # 2. the stock rows, in the fixed order (site before truck)
        cur.execute(
            "SELECT id, on_site, version FROM site_stock WHERE customer_id = %s AND equipment_id = %s FOR UPDATE;"
            " SELECT id, full, empty, version FROM truck_stock WHERE truck_id = %s AND equipment_id = %s FOR UPDATE",
            (customer, equipment, truck, equipment),
        )
        sites, trucks = results(cur)
        site_id, on_site, site_version = sites[0]
        truck_id, full, empty, truck_version = trucks[0]
        if full < 1:
            raise RuntimeError("floor: the truck is empty")
        subtotal = unit_price + fee
        gst = (subtotal * 9 / 100).quantize(subtotal)
        total = subtotal + gst
        # 3. the counters, late and sorted, then the two numbered rows
        trx_name, inv_name = f"TRX-{year}", f"INV-{year}"
        cur.execute(
            "SELECT name, value, head FROM counters WHERE name IN (%s, %s, 'audit', 'feed') ORDER BY name FOR UPDATE;"
            " SET @trx = (SELECT value + 1 FROM counters WHERE name = %s), @inv = (SELECT value + 1 FROM counters"
            " WHERE name = %s);"
            " INSERT INTO transactions (number, customer_id, truck_id, driver_id, status, occurred_at, created_at,"
            " confirmed_at, subtotal, gst, total, device_id, version, last_modified) VALUES"
            " (CONCAT(%s, '-', LPAD(@trx, 6, '0')), %s, %s, 2, 'confirmed', %s, %s, %s, %s, %s, %s, %s, 1, %s);"
            " SET @t = LAST_INSERT_ID();"
            " INSERT INTO invoices (number, transaction_id, customer_id, driver_id, status, issued_at, customer_name,"
            " customer_address, customer_email, subtotal, gst_rate, gst, total, amount_paid, version, last_modified)"
            " VALUES (CONCAT(%s, '-', LPAD(@inv, 6, '0')), @t, %s, 2, 'generated', %s, %s, %s, %s, %s, 0.09, %s, %s,"
            " 0, 1, %s);"
            " SELECT @t, LAST_INSERT_ID()",
            (
                inv_name, trx_name, trx_name, inv_name,
                trx_name, customer, truck, now, now, now, subtotal, gst, total, device, now,
                inv_name, customer, now, name, address, email, subtotal, gst, total, now,
            ),
        )  # fmt: skip
        sets = results(cur)
        counters = {row[0]: (row[1], row[2]) for row in sets[0]}
        trx_id, invoice_id = sets[-1][0]
        trx_no = f"{trx_name}-{counters[trx_name][0] + 1:06d}"
        inv_no = f"{inv_name}-{counters[inv_name][0] + 1:06d}"
        seq, audit_id, head = counters["feed"][0], counters["audit"][0], counters["audit"][1]
        # 4. everything else, and COMMIT
        stamp = _ts(now)
        lines = [
            {"amount": str(unit_price), "code": "CYL12.7", "description": "CYL 12.7kg (full)", "kind": "delivery",
             "position": 1, "qty": "1.00", "unit_price": str(unit_price)},
            {"amount": str(fee), "code": "DELIVERY", "description": "Delivery fee", "kind": "service", "position": 2,
             "qty": "1.00", "unit_price": str(fee)},
        ]  # fmt: skip
        site_doc = {"customer": customer, "equipment": "CYL12.7", "id": site_id, "last_modified": stamp,
                    "on_site": on_site + 1, "place": "site", "version": site_version + 1}  # fmt: skip
        truck_doc = {"empty": empty, "equipment": "CYL12.7", "full": full - 1, "id": truck_id, "last_modified": stamp,
                     "place": "truck", "truck": truck, "version": truck_version + 1}  # fmt: skip
        invoice_doc = {
            "amount_paid": "0.00", "balance": str(total), "customer": customer, "customer_address": address,
            "customer_email": email, "customer_name": name, "driver": 2, "emailed_at": None, "emailed_by": None,
            "events": [], "gst": str(gst), "gst_rate": "0.09", "id": invoice_id, "issued_at": stamp,
            "last_modified": stamp, "lines": lines, "number": inv_no, "paid_at": None, "paid_by": None,
            "payments": [], "printed_at": None, "printed_by": None, "status": "generated",
            "subtotal": str(subtotal), "total": str(total), "transaction": {"id": trx_id, "number": trx_no},
            "version": 1,
        }  # fmt: skip
        trx_doc = {
            "cancelled_at": None, "confirmed_at": stamp, "created_at": stamp, "customer": customer,
            "deliveries": [{"amount": str(unit_price), "equipment": "CYL12.7", "kind": "full_deliver", "qty": 1,
                            "remaining_kg": None, "unit_price": str(unit_price)}],
            "device_id": device, "driver": 2, "gst": str(gst), "id": trx_id,
            "invoice": {"id": invoice_id, "number": inv_no, "status": "generated"}, "last_modified": stamp,
            "meter": None, "number": trx_no, "occurred_at": stamp,
            "services": [{"amount": str(fee), "code": "DELIVERY", "qty": 1, "unit_price": str(fee)}],
            "status": "confirmed", "subtotal": str(subtotal), "total": str(total), "truck": truck, "version": 1,
        }  # fmt: skip
        docs = [("site_stock", site_id, site_version + 1, 0, site_doc),
                ("truck_stock", truck_id, truck_version + 1, 0, truck_doc),
                ("invoice", invoice_id, 1, 2, invoice_doc), ("transaction", trx_id, 1, 2, trx_doc)]  # fmt: skip
        feed_rows = [
            (seq + k + 1, entity, entity_id, version, scope, now, orjson.dumps(doc).decode())
            for k, (entity, entity_id, version, scope, doc) in enumerate(docs)
        ]
        context = {"batch": "floor", "client_temp_id": tag, "transaction": trx_id}
        entries = []
        for k, (action, kind, entity_id, extra) in enumerate(
            (
                ("create", "invoice", invoice_id, {"after": invoice_doc}),
                ("confirm", "transaction", trx_id, {"after": trx_doc, "created": True, "invoice": inv_no}),
            )
        ):
            text = orjson.dumps({**extra, **context}).decode()
            digest = hashlib.sha256(orjson.dumps([audit_id + k + 1, kind, entity_id, text, head])).hexdigest()
            entries.append((audit_id + k + 1, now, device, action, kind, entity_id, text, head, digest))
            head = digest
        result = orjson.dumps(
            {"client_temp_id": tag, "status": "applied", "entity": "transaction", "id": trx_id, "number": trx_no,
             "version": 1, "server_ts": stamp, "related": {"invoice": {"id": invoice_id, "number": inv_no}}}
        ).decode()  # fmt: skip
        feed_values = ",".join(["(%s, %s, %s, %s, %s, 0, %s, %s)"] * len(feed_rows))
        cur.execute(
            "INSERT INTO delivery_lines (transaction_id, equipment_id, kind, qty, unit_price, amount)"
            " VALUES (%s, %s, 'full_deliver', 1, %s, %s);"
            " INSERT INTO service_lines (transaction_id, service_id, qty, unit_price, amount) VALUES (%s, %s, 1, %s, %s);"
            " INSERT INTO invoice_lines (invoice_id, `position`, kind, code, description, qty, unit_price, amount)"
            " VALUES (%s, 1, 'delivery', 'CYL12.7', 'CYL 12.7kg (full)', 1, %s, %s),"
            " (%s, 2, 'service', 'DELIVERY', 'Delivery fee', 1, %s, %s);"
            " UPDATE truck_stock SET full = full - 1, version = version + 1, last_modified = %s WHERE id = %s;"
            " UPDATE site_stock SET on_site = on_site + 1, version = version + 1, last_modified = %s WHERE id = %s;"
            " INSERT INTO sync_applied (device_id, client_temp_id, op, fingerprint, entity, entity_id, result,"
            " created_at) VALUES (%s, %s, 'transaction.create', %s, 'transaction', %s, %s, %s);"
            " UPDATE devices SET last_push_at = %s, applied_count = applied_count + 1, version = version + 1,"
            " last_modified = %s WHERE device_id = %s AND user_id = 2;"
            " INSERT INTO change_feed (seq, entity, entity_id, version, scope, deleted, last_modified, doc) VALUES "
            + feed_values
            + " ON DUPLICATE KEY UPDATE seq = VALUES(seq), version = VALUES(version), scope = VALUES(scope),"
            " deleted = VALUES(deleted), last_modified = VALUES(last_modified), doc = VALUES(doc);"
            " INSERT INTO audit_log (id, at, user_id, device_id, action, entity_type, entity_id, context, prev_hash,"
            " hash) VALUES (%s, %s, 2, %s, %s, %s, %s, %s, %s, %s), (%s, %s, 2, %s, %s, %s, %s, %s, %s, %s);"
            " UPDATE counters SET value = value + CASE name WHEN 'feed' THEN %s WHEN 'audit' THEN 2 ELSE 1 END,"
            " head = CASE name WHEN 'audit' THEN %s ELSE head END WHERE name IN (%s, %s, 'audit', 'feed');"
            " COMMIT",
            (
                trx_id, equipment, unit_price, unit_price, trx_id, service, fee, fee,
                invoice_id, unit_price, unit_price, invoice_id, fee, fee,
                now, truck_id, now, site_id,
                device, tag, "f" * 64, trx_id, result, now,
                now, now, device,
                *[v for row in feed_rows for v in row],
                *[v for entry in entries for v in entry],
                len(feed_rows), head, trx_name, inv_name,
            ),
        )  # fmt: skip
        results(cur)
        cur.close()

    return push
