"""HTTP handlers of the accounts context: parse, authorize (domain.accounts.policy), call one service, encode."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import func, or_, select

from domain.accounts import services, sessions
from domain.accounts.docs import user_doc
from domain.accounts.models import ROLES, User
from domain.accounts.schemas import CreateUser, Login, Logout, RefreshSession, TokenPair, UpdateUser, UserOut
from domain.accounts.throttle import UNKNOWN_ADDRESS
from domain.api import ADMIN, PUBLIC, USER, Ctx, PageQuery, Router, paginate

router = Router("accounts")

TOKEN_ERRORS = ("validation_error", "invalid_token", "token_expired")


def client_address(ctx: Ctx) -> str:
    """The peer's address as the server sees it. `X-Forwarded-For` is NOT trusted: anyone can send it, so
    honouring it would let a client pick a fresh address for every guess (see README, throttling)."""
    client = ctx.request.client
    return client.host if client and client.host else UNKNOWN_ADDRESS


@router.post(
    "/api/v1/auth/login/",
    auth=PUBLIC,
    body=Login,
    response=TokenPair,
    errors=("validation_error", "invalid_credentials", "too_many_attempts"),
)
def login(ctx: Ctx) -> dict[str, Any]:
    """Log in: an access token (keep it in memory) and a refresh token (store it securely)."""
    return sessions.login(ctx.db, ctx.settings, ctx.body, client_address(ctx)).to_dict()


@router.post(
    "/api/v1/auth/refresh/",
    auth=PUBLIC,
    body=RefreshSession,
    response=TokenPair,
    errors=(*TOKEN_ERRORS, "token_reused"),
)
def refresh(ctx: Ctx) -> dict[str, Any]:
    """Spend the refresh token for a new access token AND a new refresh token (rotation)."""
    return sessions.refresh(ctx.db, ctx.settings, ctx.body).to_dict()


@router.post("/api/v1/auth/logout/", auth=PUBLIC, body=Logout, status=204, errors=TOKEN_ERRORS)
def logout(ctx: Ctx) -> None:
    """Log out: the refresh token's whole session (its family) ends, its access tokens too."""
    sessions.logout(ctx.db, ctx.settings, ctx.body)


class UserQuery(PageQuery):
    """`?role=driver&active=true&search=tan` (username or full name contains)."""

    role: Annotated[str | None, Field(pattern="^(" + "|".join(ROLES) + ")$")] = None
    active: bool | None = None
    search: Annotated[str | None, Field(min_length=1, max_length=150)] = None


@router.get("/api/v1/users/", auth=ADMIN, query=UserQuery, response=UserOut, errors=("forbidden",))
def list_users(ctx: Ctx) -> dict[str, Any]:
    """Users, admin only, by id."""
    q: UserQuery = ctx.query
    stmt = select(User).order_by(User.id)
    if q.role is not None:
        stmt = stmt.where(User.role == q.role)
    if q.active is not None:
        stmt = stmt.where(User.active.is_(q.active))
    if q.search:
        pattern = "%" + q.search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(User.username.like(pattern, escape="\\"), func.lower(User.full_name).like(pattern, escape="\\"))
        )
    return ctx.read(lambda s: paginate(ctx, s, stmt, user_doc, q))


@router.post(
    "/api/v1/users/", auth=ADMIN, body=CreateUser, status=201, response=UserOut, errors=("forbidden", "conflict")
)
def create_user(ctx: Ctx) -> dict[str, Any]:
    """Create a user (admin only)."""
    return ctx.run(lambda call: user_doc(services.create_user(call, ctx.body).record))


@router.get("/api/v1/users/{id:int}/", auth=USER, response=UserOut, errors=("not_found",))
def get_user(ctx: Ctx) -> dict[str, Any]:
    """A user: an admin reads anyone, a driver only themselves."""
    return ctx.read(lambda s: user_doc(services.get_user(s, ctx.actor, ctx.path["id"])))


@router.patch(
    "/api/v1/users/{id:int}/",
    auth=USER,
    body=UpdateUser,
    response=UserOut,
    errors=("not_found", "forbidden", "read_only_field", "invalid_state"),
)
def update_user(ctx: Ctx) -> dict[str, Any]:
    """Change a user's role, active flag, full name or password (admin only)."""
    return ctx.run(lambda call: user_doc(services.update_user(call, ctx.path["id"], ctx.body).record))
