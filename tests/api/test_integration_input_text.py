"""Control characters are refused in every text field of every input (line breaks only where a person writes
several lines), ESC/POS output drops them whatever is stored, and server-owned fields of `customer.create`
are `read_only_field`; push errors name their field under `data.`."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from domain.catalog.models import Customer
from domain.db import Database
from domain.invoicing.outputs.escpos import receipt
from domain.invoicing.outputs.render import load_view
from domain.settings import Settings
from tests.api.test_integration_http_edge import assert_error
from tests.support.outputs_data import make_invoice
from tests.support.sync_support import by_temp_id, push, table_fingerprint

CUSTOMERS = "/api/v1/customers/"
EVIL = "Kopi\x1bp\x00\x19\xfa Corner"
CONTROLS = ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b"]


def customer(**fields: Any) -> dict[str, Any]:
    return {"name": "Kopi Corner", "address": "1 Jurong Port Rd", **fields}


@pytest.mark.parametrize("char", CONTROLS)
@pytest.mark.parametrize(
    ("body", "field"),
    [
        (lambda c: customer(name=f"Kopi{c}Corner"), "name"),
        (lambda c: customer(address=f"1 Jurong{c} Port Rd"), "address"),
        (lambda c: customer(phone=f"+65{c}1234"), "phone"),
        (lambda c: customer(meter={"serial": f"M-{c}1"}), "meter.serial"),
    ],
)
def test_rest_bodies_refuse_control_characters_naming_the_field(
    client: TestClient, demo: Database, admin_headers: dict[str, str], char: str, body: Any, field: str
) -> None:
    before = table_fingerprint(demo)
    err = assert_error(client.post(CUSTOMERS, json=body(char), headers=admin_headers), 400, "validation_error")
    assert err["details"]["field"] == field
    assert err["details"]["character"] == f"U+{ord(char):04X}"
    assert table_fingerprint(demo) == before  # bad input changes nothing


def test_line_breaks_only_where_a_person_writes_several_lines(
    client: TestClient, admin_headers: dict[str, str], demo: Database
) -> None:
    created = client.post(
        CUSTOMERS, json=customer(address="Blk 12\r\nJurong Port Rd\n#01-05\tSingapore"), headers=admin_headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["address"] == "Blk 12\r\nJurong Port Rd\n#01-05\tSingapore"
    for name in ("Kopi\nCorner", "Kopi\r\nCorner", "Kopi\tCorner"):
        err = assert_error(
            client.post(CUSTOMERS, json=customer(name=name), headers=admin_headers), 400, "validation_error"
        )
        assert err["details"]["field"] == "name"
    # NUL never, not even in an address.
    err = assert_error(
        client.post(CUSTOMERS, json=customer(address="Blk 12\n\x00"), headers=admin_headers), 400, "validation_error"
    )
    assert err["details"]["field"] == "address"


def test_other_inputs_refuse_control_characters(
    client: TestClient, demo: Database, admin_headers: dict[str, str]
) -> None:
    # Usernames at login, user names, query strings, object keys.
    err = assert_error(
        client.post("/api/v1/auth/login/", json={"username": "driver1\x00", "password": "driver1-lpg-2026"}),
        400,
        "validation_error",
    )
    assert err["details"]["field"] == "username"
    err = assert_error(
        client.post(
            "/api/v1/users/",
            json={"username": "d9", "password": "a-long-password-9", "role": "driver", "full_name": "Tan\x1bAh"},
            headers=admin_headers,
        ),
        400,
        "validation_error",
    )
    assert err["details"]["field"] == "full_name"
    err = assert_error(client.get(CUSTOMERS + "?search=ko%1Bpi", headers=admin_headers), 400, "validation_error")
    assert err["details"]["field"] == "search"
    err = assert_error(
        client.post(CUSTOMERS, json=customer(prices={"equipment": {"CYL\x1b": "1.00"}}), headers=admin_headers),
        400,
        "validation_error",
    )
    assert err["details"]["field"] == "prices.equipment"


def test_push_refuses_control_characters_in_data_and_in_the_envelope(
    client: TestClient, demo: Database, driver_headers: dict[str, str]
) -> None:
    before = table_fingerprint(demo)
    result = push(
        client,
        driver_headers,
        [
            {"client_temp_id": "c-1", "op": "customer.create", "data": customer(name=EVIL)},
            {"client_temp_id": "c-2", "op": "customer.create", "data": customer(meter={"serial": "M\x001"})},
            {"client_temp_id": "c-3", "op": "customer.update", "data": {"id": "bad\x00ref", "name": "x"}},
        ],
    )
    results = by_temp_id(result)
    for temp_id, field in (("c-1", "data.name"), ("c-2", "data.meter.serial"), ("c-3", "data.id")):
        assert results[temp_id]["status"] == "rejected"
        assert results[temp_id]["error"]["code"] == "validation_error"
        assert results[temp_id]["error"]["details"]["field"] == field
    # The envelope: device_id, client_temp_id, op.
    for body, field in (
        ({"device_id": "tab\x00-1", "changes": []}, "device_id"),
        ({"device_id": "tab-1", "changes": [{"client_temp_id": "c\x1b", "op": "customer.create"}]}, None),
        ({"device_id": "tab-1", "changes": [{"client_temp_id": "c-9", "op": "customer.create\x00"}]}, None),
    ):
        err = assert_error(client.post("/api/v1/sync/push", json=body, headers=driver_headers), 400, "validation_error")
        assert err["details"]["field"] == (field or err["details"]["field"])
        assert err["details"]["field"] in {"device_id", "changes[0].client_temp_id", "changes[0].op"}
    after = table_fingerprint(demo)
    # Only the rejection list and the device's counters may differ: no customer was written.
    assert after["customers"] == before["customers"]


def test_escpos_drops_control_bytes_whatever_is_stored(demo: Database, settings: Settings) -> None:
    """A customer row written straight into the database (no API check) with a cash-drawer kick in its name."""
    demo.run(lambda uow: uow.session.execute(update(Customer).where(Customer.id == 1).values(name=EVIL)))
    invoice_id = make_invoice(demo, customer_name=EVIL, customer_address="12 Jurong\x1b@\x1dV\x00 Port Rd")
    view = demo.read(lambda s: load_view(s, settings, invoice_id))
    for width in (58, 80):
        slip = receipt(view, width)
        data = slip.escpos
        assert b"\x1bp" not in data  # no cash-drawer kick
        assert b"\x00\x19" not in data and b"\x1b@\x1dV" not in data
        assert any("Kopi" in line and "Corner" in line for line in slip.lines)
        assert all(not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in line) for line in slip.lines)
        # The printer's own commands remain: initialise, the QR code, the cut.
        assert data.startswith(b"\x1b@")
        assert b"\x1d(k" in data
        assert b"\x1dV" in data[-8:]


def test_customer_create_refuses_server_owned_id_and_active(
    client: TestClient, demo: Database, admin_headers: dict[str, str], driver_headers: dict[str, str]
) -> None:
    for field, value in (("id", 99), ("active", False)):
        err = assert_error(
            client.post(CUSTOMERS, json=customer(**{field: value}), headers=admin_headers), 400, "read_only_field"
        )
        assert err["details"]["field"] == field
        result = push(
            client,
            driver_headers,
            [{"client_temp_id": f"ro-{field}", "op": "customer.create", "data": customer(**{field: value})}],
        )
        error = result["results"][0]["error"]
        assert (error["code"], error["details"]["field"]) == ("read_only_field", f"data.{field}")


def test_push_errors_name_their_field_under_data(
    client: TestClient, demo: Database, driver_headers: dict[str, str]
) -> None:
    """A driver may not set a customer's meter rate: the service names `meter_rate`, the push `data.meter_rate`."""
    result = push(
        client,
        driver_headers,
        [
            {"client_temp_id": "mr-1", "op": "customer.create", "data": customer(meter_rate="3.2000")},
            {"client_temp_id": "mr-2", "op": "customer.update", "data": {"id": 1, "meter_rate": "3.2000"}},
        ],
    )
    for r in result["results"]:
        assert r["status"] == "rejected"
        assert r["error"]["code"] == "read_only_field"
        assert r["error"]["details"]["field"] == "data.meter_rate"
