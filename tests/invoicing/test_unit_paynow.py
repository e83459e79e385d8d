"""PayNow SGQR payloads: EMVCo fields and the CRC-16/CCITT-FALSE checksum bank apps verify."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.invoicing.outputs.paynow import crc16_ccitt, paynow_payload, tlv


def fields(payload: str) -> dict[str, str]:
    out, i = {}, 0
    while i < len(payload):
        tag, size = payload[i : i + 2], int(payload[i + 2 : i + 4])
        out[tag] = payload[i + 4 : i + 4 + size]
        i += 4 + size
    return out


def test_crc16_ccitt_false_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1  # the catalogue's check value for CRC-16/CCITT-FALSE


def test_a_payload_carries_uen_amount_reference_and_a_valid_crc() -> None:
    payload = paynow_payload("201900000X", Decimal("308.46"), "INV-2026-000001", "HSH LPG Trading Pte Ltd")
    top = fields(payload)
    assert top["00"] == "01" and top["01"] == "12" and top["53"] == "702" and top["58"] == "SG"
    assert top["54"] == "308.46"
    account = fields(top["26"])
    assert account == {"00": "SG.PAYNOW", "01": "2", "02": "201900000X", "03": "0"}
    assert fields(top["62"]) == {"01": "INV-2026-000001"}
    assert top["63"] == f"{crc16_ccitt(payload[:-4].encode()):04X}"


def test_nothing_due_leaves_the_amount_to_the_payer_and_names_are_made_ascii() -> None:
    payload = paynow_payload("201900000X", None, "INV-2026-000002", "金龙 Trading Company With A Long Name")
    top = fields(payload)
    assert "54" not in top and fields(top["26"])["03"] == "1"
    assert top["59"] == "Trading Company With A Lo" and len(top["59"]) == 25
    payload.encode("ascii")


def test_a_field_longer_than_99_is_refused() -> None:
    with pytest.raises(ValueError):
        tlv("02", "x" * 100)
