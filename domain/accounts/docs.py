"""REST representation of users. The password hash never leaves the database."""

from __future__ import annotations

from typing import Any

from domain.accounts.models import User
from domain.clock import rfc3339


def user_doc(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "version": u.version,
        "last_modified": rfc3339(u.last_modified),
        "username": u.username,
        "full_name": u.full_name,
        "role": u.role,
        "active": u.active,
        "created_at": rfc3339(u.created_at),
    }


def user_summary(u: User) -> dict[str, Any]:
    """The `user` part of a login or refresh answer."""
    return {"id": u.id, "username": u.username, "role": u.role}
