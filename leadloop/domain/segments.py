"""Segments (pure): a saved, named filter over leads' search attributes, built from validated fields only."""

import re
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leadloop.domain.cadence import parse_wait
from leadloop.domain.crm import CrmInputError, normalise_tag
from leadloop.domain.models import STAGES, Stage

SEGMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
CADENCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
CATEGORY_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")  # scoring.yaml's CategoryRule.name
MAX_SCORE = 100_000
# a relative "last engaged" bound: how long ago ('30d', '2w', '12h'), as cadence waits are written
_AGO = re.compile(r"\d+\s*[wdhm].*")


class SegmentError(ValueError):
    """A segment that cannot be saved or used; the message names the field and why."""


def check_segment_name(name: str) -> str:
    if not SEGMENT_NAME.fullmatch(name):
        raise SegmentError(
            f"segment name {name!r} is not allowed: 1-64 of a-z, 0-9, _ and - (starting with a letter or digit)"
        )
    return name


def _moment(value: object) -> str:
    """A 'last engaged' bound as stored: a date (YYYY-MM-DD) or a duration ago such as '30d' (kept as written, so
    the segment stays relative: '30d' means thirty days before each use)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError("give a date (YYYY-MM-DD) or a duration ago such as '30d', '2w' or '12h'")
    text = value.strip()
    if _AGO.fullmatch(text):
        parse_wait(text)  # refuses what is not a duration, or over a year
        return text
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a date (YYYY-MM-DD) nor a duration ago such as '30d', '2w' or '12h'"
        ) from None


def resolve_moment(value: str, now: datetime) -> datetime:
    """A stored bound as the instant it means now: a date's midnight UTC, or `now` less the duration."""
    if _AGO.fullmatch(value):
        return now.astimezone(UTC) - parse_wait(value)
    return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)


class SegmentFilter(BaseModel):
    """What a segment matches; every field optional, all given must hold (tags_any: one of them is enough)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: list[Stage] = Field(default_factory=list, description="one of these stages (a stage or a list)")
    min_score: int | None = Field(default=None, ge=0, le=MAX_SCORE)
    max_score: int | None = Field(default=None, ge=0, le=MAX_SCORE)
    category: str | None = Field(default=None, description="scoring.yaml's category (LeadCategory)")
    tags_all: list[str] = Field(default_factory=list, max_length=20, description="has every one of these tags")
    tags_any: list[str] = Field(default_factory=list, max_length=20, description="has at least one of these tags")
    cadence: str | None = None
    rep: int | None = Field(default=None, ge=1, le=2**31 - 1, description="the assigned rep's id")
    last_engaged_before: str | None = Field(default=None, description="a date, or a duration ago such as '30d'")
    last_engaged_after: str | None = Field(default=None, description="a date, or a duration ago such as '30d'")

    @field_validator("stage", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            unknown = [s for s in value if s not in STAGES]
            if unknown:
                raise ValueError(f"{unknown[0]!r} is not a stage; one of: {', '.join(STAGES)}")
            return sorted(set(value), key=STAGES.index)
        return value

    @field_validator("tags_all", "tags_any")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        try:
            return sorted({normalise_tag(tag) for tag in value})
        except CrmInputError as err:
            raise ValueError(str(err)) from None

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        if value is not None and not CATEGORY_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a category name (a-z, 0-9, _ and -, starting with a letter)")
        return value

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: str | None) -> str | None:
        if value is not None and not CADENCE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a cadence name")
        return value

    @field_validator("last_engaged_before", "last_engaged_after", mode="before")
    @classmethod
    def _moments(cls, value: Any) -> Any:
        return None if value is None else _moment(value)

    @model_validator(mode="after")
    def _bounds(self) -> "SegmentFilter":
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise ValueError(f"min_score {self.min_score} is above max_score {self.max_score}: nothing could match")
        return self

    def described(self) -> str:
        """The filter in one line, as `segment list` shows it."""
        given = self.model_dump(exclude_defaults=True)
        return "; ".join(
            f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}" for key, value in given.items()
        )


FIELDS: tuple[str, ...] = tuple(SegmentFilter.model_fields)


def parse_filter(data: object) -> SegmentFilter:
    """A filter from stored or sent JSON; an unknown field or a bad value is a SegmentError naming it."""
    if isinstance(data, SegmentFilter):
        return data
    if not isinstance(data, dict):
        raise SegmentError("a segment's filter is an object of fields: " + ", ".join(FIELDS))
    unknown = [key for key in data if key not in FIELDS]
    if unknown:
        raise SegmentError(f"unknown field {str(unknown[0])!r}; a segment filters on: {', '.join(FIELDS)}")
    try:
        return SegmentFilter.model_validate(data)
    except ValidationError as exc:
        raise SegmentError("; ".join(_problem(error) for error in exc.errors())) from None


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def stored(filter: SegmentFilter) -> dict[str, Any]:
    """The filter as the segments table keeps it (only the fields given)."""
    return filter.model_dump(exclude_defaults=True)
