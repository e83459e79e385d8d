"""The invoice PDF: what pdftotext reads back, scripts, escaping and the fetcher, the cache, RBAC, locks."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text

from domain.accounts.policy import Actor
from domain.db import Database
from domain.errors import NotFound
from domain.invoicing.models import Invoice
from domain.invoicing.outputs import pdf as pdf_module
from domain.invoicing.outputs.pdf import PDF_CACHE, AssetFetcher, fetcher_for, invoice_pdf, render_pdf
from domain.invoicing.outputs.render import load_view, render_html
from domain.logistics.models import TruckStock
from domain.settings import Settings
from tests.support.outputs_data import MIXED_LINES, expected_totals, make_invoice

ADMIN = Actor(1, "admin", "admin")
DRIVER1 = Actor(2, "driver1", "driver")
DRIVER2 = Actor(3, "driver2", "driver")
CHINESE = "金龙海鲜楼 Golden Dragon Seafood"
MALAY = "Restoran Nasi Padang Sedap Kampung Glam"
TAMIL = "அன்பு கறி ஹவுஸ்"  # Anbu Curry House


def pdf_text(pdf: bytes, tmp_path: Path, layout: bool = False) -> str:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(pdf)
    args = ["pdftotext", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, check=True, capture_output=True).stdout.decode()


def pdf_fonts(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdffonts", str(path)], check=True, capture_output=True).stdout.decode()


def view_of(db: Database, settings: Settings, invoice_id: int):  # type: ignore[no-untyped-def]
    return db.read(lambda s: load_view(s, settings, invoice_id))


def test_the_pdf_of_a_mixed_invoice_holds_number_lines_and_totals(demo, settings, tmp_path) -> None:
    invoice_id = make_invoice(demo)
    rendered = invoice_pdf(demo, settings, ADMIN, invoice_id)
    assert rendered.pdf.startswith(b"%PDF-")
    content = pdf_text(rendered.pdf, tmp_path, layout=True)
    assert "INV-2026-000001" in content and "TRX-2026-000001" in content
    for _kind, code, description, _qty, _price in MIXED_LINES:
        assert description in content
        assert code in content
    assert "Meter 1234.50 → 1290.00, usage 55.50" in content
    totals = expected_totals()

    def value(label: str) -> str:
        return next(line for line in content.splitlines() if label in line).split()[-1]

    assert value("Subtotal") == totals["subtotal"] == "374.73"
    assert value("GST 9%") == totals["gst"] == "33.73"
    assert value("Total (SGD)") == totals["total"] == "408.46"
    # Payments and balance, PayNow, the company header, Singapore time (02:15 UTC is 10:15 there).
    assert "Cash (R-0042)" in content and "100.00" in content
    assert value("Balance due") == "308.46"
    assert "UEN 201900000X" in content and "Reference INV-2026-000001" in content
    assert settings.company_name in content and f"GST Reg. No. {settings.gst_reg_no}" in content
    assert "24 Nov 2026, 10:15" in content


@pytest.mark.parametrize(
    ("name", "font"),
    [(CHINESE, "CJK"), (MALAY, "Noto-Sans"), (TAMIL, "Tamil")],
    ids=["chinese", "malay", "tamil"],
)
def test_customer_names_in_chinese_malay_and_tamil_render_with_real_glyphs(
    demo, settings, tmp_path, name, font
) -> None:
    invoice_id = make_invoice(demo, customer_name=name, customer_address="1 Seafood Way\n#02-11 Singapore 449876")
    pdf = invoice_pdf(demo, settings, ADMIN, invoice_id).pdf
    fonts = pdf_fonts(pdf, tmp_path)
    assert font in fonts, fonts  # the script's Noto font is embedded, so the name is drawn, not boxes
    content = pdf_text(pdf, tmp_path)
    if name is TAMIL:
        # pdftotext cannot always reorder Tamil vowel signs; every consonant must still be there.
        assert all(ch in content for ch in "அனபகறஹவஸ"), content
    else:
        assert name in content


def test_the_lines_are_grouped_by_kind_with_headings(demo, settings) -> None:
    view = view_of(demo, settings, make_invoice(demo))
    assert [g.kind for g in view.groups] == ["usage", "delivery", "empty_return", "half_return", "service"]
    assert [len(g.lines) for g in view.groups] == [1, 2, 1, 1, 1]
    assert view.groups[3].lines[0].amount == "-16.67"


INJECTIONS = [
    '<img src="file:///etc/passwd">',
    '<img src="http://127.0.0.1:9/steal.png">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<style>@import url(file:///etc/shadow);</style>",
    '<svg><image href="data:image/png;base64,iVBORw0KGgo="/></svg>',
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_markup_in_a_customer_name_or_address_fetches_nothing_and_prints_as_text(
    demo, settings, tmp_path, payload
) -> None:
    invoice_id = make_invoice(demo, customer_name=f"Evil {payload}", customer_address=f"Road {payload}")
    view = view_of(demo, settings, invoice_id)
    html = render_html(view)
    assert payload not in html  # escaped, so never an element
    fetcher = fetcher_for(view)
    pdf = render_pdf(view, fetcher)
    assert fetcher.refused == []
    assert sorted(fetcher.requested) == sorted(fetcher.served)
    assert set(fetcher.served) == {"lpg-asset:invoice.css", "lpg-asset:logo.svg", "lpg-asset:paynow-qr.svg"}
    content = pdf_text(pdf, tmp_path)
    flat = "".join(content.split())  # long names wrap anywhere; compare without the whitespace
    assert "".join(f"Evil {payload}".split()) in flat
    assert "".join(f"Road {payload}".split()) in flat


def test_the_fetcher_refuses_everything_but_its_own_assets(tmp_path) -> None:
    secret = tmp_path / "secret.css"
    secret.write_text("body { color: red }")
    fetcher = AssetFetcher()
    refused = [
        f"file://{secret}",
        "file:///etc/passwd",
        "http://127.0.0.1:9/x.png",
        "https://example.com/x.css",
        "data:text/css,body{color:red}",
        "ftp://example.com/x",
        "lpg-asset:../render.py",
        "lpg-asset:/etc/passwd",
        "lpg-asset:templates/invoice.html",
        "lpg-asset:invoice.css?x=1",
        "LPG-ASSET:invoice.css",
    ]
    for url in refused:
        with pytest.raises(pdf_module.AssetRefused):
            fetcher.fetch(url)
    assert fetcher.refused == refused and fetcher.served == []
    css = fetcher.fetch("lpg-asset:invoice.css")
    assert b"@page" in css.read() and css.content_type == "text/css"


def test_a_document_that_asks_for_foreign_urls_gets_none_of_them(tmp_path) -> None:
    """Even markup that reaches WeasyPrint unescaped cannot load anything through this fetcher."""
    from weasyprint import HTML

    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG")
    fetcher = AssetFetcher()
    html = f"""<html><head><link rel="stylesheet" href="file://{tmp_path}/x.css">
        <style>@import url("http://127.0.0.1:9/a.css"); body {{ background: url(data:image/png;base64,iVBORw0KGgo=) }}</style>
        </head><body><img src="file://{secret}"><img src="http://127.0.0.1:9/b.png"><img src="relative.png">
        <link rel="stylesheet" href="lpg-asset:invoice.css"></body></html>"""
    HTML(string=html, url_fetcher=fetcher).write_pdf()
    assert fetcher.served == ["lpg-asset:invoice.css"]
    assert set(fetcher.requested) - set(fetcher.served) == set(fetcher.refused)
    assert any(url.startswith("file:") for url in fetcher.refused)
    assert any(url.startswith("http:") for url in fetcher.refused)


def test_a_second_request_comes_from_the_cache_and_a_changed_invoice_renders_again(demo, settings) -> None:
    PDF_CACHE.clear()
    invoice_id = make_invoice(demo)
    first = invoice_pdf(demo, settings, ADMIN, invoice_id)
    hits = PDF_CACHE.hits
    second = invoice_pdf(demo, settings, ADMIN, invoice_id)
    assert PDF_CACHE.hits == hits + 1 and second.pdf is first.pdf
    with demo.unit() as uow:
        uow.session.get(Invoice, invoice_id).customer_name = "Ah Seng Eating House (Jurong)"  # type: ignore[union-attr]
        uow.commit()
    third = invoice_pdf(demo, settings, ADMIN, invoice_id)
    assert third.view.fingerprint != first.view.fingerprint and third.pdf is not first.pdf


def test_concurrent_requests_for_a_new_invoice_render_it_once(demo, settings) -> None:
    PDF_CACHE.clear()
    invoice_id = make_invoice(demo)
    renders = PDF_CACHE.renders
    results: list[bytes] = []
    barrier = threading.Barrier(4)

    def fetch() -> None:
        barrier.wait(10)
        results.append(invoice_pdf(demo, settings, ADMIN, invoice_id).pdf)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4 and all(pdf is results[0] for pdf in results)
    assert PDF_CACHE.renders == renders + 1


def test_a_driver_gets_only_own_invoices(demo, settings) -> None:
    invoice_id = make_invoice(demo, driver_id=2)
    assert invoice_pdf(demo, settings, DRIVER1, invoice_id).view.number == "INV-2026-000001"
    with pytest.raises(NotFound):
        invoice_pdf(demo, settings, DRIVER2, invoice_id)
    with pytest.raises(NotFound):
        invoice_pdf(demo, settings, ADMIN, invoice_id + 100)


def test_pdf_endpoint(client, demo, driver_headers, other_driver_headers, tmp_path) -> None:
    invoice_id = make_invoice(demo)
    response = client.get(f"/api/v1/invoices/{invoice_id}/pdf/", headers=driver_headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert 'filename="INV-2026-000001.pdf"' in response.headers["content-disposition"]
    assert "INV-2026-000001" in pdf_text(response.content, tmp_path)
    again = client.get(
        f"/api/v1/invoices/{invoice_id}/pdf/", headers={**driver_headers, "If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    hidden = client.get(f"/api/v1/invoices/{invoice_id}/pdf/", headers=other_driver_headers)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    missing = client.get("/api/v1/invoices/999/pdf/", headers=driver_headers)
    assert missing.status_code == 404


def hold(db: Database, statement: str, ready: threading.Event, release: threading.Event) -> None:
    """Keep a write transaction open (with its row lock) until told to let go, then roll it back."""
    with db.unit() as uow:
        uow.session.execute(text(statement))
        ready.set()
        release.wait(30)
        uow.rollback()


@pytest.mark.parametrize("locked", ["truck_stock", "invoice"])
def test_the_pdf_renders_while_another_transaction_holds_the_stock_or_invoice_row_lock(
    demo, settings, client, driver_headers, tmp_path, locked
) -> None:
    invoice_id = make_invoice(demo)
    stock_id = demo.read(lambda s: s.execute(select(TruckStock.id).order_by(TruckStock.id)).scalars().first())
    for_update = "" if demo.dialect == "sqlite" else " FOR UPDATE"
    # On SQLite the unit's BEGIN IMMEDIATE takes the database's write lock; on MariaDB the row lock.
    statement = {
        "truck_stock": f"SELECT full FROM truck_stock WHERE id = {stock_id}{for_update}",
        "invoice": f"SELECT status FROM invoices WHERE id = {invoice_id}{for_update}",
    }[locked]
    if demo.dialect == "sqlite":
        statement = f"UPDATE {'truck_stock' if locked == 'truck_stock' else 'invoices'} SET version = version WHERE id = {stock_id if locked == 'truck_stock' else invoice_id}"
    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold, args=(demo, statement, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        PDF_CACHE.clear()
        response = client.get(f"/api/v1/invoices/{invoice_id}/pdf/", headers=driver_headers)
        printed = client.get(f"/api/v1/invoices/{invoice_id}/print/?width=58", headers=driver_headers)
        assert holder.is_alive(), "the lock was released before the PDF came back"
    finally:
        release.set()
        holder.join(30)
    assert response.status_code == 200, response.text
    assert "INV-2026-000001" in pdf_text(response.content, tmp_path)
    assert printed.status_code == 200


def test_the_sample_invoice_renders(tmp_path) -> None:
    from domain.invoicing.outputs.sample import main

    target = tmp_path / "sample.pdf"
    main([str(target)])
    content = pdf_text(target.read_bytes(), tmp_path)
    assert "金龙海鲜楼 Golden Dragon Seafood" in content and "408.46" in content
