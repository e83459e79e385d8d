"""The one RBAC module: admin-only actions, own-records-only visibility (404, never 403), mass assignment."""

from __future__ import annotations

import pytest

from domain.accounts.policy import Actor, ensure_visible, owner_filter, refuse_admin_only_fields, require_admin
from domain.errors import Forbidden, NotFound, ReadOnlyField

ADMIN = Actor(1, "admin", "admin")
DRIVER = Actor(2, "driver1", "driver")
OTHER = Actor(3, "driver2", "driver")


def test_admin_only_actions() -> None:
    require_admin(ADMIN, "user management")
    with pytest.raises(Forbidden) as refused:
        require_admin(DRIVER, "user management")
    assert refused.value.status == 403 and "user management" in refused.value.message


def test_a_driver_sees_only_their_own_records_and_gets_404_for_anothers() -> None:
    ensure_visible(DRIVER, 2, "transaction", 9)
    ensure_visible(ADMIN, 2, "transaction", 9)
    for owner in (2, None):
        with pytest.raises(NotFound) as hidden:
            ensure_visible(OTHER, owner, "transaction", 9)
        assert hidden.value.status == 404 and hidden.value.details == {"entity": "transaction", "id": 9}
    assert owner_filter(DRIVER) == 2 and owner_filter(ADMIN) is None


@pytest.mark.parametrize("field", ["role", "meter_rate", "unit_price", "driver_id"])
def test_mass_assignment_is_refused_by_name_for_drivers_only(field: str) -> None:
    admin_only = {"role", "meter_rate", "unit_price", "driver_id"}
    refuse_admin_only_fields(ADMIN, [field], admin_only)
    refuse_admin_only_fields(DRIVER, ["name", "phone"], admin_only)
    with pytest.raises(ReadOnlyField) as refused:
        refuse_admin_only_fields(DRIVER, ["name", field], admin_only, prefix="lines[0].")
    assert refused.value.details == {"field": f"lines[0].{field}"} and refused.value.code == "read_only_field"
