"""Operations: the e-mail outbox and the metrics are admin-only (the metrics also have a token-free local
address, which is not part of the API)."""

from __future__ import annotations

from tests.rbac.matrix import RbacRow, Request, World, expect

ADMIN_ONLY = expect(401, 403, 403, 200)


def failed_email(world: World) -> Request:
    """A failed e-mail (made once, set back to failed for each role)."""
    from sqlalchemy import select, update

    from domain.invoicing.models import EmailOutbox
    from tests.support.outbox_support import queue
    from tests.support.outputs_data import make_invoice

    row = world.db.read(lambda s: s.scalars(select(EmailOutbox.id)).first())
    if row is None:
        row = queue(world.db, world.settings, make_invoice(world.db))
    world.db.run(lambda uow: uow.session.execute(update(EmailOutbox).values(status="failed", attempts=5)))
    return Request(path={"id": row})


ROWS = [
    RbacRow("GET", "/api/v1/outbox/", ADMIN_ONLY),
    RbacRow("POST", "/api/v1/outbox/{id:int}/retry/", ADMIN_ONLY, setup=failed_email),
    RbacRow("GET", "/metrics", ADMIN_ONLY),
]
