"""PayNow (SGQR) payloads: what a customer's banking app reads from the QR code on an invoice or receipt.

The payload is EMVCo merchant-presented QR as Singapore's PayNow uses it: a list of `ID LEN VALUE` fields,
PayNow to the company's UEN (proxy type 2), the amount due in SGD, the invoice number as the bill reference,
and a CRC-16/CCITT-FALSE over everything before it (including the CRC field's own `6304`).
"""

from __future__ import annotations

from decimal import Decimal

MAX_MERCHANT_NAME = 25
MAX_REFERENCE = 25


def tlv(tag: str, value: str) -> str:
    """One field: a 2-digit id, a 2-digit length, the value (at most 99 characters)."""
    if len(value) > 99:
        raise ValueError(f"SGQR field {tag} is longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): the checksum EMVCo QR codes end with."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _ascii(text: str, limit: int) -> str:
    """Bank apps expect plain ASCII here; anything else becomes a space, and the field is cut to size."""
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else " " for ch in text)
    return " ".join(cleaned.split())[:limit] or "-"


def paynow_payload(uen: str, amount: Decimal | None, reference: str, merchant_name: str) -> str:
    """The SGQR string for paying `amount` SGD to `uen` with `reference` (the invoice number).

    Without an amount (nothing due) the payer types it; the amount is never editable when it is given."""
    account = (
        tlv("00", "SG.PAYNOW")
        + tlv("01", "2")  # proxy type: UEN
        + tlv("02", uen)
        + tlv("03", "0" if amount is not None else "1")  # amount editable by the payer
    )
    fields = [
        tlv("00", "01"),
        tlv("01", "12"),  # dynamic QR: one payment, one amount
        tlv("26", account),
        tlv("52", "0000"),
        tlv("53", "702"),  # SGD
    ]
    if amount is not None:
        fields.append(tlv("54", f"{amount:.2f}"))
    fields += [
        tlv("58", "SG"),
        tlv("59", _ascii(merchant_name, MAX_MERCHANT_NAME)),
        tlv("60", "Singapore"),
        tlv("62", tlv("01", _ascii(reference, MAX_REFERENCE))),
    ]
    body = "".join(fields) + "6304"
    return body + f"{crc16_ccitt(body.encode('ascii')):04X}"
