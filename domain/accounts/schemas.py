"""Commands of the accounts context: log in, refresh, log out, create and change users."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from domain.accounts.models import ROLES
from domain.wire import Command

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,149}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes any length; the cap only keeps request bodies sane


def normalize_username(value: str) -> str:
    """Usernames are compared in lower case on every engine (MariaDB's collation ignores case, SQLite's does
    not), so `Driver1` and `driver1` are the same user, for login and for throttling alike."""
    return value.strip().lower()


def _username(value: str) -> str:
    value = normalize_username(value)
    if not USERNAME_PATTERN.match(value):
        raise ValueError("1 to 150 characters: letters, digits and . _ @ + - (starting with a letter or digit)")
    return value


def _new_password(value: str) -> str:
    if len(value) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"at least {MIN_PASSWORD_LENGTH} characters")
    if not value.strip():
        raise ValueError("may not be blank")
    return value


Username = Annotated[str, Field(min_length=1, max_length=150), AfterValidator(_username)]
# Passwords are taken exactly as typed: the commands that carry one turn off Command's whitespace stripping.
NewPassword = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH), AfterValidator(_new_password)]
Role = Annotated[str, AfterValidator(lambda r: _role(r))]
FullName = Annotated[str, AfterValidator(str.strip), Field(max_length=200)]
AS_TYPED = ConfigDict(str_strip_whitespace=False)
DeviceId = Annotated[str, Field(min_length=1, max_length=100)]
JwtString = Annotated[str, Field(min_length=1, max_length=4096)]


def _role(value: str) -> str:
    if value not in ROLES:
        raise ValueError(f"must be one of {', '.join(ROLES)}")
    return value


class Login(Command):
    """`{"username", "password", "device_id"?}`: the tablet names itself so its refresh token is tied to it."""

    model_config = AS_TYPED

    username: Annotated[str, Field(min_length=1, max_length=150)]
    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
    device_id: DeviceId | None = None

    @field_validator("username")
    @classmethod
    def _lower(cls, value: str) -> str:
        return normalize_username(value)


class RefreshSession(Command):
    """`{"refresh"}`: a refresh token, spent by this call and replaced by a new one."""

    refresh: JwtString


class Logout(Command):
    """`{"refresh"}`: the refresh token whose family (the whole login session) ends."""

    refresh: JwtString


class CreateUser(Command):
    model_config = AS_TYPED

    username: Username
    password: NewPassword
    role: Role
    full_name: FullName = ""
    active: bool = True


class UpdateUser(Command):
    """Admin-only fields, all optional; `password` sets a new one (a reset) and ends the user's sessions."""

    model_config = AS_TYPED

    role: Role | None = None
    active: bool | None = None
    password: NewPassword | None = None
    full_name: FullName | None = None

    read_only: ClassVar[frozenset[str]] = frozenset({"username", "id", "password_hash", "created_at"})
    admin_only: ClassVar[frozenset[str]] = frozenset({"role", "active", "password", "full_name"})

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


# -- what the endpoints answer (the OpenAPI document and, in tests, the response check read these) -----


class UserSummary(BaseModel):
    id: int
    username: str
    role: Literal["driver", "admin"]


class TokenPair(BaseModel):
    """A login or refresh answer. Keep `access` in memory; store `refresh` securely and use it once."""

    access: str = Field(description="JWT access token, sent as `Authorization: Bearer <access>`")
    refresh: str = Field(description="JWT refresh token: spent by the next refresh, which answers a new one")
    access_expires_in: int = Field(description="seconds until the access token expires")
    user: UserSummary


class UserOut(BaseModel):
    """A user as the API shows it; the password hash never leaves the database."""

    id: int
    version: int
    last_modified: str
    username: str
    full_name: str
    role: Literal["driver", "admin"]
    active: bool
    created_at: str
