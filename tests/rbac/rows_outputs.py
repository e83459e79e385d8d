"""Invoice outputs: PDF, e-mail, thermal print data. A driver reaches only own invoices (others: 404).

The e-mail row's allowed callers get 502 `email_failed`: the test settings point at 127.0.0.1:25, where no
mail server listens, so the row proves authorization passed without sending anything (the e-mail tests
start a real SMTP server for the rest)."""

from __future__ import annotations

from sqlalchemy import func, select

from domain.invoicing.models import Invoice
from tests.rbac.matrix import RbacRow, Request, World, expect
from tests.support.outputs_data import make_invoice


class PathId(int):
    """An id that fills a `{id:int}` route template: test_matrix formats the registered path with str.format,
    which would otherwise read `int` as a format spec."""

    def __format__(self, spec: str) -> str:
        return str(int(self)) if spec == "int" else super().__format__(spec)


def own_invoice(world: World) -> Request:
    seq = world.db.read(lambda s: s.execute(select(func.count()).select_from(Invoice)).scalar_one()) + 1
    invoice_id = make_invoice(world.db, driver_id=world.users["driver1"], seq=seq)
    return Request(path={"id": PathId(invoice_id)})


def own_invoice_print(world: World) -> Request:
    request = own_invoice(world)
    return Request(path=request.path, query={"width": "80"})


ROWS = [
    RbacRow("GET", "/api/v1/invoices/{id:int}/pdf/", expect(401, 200, 404, 200), own_invoice),
    RbacRow(
        "POST",
        "/api/v1/invoices/{id:int}/email/",
        expect(401, 502, 404, 502),
        own_invoice,
        note="no SMTP server at the test settings' 127.0.0.1:25: allowed callers reach the send and get email_failed",
    ),
    RbacRow("GET", "/api/v1/invoices/{id:int}/print/", expect(401, 200, 404, 200), own_invoice_print),
]
