"""Time values as the contract writes them: UTC, `YYYY-MM-DDTHH:MM:SSZ`, `.fff` only when non-zero."""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fmt(t: datetime | None) -> str | None:
    """Format an aware instant in the contract's UTC form (milliseconds only when non-zero)."""
    if t is None:
        return None
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    t = t.astimezone(UTC)
    ms = t.microsecond // 1000
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
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
    return t.astimezone(UTC)


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
