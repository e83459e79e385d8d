"""The device's `occurred_at`: kept beside the server's timestamps, within a plausible window."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from domain.clock import zone
from domain.errors import ValidationError
from domain.service import Call

MAX_AHEAD = timedelta(hours=24)


def check_occurred_at(call: Call, occurred_at: datetime, field: str = "occurred_at") -> None:
    """`occurred_at` may not lie more than 24 hours after the server's clock, nor further back than
    `settings.occurred_at_window_days` (default 60): `validation_error` naming the field."""
    if occurred_at > call.now + MAX_AHEAD:
        raise ValidationError(f"'{field}' lies more than 24 hours after the server's time", field)
    window = timedelta(days=call.settings.occurred_at_window_days)
    if occurred_at < call.now - window:
        raise ValidationError(
            f"'{field}' is older than the accepted window of {call.settings.occurred_at_window_days} days", field
        )


def day_bounds(day_from: date | None, day_to: date | None, tz_name: str) -> tuple[datetime | None, datetime | None]:
    """Business-day dates (inclusive) as a half-open UTC range [start, end); a bound at the edge of the
    calendar (year 1 or 9999) is no bound at all."""
    tz = zone(tz_name)

    def utc_midnight(day: date | None, shift: int) -> datetime | None:
        if day is None:
            return None
        try:
            return datetime.combine(day + timedelta(days=shift), time.min, tz).astimezone(UTC)
        except OverflowError:
            return None

    return utc_midnight(day_from, 0), utc_midnight(day_to, 1)
