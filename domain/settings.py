"""Settings: one typed object, read from the environment once and passed down explicitly."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

from domain.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite:///lpg.db"
MAX_BODY_BYTES = 5 * 1024 * 1024


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _decimal(name: str, value: str | None, default: str) -> Decimal:
    try:
        return Decimal(value if value not in (None, "") else default)
    except InvalidOperation as exc:
        raise ConfigurationError(f"{name} must be a decimal number, got {value!r}") from exc


def _int(name: str, value: str | None, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {value!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Every knob the server has. Names in the environment are `LPG_` + the field name in capitals."""

    database_url: str = DEFAULT_DATABASE_URL
    secret_key: str = ""
    env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # How long an idle keep-alive connection stays open: longer than the idle timeout of whatever keeps
    # connections to the server (a load balancer, a client's pool), so that the other side closes first.
    keepalive_seconds: int = 75
    gst_rate: Decimal = Decimal("0.09")
    timezone: str = "Asia/Singapore"
    access_ttl_seconds: int = 15 * 60
    refresh_ttl_seconds: int = 7 * 24 * 3600
    occurred_at_window_days: int = 60
    max_body_bytes: int = MAX_BODY_BYTES
    db_pool_size: int = 20
    db_attempts: int = 6  # attempts of a unit of work after transient database faults (see domain.dbfaults)
    db_retry_seconds: float = 8.0  # no new attempt starts later than this after the first
    # Galera's wsrep_sync_wait for every connection: -1 (auto) = 1 (reads wait until the node has applied
    # everything committed in the cluster before them) on a Galera node, untouched elsewhere; 0..15 as given.
    db_sync_wait: int = -1
    sqlite_synchronous: str = "FULL"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "invoices@hsh-lpg.example"
    auto_email: bool = False
    email_attempts: int = 5
    email_backoff_seconds: float = 30.0
    outbox_poll_seconds: float = 2.0
    outbox_lease_seconds: float = 120.0
    login_attempts_keep_days: int = 30
    metrics_addr: str = ""
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    company_name: str = "HSH LPG Trading Pte Ltd"
    company_address: str = "8 Jurong Port Road, Singapore 619116"
    gst_reg_no: str = "M90-0000000-X"
    paynow_uen: str = "201900000X"
    validate_responses: bool = False

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def dialect(self) -> str:
        """`sqlite` or `mysql` (MariaDB answers as mysql)."""
        return "sqlite" if self.database_url.startswith("sqlite") else "mysql"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read `LPG_*` variables; in development a secret key is generated once and kept beside the database."""
        env = os.environ if environ is None else environ
        get = env.get
        settings = cls(
            database_url=get("LPG_DATABASE_URL") or DEFAULT_DATABASE_URL,
            secret_key=get("LPG_SECRET_KEY", ""),
            env=get("LPG_ENV", "development"),
            host=get("LPG_HOST", "127.0.0.1"),
            port=_int("LPG_PORT", get("LPG_PORT"), 8000),
            workers=_int("LPG_WORKERS", get("LPG_WORKERS"), 1),
            keepalive_seconds=_int("LPG_KEEPALIVE_SECONDS", get("LPG_KEEPALIVE_SECONDS"), 75),
            gst_rate=_decimal("LPG_GST_RATE", get("LPG_GST_RATE"), "0.09"),
            timezone=get("LPG_TIMEZONE", "Asia/Singapore"),
            access_ttl_seconds=_int("LPG_ACCESS_TTL", get("LPG_ACCESS_TTL"), 15 * 60),
            refresh_ttl_seconds=_int("LPG_REFRESH_TTL", get("LPG_REFRESH_TTL"), 7 * 24 * 3600),
            occurred_at_window_days=_int("LPG_OCCURRED_AT_WINDOW_DAYS", get("LPG_OCCURRED_AT_WINDOW_DAYS"), 60),
            db_pool_size=_int("LPG_DB_POOL_SIZE", get("LPG_DB_POOL_SIZE"), 20),
            db_attempts=_int("LPG_DB_ATTEMPTS", get("LPG_DB_ATTEMPTS"), 6),
            db_retry_seconds=float(_decimal("LPG_DB_RETRY_SECONDS", get("LPG_DB_RETRY_SECONDS"), "8")),
            db_sync_wait=_int("LPG_DB_SYNC_WAIT", get("LPG_DB_SYNC_WAIT"), -1),
            sqlite_synchronous=get("LPG_SQLITE_SYNCHRONOUS", "FULL").upper(),
            smtp_host=get("LPG_SMTP_HOST", "127.0.0.1"),
            smtp_port=_int("LPG_SMTP_PORT", get("LPG_SMTP_PORT"), 25),
            smtp_user=get("LPG_SMTP_USER", ""),
            smtp_password=get("LPG_SMTP_PASSWORD", ""),
            smtp_starttls=_bool(get("LPG_SMTP_STARTTLS"), False),
            mail_from=get("LPG_MAIL_FROM", "invoices@hsh-lpg.example"),
            auto_email=_bool(get("LPG_AUTO_EMAIL"), False),
            email_attempts=_int("LPG_EMAIL_ATTEMPTS", get("LPG_EMAIL_ATTEMPTS"), 5),
            email_backoff_seconds=float(_decimal("LPG_EMAIL_BACKOFF_SECONDS", get("LPG_EMAIL_BACKOFF_SECONDS"), "30")),
            outbox_poll_seconds=float(_decimal("LPG_OUTBOX_POLL_SECONDS", get("LPG_OUTBOX_POLL_SECONDS"), "2")),
            outbox_lease_seconds=float(_decimal("LPG_OUTBOX_LEASE_SECONDS", get("LPG_OUTBOX_LEASE_SECONDS"), "120")),
            login_attempts_keep_days=_int("LPG_LOGIN_ATTEMPTS_KEEP_DAYS", get("LPG_LOGIN_ATTEMPTS_KEEP_DAYS"), 30),
            metrics_addr=get("LPG_METRICS_ADDR", ""),
            cors_origins=tuple(o.strip() for o in get("LPG_CORS_ORIGINS", "").split(",") if o.strip()),
            company_name=get("LPG_COMPANY_NAME", "HSH LPG Trading Pte Ltd"),
            company_address=get("LPG_COMPANY_ADDRESS", "8 Jurong Port Road, Singapore 619116"),
            gst_reg_no=get("LPG_GST_REG_NO", "M90-0000000-X"),
            paynow_uen=get("LPG_PAYNOW_UEN", "201900000X"),
            validate_responses=_bool(get("LPG_VALIDATE_RESPONSES"), False),
        )
        if overrides:
            settings = replace(settings, **overrides)  # type: ignore[arg-type]
        if settings.env not in {"development", "production", "test"}:
            raise ConfigurationError("LPG_ENV must be development, production or test")
        if settings.db_attempts < 1 or settings.db_retry_seconds <= 0:
            raise ConfigurationError("LPG_DB_ATTEMPTS must be at least 1 and LPG_DB_RETRY_SECONDS above 0")
        if not -1 <= settings.db_sync_wait <= 15:
            raise ConfigurationError("LPG_DB_SYNC_WAIT must be -1 (auto) or 0..15 (a wsrep_sync_wait mask)")
        if settings.sqlite_synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigurationError("LPG_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        if settings.keepalive_seconds < 1:
            raise ConfigurationError("LPG_KEEPALIVE_SECONDS must be at least 1")
        if settings.email_attempts < 1:
            raise ConfigurationError("LPG_EMAIL_ATTEMPTS must be at least 1")
        if settings.outbox_poll_seconds <= 0 or settings.outbox_lease_seconds <= 0:
            raise ConfigurationError("LPG_OUTBOX_POLL_SECONDS and LPG_OUTBOX_LEASE_SECONDS must be positive")
        if not settings.secret_key:
            if settings.is_production:
                raise ConfigurationError("LPG_SECRET_KEY is required when LPG_ENV=production")
            settings = replace(settings, secret_key=_development_secret(settings.database_url))
        if len(settings.secret_key) < 32:
            raise ConfigurationError("LPG_SECRET_KEY must be at least 32 characters")
        return settings


def _development_secret(database_url: str) -> str:
    """A key generated once and kept in a file beside the SQLite database (or the working directory)."""
    path = Path("lpg.secret")
    if database_url.startswith("sqlite:///") and database_url != "sqlite:///:memory:":
        db_path = Path(database_url.removeprefix("sqlite:///"))
        path = db_path.with_name(db_path.name + ".secret")
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
