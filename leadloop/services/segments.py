"""Saved segments in the database (add, list, find, remove) and how many running leads each matches now."""

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from leadloop.domain.crm import CrmInputError, check_actor
from leadloop.domain.search import RunStatus, segment_query
from leadloop.domain.segments import SegmentError, SegmentFilter, check_segment_name, parse_filter, stored
from leadloop.domain.text import CONTROL_RE
from leadloop.infra.db import Segment

MAX_DESCRIPTION = 500


class SegmentExists(SegmentError):
    """A segment of that name is saved already."""


class NoSegment(SegmentError):
    """No segment of that name is saved."""


@dataclass(frozen=True)
class SavedSegment:
    """A stored segment, its filter validated again as it is read (a row edited by hand cannot inject)."""

    name: str
    filter: SegmentFilter
    description: str
    created_by: str
    created_at: datetime

    def query(self, now: datetime | None = None, *, status: RunStatus = "running") -> str:
        """Its visibility query now ('30d' bounds resolve against `now`); running leads only unless asked."""
        return segment_query(self.filter, now or datetime.now(UTC), status)


def _saved(row: Segment) -> SavedSegment:
    try:
        filter = parse_filter(row.filter)
    except SegmentError as exc:
        raise SegmentError(f"segment '{row.name}' as stored: {exc}") from None
    return SavedSegment(
        name=row.name,
        filter=filter,
        description=row.description or "",
        created_by=row.created_by or "",
        created_at=row.created_at,
    )


async def add_segment(
    session: AsyncSession,
    name: str,
    filter: object,
    *,
    description: str = "",
    actor: str = "",
    categories: list[str] | None = None,
) -> SavedSegment:
    """Save a segment (the caller commits); SegmentError names what is wrong and nothing is stored.

    Args:
        categories: scoring.yaml's category names, when it has any: a filter's category must be one of them.
    """
    check_segment_name(name)
    checked = parse_filter(filter)
    if categories and checked.category is not None and checked.category not in categories:
        raise SegmentError(f"category: {checked.category!r} is not in scoring.yaml; one of: {', '.join(categories)}")
    if len(description) > MAX_DESCRIPTION:
        raise SegmentError(f"description: at most {MAX_DESCRIPTION} characters")
    if CONTROL_RE.search(description):  # one line in `segment list`; PostgreSQL takes no NUL in text
        raise SegmentError("description: one line, without control characters")
    if actor:
        try:
            check_actor(actor)
        except CrmInputError as exc:
            raise SegmentError(str(exc)) from None
    if await session.scalar(select(Segment.id).where(Segment.name == name)) is not None:
        raise SegmentExists(f"a segment named '{name}' exists: `leadloop segment remove {name}` first")
    row = Segment(name=name, filter=stored(checked), description=description or None, created_by=actor or None)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # the same name saved at the same moment elsewhere: the unique index decides
        await session.rollback()
        raise SegmentExists(f"a segment named '{name}' exists") from None
    return _saved(row)


async def list_segments(session: AsyncSession) -> list[SavedSegment]:
    rows = await session.scalars(select(Segment).order_by(Segment.name))
    return [_saved(row) for row in rows]


async def find_segment(session: AsyncSession, name: str) -> SavedSegment:
    """The segment by name; SegmentError when there is none."""
    row = await session.scalar(select(Segment).where(Segment.name == name))
    if row is None:
        raise NoSegment(f"no segment named {name!r} (`leadloop segment list`)")
    return _saved(row)


async def remove_segment(session: AsyncSession, name: str) -> None:
    """Remove a segment (the caller commits); SegmentError when there is none."""
    done = await session.execute(delete(Segment).where(Segment.name == name))
    if not getattr(done, "rowcount", 0):
        raise NoSegment(f"no segment named {name!r} (`leadloop segment list`)")


async def count_running(client: Client, segment: SavedSegment) -> int:
    """How many running leads the segment matches now (Temporal's visibility: it follows within moments)."""
    return (await client.count_workflows(segment.query())).count
