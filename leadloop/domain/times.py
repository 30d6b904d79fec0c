"""Times as leadloop stores and compares them: aware, in UTC (pure)."""

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """A time read from the database as an aware UTC time: SQLite gives back naive UTC, PostgreSQL aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
