"""Time values as the contract writes them: UTC, `YYYY-MM-DDTHH:MM:SSZ`, `.fff` only when non-zero."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Times a request may carry: far enough from datetime's limits that an offset, a jitter or a
# catch-up window never overflows (a year-9999 time with a -18:00 offset does).
EARLIEST = EPOCH
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _in_range(t: datetime) -> datetime:
    try:
        utc = t.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError("the time must lie between 1970-01-01 and 9000-01-01")
    return t


Instant = Annotated[AwareDatetime, AfterValidator(_in_range)]
"""An RFC 3339 time with an offset, from 1970 up to (not including) the year 9000."""


def fmt(t: datetime | None) -> str | None:
    """Format an aware instant in the contract's UTC form (milliseconds only when non-zero)."""
    if t is None:
        return None
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    t = t.astimezone(UTC)
    ms = t.microsecond // 1000
    # Not strftime("%Y"): it does not pad years below 1000 to four digits.
    base = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{base}.{ms:03d}Z" if ms else f"{base}Z"


def parse(s: str) -> datetime:
    """Parse an RFC 3339 time that carries an offset; raise ValueError otherwise."""
    if not isinstance(s, str) or "T" not in s.upper():
        raise ValueError("expected an RFC 3339 time with an offset")
    text = s.strip()
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError("time needs an offset (e.g. Z or +02:00)")
    try:
        return t.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


def to_ms(t: datetime) -> int:
    """Whole milliseconds since the Unix epoch."""
    return (t - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """The instant `ms` milliseconds after the Unix epoch."""
    return EPOCH + ms * _MS


def sortable(t: datetime) -> str:
    """A fixed-width UTC string that sorts like the instant (for index sort keys)."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - EPOCH
