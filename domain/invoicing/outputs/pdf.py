"""The invoice PDF: WeasyPrint over the template, with a fetcher that can reach nothing but our own assets.

Rendering happens after the confirm has committed, on demand, from a read-only snapshot of the invoice: no
database transaction is open while WeasyPrint works. PDFs are cached per process by the content's
fingerprint, so asking again for an unchanged invoice costs one read and a hash.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import qrcode
import qrcode.image.svg
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from domain.accounts.policy import Actor, ensure_visible
from domain.db import Database
from domain.invoicing.outputs.render import ASSETS, InvoiceView, load_view, render_html
from domain.settings import Settings

log = logging.getLogger("lpg.outputs")

ASSET_SCHEME = "lpg-asset:"
MEDIA_TYPES = {".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}
QR_NAME = "paynow-qr.svg"


class AssetRefused(Exception):
    """A URL the invoice template does not own: nothing is fetched."""


def packaged_assets() -> dict[str, tuple[bytes, str]]:
    """The files in `assets/`, by name, read once: the whole of what a rendering may load."""
    return {
        path.name: (path.read_bytes(), MEDIA_TYPES.get(path.suffix, "application/octet-stream"))
        for path in sorted(ASSETS.iterdir())
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


class AssetFetcher(URLFetcher):
    """Serves `lpg-asset:<name>` for the packaged assets (plus this rendering's QR code) and refuses every
    other URL (file:, http(s):, data:, ftp:, relative paths, `..`): a customer name cannot make the server
    read a file or call out. Every request is recorded, so tests can assert on exactly what was asked for."""

    def __init__(self, extra: dict[str, tuple[bytes, str]] | None = None) -> None:
        super().__init__(timeout=1, allowed_protocols=(), allow_redirects=False, fail_on_errors=False)
        self.assets = {**packaged_assets(), **(extra or {})}
        self.requested: list[str] = []
        self.served: list[str] = []
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        self.requested.append(url)
        name = url[len(ASSET_SCHEME) :] if url.startswith(ASSET_SCHEME) else None
        if name is None or name not in self.assets:
            self.refused.append(url)
            log.warning("invoice rendering refused to fetch %.200r", url)
            raise AssetRefused(f"not an invoice asset: {url[:200]}")
        body, media_type = self.assets[name]
        self.served.append(url)
        return URLFetcherResponse(url, body=body, headers={"Content-Type": media_type})


def qr_svg(payload: str) -> bytes:
    """The PayNow QR code as SVG (vector: sharp at any print resolution)."""
    image = qrcode.make(payload, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()


def render_pdf(view: InvoiceView, fetcher: AssetFetcher | None = None) -> bytes:
    """WeasyPrint the view. No base URL: a relative reference resolves to nothing rather than to a file."""
    fetcher = fetcher or fetcher_for(view)
    return HTML(string=render_html(view), url_fetcher=fetcher).write_pdf()  # type: ignore[no-any-return]


def fetcher_for(view: InvoiceView) -> AssetFetcher:
    return AssetFetcher({QR_NAME: (qr_svg(view.paynow_payload), "image/svg+xml")})


class PdfCache:
    """A small LRU of rendered PDFs keyed by content fingerprint; per process, not needed for correctness."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.renders = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            pdf = self._items.get(key)
            if pdf is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return pdf

    def peek(self, key: str) -> bytes | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, pdf: bytes) -> None:
        with self._lock:
            self._items[key] = pdf
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


PDF_CACHE = PdfCache()
# One rendering at a time per process: WeasyPrint's font stack (Pango, fontconfig) is not promised to be
# thread-safe, renders are CPU-bound anyway, and a burst of requests for one new invoice renders it once.
_render_lock = threading.Lock()


@dataclass(frozen=True)
class RenderedInvoice:
    view: InvoiceView
    pdf: bytes

    @property
    def etag(self) -> str:
        return f'"{self.view.fingerprint[:32]}"'

    @property
    def filename(self) -> str:
        return f"{self.view.number}.pdf"


def read_view(db: Database, settings: Settings, actor: Actor, invoice_id: int) -> InvoiceView:
    """The committed invoice, read in a read-only unit that is closed before anything is rendered.
    A driver sees only their own invoices; another driver's is `not_found`."""
    view = db.read(lambda session: load_view(session, settings, invoice_id))
    ensure_visible(actor, view.driver_id, "invoice", invoice_id)
    return view


def invoice_pdf(db: Database, settings: Settings, actor: Actor, invoice_id: int) -> RenderedInvoice:
    """The invoice's PDF, from the cache when its content has not changed since it was last rendered."""
    view = read_view(db, settings, actor, invoice_id)
    key = view.fingerprint
    pdf = PDF_CACHE.get(key)
    if pdf is None:
        with _render_lock:
            pdf = PDF_CACHE.peek(key)  # rendered meanwhile by the request we waited for
            if pdf is None:
                pdf = render_pdf(view)
                PDF_CACHE.renders += 1
                PDF_CACHE.put(key, pdf)
    return RenderedInvoice(view, pdf)
