from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from domain.errors import ConfigurationError
from domain.settings import Settings


def test_defaults_and_generated_development_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/lpg.db"
    first = Settings.from_env({"LPG_DATABASE_URL": url})
    again = Settings.from_env({"LPG_DATABASE_URL": url})
    assert first.secret_key == again.secret_key and len(first.secret_key) >= 32
    assert (tmp_path / "lpg.db.secret").stat().st_mode & 0o777 == 0o600
    assert first.gst_rate == Decimal("0.09") and first.port == 8000 and first.dialect == "sqlite"


def test_production_requires_a_key() -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({"LPG_ENV": "production", "LPG_DATABASE_URL": "mysql+pymysql://u@h/db"})


def test_environment_is_read() -> None:
    s = Settings.from_env(
        {
            "LPG_SECRET_KEY": "k" * 40,
            "LPG_GST_RATE": "0.08",
            "LPG_PORT": "9000",
            "LPG_CORS_ORIGINS": "http://a.test, http://b.test",
            "LPG_SMTP_STARTTLS": "true",
            "LPG_DATABASE_URL": "mysql+pymysql://root@127.0.0.1/test",
        }
    )
    assert s.gst_rate == Decimal("0.08") and s.port == 9000 and s.smtp_starttls
    assert s.cors_origins == ("http://a.test", "http://b.test") and s.dialect == "mysql"


def test_bad_values_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({"LPG_SECRET_KEY": "k" * 40, "LPG_PORT": "eighty"})
    with pytest.raises(ConfigurationError):
        Settings.from_env({"LPG_SECRET_KEY": "short"})
