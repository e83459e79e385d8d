"""Thermal receipts: the invoice as text lines at 32 (58 mm) or 48 (80 mm) columns, and the same lines as
ESC/POS bytes made with python-escpos's Dummy printer (bold headings, the PayNow QR code, a cut).

`lines` keep every character as the customer wrote it (the tablet can draw them). In the ESC/POS bytes a
line that the printer's code pages can carry is text; a line they cannot (a Tamil or Chinese name) is
printed as a bitmap drawn with the Noto fonts (see `raster`), so it reads as written on any printer. Without
those fonts such a line falls back to text: Chinese in GB18030 (python-escpos's choice, which Chinese-mode
printers read) and `?` for letters no code page has, combining marks dropped, never wider than the paper.
"""

from __future__ import annotations

import copy
import unicodedata
from dataclasses import dataclass

from escpos.printer import Dummy

from domain.invoicing.outputs.raster import DOTS, line_bitmap
from domain.invoicing.outputs.render import InvoiceView

COLUMNS = {58: 32, 80: 48}
BOLD = "bold"


def cell_width(ch: str) -> int:
    """Printer cells a character takes: 2 for wide (CJK), 0 for combining marks, else 1."""
    if unicodedata.category(ch).startswith("M") or ch in "\u200b\u200c\u200d":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(cell_width(ch) for ch in text)


def _cut(word: str, width: int) -> tuple[str, str]:
    """The longest head of `word` that fits in `width` cells (at least one character), and the rest."""
    used = 0
    for index, ch in enumerate(word):
        used += cell_width(ch)
        if used > width and index > 0:
            return word[:index], word[index:]
    return word, ""


def wrap(text: str, width: int) -> list[str]:
    """Word-wrap to `width` cells; words longer than a line are broken; blank text gives no line."""
    out: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if text_width(candidate) <= width:
                line = candidate
                continue
            if line:
                out.append(line)
            line = word
            while text_width(line) > width:
                head, line = _cut(line, width)
                out.append(head)
        if line:
            out.append(line)
    return out


def pair(left: str, right: str, width: int) -> list[str]:
    """`left ... right` on one line, right-aligned; when both do not fit, left wraps above."""
    gap = width - text_width(left) - text_width(right)
    if gap >= 1:
        return [left + " " * gap + right]
    return [*wrap(left, width), " " * max(width - text_width(right), 0) + right]


def center(text: str, width: int) -> list[str]:
    return [" " * ((width - text_width(line)) // 2) + line for line in wrap(text, width)]


@dataclass(frozen=True)
class Receipt:
    width: int  # paper, mm
    columns: int
    lines: tuple[str, ...]
    bold: frozenset[int]  # indexes of lines printed in bold
    bitmaps: frozenset[int]  # indexes of lines printed as a bitmap (scripts no code page has)
    qr: str  # what the QR code holds ("" for none)
    escpos: bytes


def receipt_lines(view: InvoiceView, columns: int) -> tuple[list[str], set[int]]:
    """The receipt as text lines of at most `columns` cells, and which of them are bold."""
    lines: list[str] = []
    bold: set[int] = set()

    def add(new: list[str], strong: bool = False) -> None:
        if strong:
            bold.update(range(len(lines), len(lines) + len(new)))
        lines.extend(new)

    rule = "-" * columns
    add(center(view.company_name, columns), strong=True)
    add(center(view.company_address, columns))
    add(center(f"GST Reg. No. {view.gst_reg_no}", columns))
    add(center("TAX INVOICE", columns), strong=True)
    add([rule])
    add(pair("Invoice", view.number, columns))
    add(pair("Date", view.issued_at, columns))
    add(pair("Transaction", view.transaction_number, columns))
    add(["Customer:"])
    add(wrap(view.customer_name, columns), strong=True)
    add(wrap(view.customer_address, columns))
    for group in view.groups:
        add([rule])
        add(wrap(group.title.upper(), columns), strong=True)
        for line in group.lines:
            add(wrap(line.description, columns))
            add(pair(f"  {line.qty} x {line.unit_price}", line.amount, columns))
            if line.detail:
                add(wrap(line.detail.replace("→", "->"), columns))
    add([rule])
    add(pair("Subtotal", view.subtotal, columns))
    add(pair(f"GST {view.gst_rate}%", view.gst, columns))
    add(pair("TOTAL SGD", view.total, columns), strong=True)
    for payment in view.payments:
        add(pair(f"Paid {payment.method}", payment.amount, columns))
    add(pair("Balance due", view.balance, columns), strong=True)
    if view.credit:
        add(pair("Credit", view.credit, columns))
    add([rule])
    add(center(f"PayNow UEN {view.paynow_uen}", columns))
    add(center(f"Ref {view.paynow_reference}", columns))
    return lines, bold


def needs_bitmap(line: str, printer: Dummy) -> bool:
    """Whether any character of the line is in none of the printer's code pages."""
    encoder = printer.magic.encoder
    return any(ord(ch) >= 128 and not encoder.find_suitable_encoding(ch) for ch in line)


def printable(line: str, printer: Dummy) -> str:
    """What the printer is sent for a line: unprintable letters become `?`, combining marks go."""
    if any("\u4e00" <= ch <= "\u9fa5" for ch in line):
        return line  # the whole line goes out as GB18030 (see module doc)
    encoder = printer.magic.encoder
    out = []
    for ch in line:
        if ord(ch) < 128 or encoder.find_suitable_encoding(ch):
            out.append(ch)
        elif cell_width(ch) > 0:
            out.append("?")
    return "".join(out)


def without_controls(text: str) -> str:
    """The text with every control character (C0, DEL, C1: ESC, GS, NUL, ...) removed: data never carries a
    printer command, whatever is stored (the API refuses them; a row written another way may hold some)."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc")


def receipt(view: InvoiceView, width: int) -> Receipt:
    """The receipt for paper `width` mm (58 or 80): text lines, then ESC/POS with the QR code and a cut."""
    columns = COLUMNS[width]
    lines, bold = receipt_lines(view, columns)
    lines = [without_controls(line) for line in lines]
    printer = Dummy()
    # This printer's own copy of the profile (the library shares one dict between instances).
    printer.profile.profile_data = copy.deepcopy(printer.profile.profile_data)
    printer.profile.profile_data["media"]["width"]["pixels"] = DOTS[width]
    printer.hw("INIT")
    bitmaps: set[int] = set()
    for index, line in enumerate(lines):
        bitmap = line_bitmap(line, width) if needs_bitmap(line, printer) else None
        if bitmap is not None:
            printer.image(bitmap)
            bitmaps.add(index)
            continue
        if index in bold:
            printer.set(bold=True)
        printer.text(printable(line, printer) + "\n")
        if index in bold:
            printer.set(bold=False)
    qr = view.paynow_payload
    # Native QR (GS ( k): the printer draws it, 3-4 dots a module fits both paper widths.
    printer.set(align="center")
    printer.qr(qr, size=4 if width == 80 else 3, native=True)
    printer.text("\n")
    printer.set(align="left")
    printer.cut()
    return Receipt(width, columns, tuple(lines), frozenset(bold), frozenset(bitmaps), qr, printer.output)
