"""Users: created and changed by an admin only (role, active, password reset, full name).

A driver may read their own user record and nothing else (another user's is 404); a driver who sends any
field to change it gets `read_only_field` naming the field, and nothing changes. Users are deactivated,
never deleted; deactivation and a password reset end every session of the user at once. The last active
admin cannot be demoted or deactivated (nobody could manage users any more).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.accounts.docs import user_doc
from domain.accounts.models import User
from domain.accounts.passwords import hash_password
from domain.accounts.policy import ADMIN, Actor, ensure_visible, refuse_admin_only_fields, require_admin
from domain.accounts.schemas import CreateUser, UpdateUser
from domain.accounts.sessions import ENTITY, revoke_user_sessions
from domain.audit.services import audit
from domain.errors import Conflict, InvalidState, NotFound
from domain.service import Call, Outcome

MAX_ID = 2**63 - 1


def create_user(call: Call, cmd: CreateUser) -> Outcome:
    """An admin creates a user; usernames are unique (compared in lower case)."""
    require_admin(call.actor, "user management")
    session = call.session
    if session.execute(select(User.id).where(User.username == cmd.username)).first() is not None:
        raise _taken(cmd.username)
    password_hash = hash_password(cmd.password)
    user = User(
        username=cmd.username,
        full_name=cmd.full_name,
        password_hash=password_hash,
        role=cmd.role,
        active=cmd.active,
        created_at=call.now,
        last_modified=call.now,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # created by a concurrent request since the check above
        raise _taken(cmd.username) from exc
    audit(session, call.actor.id, call.device_id, "create", ENTITY, user, after=lambda: user_doc(user))
    return Outcome(ENTITY, user)


def get_user(session: Session, actor: Actor, user_id: int) -> User:
    """An admin reads any user; a driver only themselves (anyone else is 404, like a missing user)."""
    user = session.get(User, user_id) if 0 < user_id <= MAX_ID else None
    ensure_visible(actor, user.id if user else None, ENTITY, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found", {"entity": ENTITY, "id": user_id})
    return user


def update_user(call: Call, user_id: int, cmd: UpdateUser) -> Outcome:
    """Change role, active, full name or password (a reset). Only what differs is changed and audited."""
    actor, session, changes = call.actor, call.session, cmd.changes()
    # Check: visibility first (another driver's record is 404), then the fields a driver may not send.
    ensure_visible(actor, user_id, ENTITY, user_id)
    refuse_admin_only_fields(actor, sorted(changes), UpdateUser.admin_only)
    require_admin(actor, "user management")
    user = _lock(session, user_id, admin_change="role" in changes or "active" in changes)
    new_hash = hash_password(changes["password"]) if changes.get("password") is not None else None
    wanted = {k: v for k, v in changes.items() if k != "password" and v is not None and getattr(user, k) != v}
    if not wanted and new_hash is None:
        return Outcome(ENTITY, user)  # nothing differs: no new version, no audit entry
    _keep_an_admin(session, user, wanted)
    # Act.
    before = user_doc(user)
    for name, value in wanted.items():
        setattr(user, name, value)
    if new_hash is not None:
        user.password_hash = new_hash
    user.touch(call.now)
    ended = 0
    if new_hash is not None or wanted.get("active") is False:
        ended = revoke_user_sessions(session, user.id, call.now)
    context: dict[str, Any] = {"sessions_ended": ended}
    if new_hash is not None:
        context["password_reset"] = True  # never the password or its hash
    audit(
        session,
        actor.id,
        call.device_id,
        "update",
        ENTITY,
        user,
        before=before,
        after=lambda: user_doc(user),
        **context,
    )
    return Outcome(ENTITY, user)


def _lock(session: Session, user_id: int, admin_change: bool) -> User:
    """The user's row, locked; with every active admin's row too (in id order) when admin status may change."""
    wanted = User.id == min(max(user_id, 0), MAX_ID)  # ids out of range name nobody (and fit the column)
    if admin_change:
        wanted = or_(wanted, and_(User.role == ADMIN, User.active.is_(True)))
    rows = session.scalars(
        select(User).where(wanted).order_by(User.id).with_for_update().execution_options(populate_existing=True)
    ).all()
    user = next((row for row in rows if row.id == user_id), None) if 0 < user_id <= MAX_ID else None
    if user is None:
        raise NotFound(f"user {user_id} not found", {"entity": ENTITY, "id": user_id})
    return user


def _keep_an_admin(session: Session, user: User, wanted: dict[str, Any]) -> None:
    stays_admin = wanted.get("role", user.role) == ADMIN and wanted.get("active", user.active)
    if user.role != ADMIN or not user.active or stays_admin:
        return
    others = session.execute(
        select(User.id).where(User.role == ADMIN, User.active.is_(True), User.id != user.id).limit(1)
    ).first()
    if others is None:
        raise InvalidState("the last active admin cannot be demoted or deactivated", {"entity": ENTITY, "id": user.id})


def _taken(username: str) -> Conflict:
    return Conflict(f"the username '{username}' is taken", {"field": "username", "username": username})
