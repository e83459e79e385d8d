"""Thermal receipts: ESC/POS bytes decode to the receipt's lines at 58 and 80 mm, none wider than the paper."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest
from escpos.printer import Dummy
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from domain.accounts.policy import Actor
from domain.invoicing.outputs.escpos import COLUMNS, needs_bitmap, printable, receipt, text_width, wrap
from domain.invoicing.outputs.paynow import crc16_ccitt
from domain.invoicing.outputs.raster import DOTS
from domain.invoicing.outputs.render import load_view
from tests.support.outputs_data import MIXED_LINES, make_invoice

ADMIN = Actor(1, "admin", "admin")
ESC, GS = 0x1B, 0x1D


@dataclass
class Bitmap:
    width_dots: int
    height: int
    data: bytes

    @property
    def black_dots(self) -> int:
        return sum(bin(byte).count("1") for byte in self.data)


@dataclass
class Decoded:
    lines: list[str | Bitmap] = field(default_factory=list)
    bold_lines: set[int] = field(default_factory=set)
    qr: list[str] = field(default_factory=list)
    cut: bool = False
    initialized: bool = False


def decode_escpos(data: bytes) -> Decoded:
    """A small ESC/POS reader for what the receipt sends: text (GB18030 is ASCII-compatible, and what
    python-escpos sends Chinese in), LF, ESC @ / E / t / a / d, GS V (cut), GS ( k (QR), GS v 0 (bitmap line)."""
    out = Decoded()
    line = bytearray()
    bold = False
    line_bold = False
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == ESC:
            command = data[i + 1]
            if command == ord("@"):
                out.initialized = True
                i += 2
                continue
            if command == ord("E"):
                bold = data[i + 2] == 1
            elif command not in (ord("t"), ord("a"), ord("d")):
                raise AssertionError(f"unexpected ESC {command:#x}")
            i += 3
            continue
        if byte == GS:
            command = data[i + 1]
            if command == ord("V"):
                out.cut = True
                i += 3 if data[i + 2] in (0, 1, 48, 49) else 4
                continue
            if data[i + 1 : i + 3] == b"v0":
                x = data[i + 4] + 256 * data[i + 5]
                y = data[i + 6] + 256 * data[i + 7]
                assert not line, "a bitmap in the middle of a text line"
                out.lines.append(Bitmap(x * 8, y, data[i + 8 : i + 8 + x * y]))
                i += 8 + x * y
                continue
            if data[i + 1 : i + 3] == b"(k":
                size = data[i + 3] + 256 * data[i + 4]
                body = data[i + 5 : i + 5 + size]
                if body[:3] == b"1P0":
                    out.qr.append(body[3:].decode("utf-8"))
                i += 5 + size
                continue
            raise AssertionError(f"unexpected GS {command:#x}")
        if byte == 0x0A:
            if line_bold or bold:
                out.bold_lines.add(len(out.lines))
            out.lines.append(line.decode("gb18030"))
            line = bytearray()
            line_bold = False
            i += 1
            continue
        line_bold = line_bold or bold
        line.append(byte)
        i += 1
    assert not line, f"text after the last line feed: {bytes(line)!r}"
    return out


def printed_lines(decoded: Decoded) -> list[str | Bitmap]:
    """The receipt's own lines: blank lines fed around the QR code and before the cut are not text."""
    return [line for line in decoded.lines if line != ""]


@pytest.mark.parametrize("width", [58, 80])
def test_escpos_bytes_decode_to_the_receipt_lines_at_both_widths(demo, settings, width) -> None:
    invoice_id = make_invoice(demo)
    view = demo.read(lambda s: load_view(s, settings, invoice_id))
    slip = receipt(view, width)
    columns = COLUMNS[width]
    assert slip.columns == columns == {58: 32, 80: 48}[width]
    decoded = decode_escpos(slip.escpos)
    assert decoded.initialized and decoded.cut
    assert printed_lines(decoded) == list(slip.lines) and slip.bitmaps == frozenset()
    for line in slip.lines:
        assert len(line) <= columns and text_width(line) <= columns, line
    text = "\n".join(slip.lines)
    for _kind, _code, description, _qty, _price in MIXED_LINES:
        assert " ".join(description.split()) in " ".join(text.split())
    assert any(line.startswith("TOTAL SGD") and line.endswith("408.46") for line in slip.lines)
    assert any(line.startswith("Subtotal") and line.endswith("374.73") for line in slip.lines)
    assert any(line.startswith("GST 9%") and line.endswith("33.73") for line in slip.lines)
    assert any(line.startswith("Balance due") and line.endswith("308.46") for line in slip.lines)
    assert "INV-2026-000001" in text and "TRX-2026-000001" in text
    bold = {slip.lines.index(line) for line in slip.lines if line.startswith("TOTAL SGD")}
    assert bold <= decoded.bold_lines
    # The QR code carries the PayNow payload: UEN, amount due, the invoice number, a valid CRC.
    assert decoded.qr == [view.paynow_payload]
    payload = decoded.qr[0]
    assert "SG.PAYNOW" in payload and settings.paynow_uen in payload
    assert "5406308.46" in payload and "INV-2026-000001" in payload
    assert payload[-4:] == f"{crc16_ccitt(payload[:-4].encode()):04X}"


@pytest.mark.parametrize("width", [58, 80])
def test_chinese_and_tamil_names_print_as_bitmaps_within_the_paper(demo, settings, width) -> None:
    chinese = "金龙海鲜楼 Golden Dragon Seafood 金龙海鲜楼金龙海鲜楼金龙海鲜楼金龙海鲜楼金龙海鲜楼"
    tamil = "அன்பு கறி ஹவுஸ் அன்பு கறி ஹவுஸ் அன்பு கறி ஹவுஸ்"
    for seq, name in enumerate((chinese, tamil), start=1):
        invoice_id = make_invoice(demo, customer_name=name, seq=seq)
        view = demo.read(lambda s, i=invoice_id: load_view(s, settings, i))
        slip = receipt(view, width)
        printed = printed_lines(decode_escpos(slip.escpos))
        assert len(printed) == len(slip.lines)
        assert "".join(name.split()) in "".join("".join(slip.lines).split())  # JSON lines keep the name
        foreign = {i for i, line in enumerate(slip.lines) if any(ord(ch) > 0x2FF for ch in line)}
        assert foreign and slip.bitmaps == foreign
        for index, (sent, line) in enumerate(zip(printed, slip.lines, strict=True)):
            assert text_width(line) <= COLUMNS[width]
            if index in foreign:
                assert isinstance(sent, Bitmap), line
                assert sent.width_dots <= DOTS[width] and sent.height >= 24 and sent.black_dots > 100
            else:
                assert sent == line


def test_without_a_bitmap_unprintable_letters_become_question_marks_and_chinese_stays() -> None:
    printer = Dummy()
    assert not needs_bitmap("Ah Seng Eating House, café", printer)
    assert needs_bitmap("அன்பு கறி", printer) and needs_bitmap("金龙 Seafood", printer)
    assert printable("அன்பு கறி House", printer) == "??? ?? House"  # marks dropped: as wide as the text
    assert text_width(printable("அன்பு கறி House", printer)) == text_width("அன்பு கறி House")
    assert printable("金龙 Seafood", printer) == "金龙 Seafood"  # python-escpos sends it as GB18030


@hsettings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=120))
def test_wrap_never_exceeds_the_width_and_keeps_every_word(text: str) -> None:
    for columns in COLUMNS.values():
        lines = wrap(text, columns)
        assert all(text_width(line) <= columns or len(line) == 1 for line in lines)
        assert "".join("".join(lines).split()) == "".join(text.split())


def test_print_endpoint(client, demo, driver_headers, other_driver_headers) -> None:
    invoice_id = make_invoice(demo)
    for width, columns in ((58, 32), (80, 48)):
        response = client.get(f"/api/v1/invoices/{invoice_id}/print/?width={width}", headers=driver_headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["width"] == width and body["columns"] == columns
        assert body["invoice"] == {"id": invoice_id, "number": "INV-2026-000001"}
        assert printed_lines(decode_escpos(base64.b64decode(body["escpos"]))) == body["lines"]
        assert max(len(line) for line in body["lines"]) <= columns
    default = client.get(f"/api/v1/invoices/{invoice_id}/print/", headers=driver_headers)
    assert default.json()["width"] == 58
    bad = client.get(f"/api/v1/invoices/{invoice_id}/print/?width=76", headers=driver_headers)
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "width"
    assert client.get(f"/api/v1/invoices/{invoice_id}/print/", headers=other_driver_headers).status_code == 404
