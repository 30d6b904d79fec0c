"""Lead rows: validation, normalisation and in-file de-duplication (pure), shared by CLI and HTTP intake."""

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from leadloop.schedule import check_timezone

PROFILE_FIELDS = (
    "first_name", "last_name", "company", "title", "industry", "company_size",
    "country", "region", "timezone", "locale", "product_interest", "owner",
)  # fmt: skip
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_LOCALE_RE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_]([a-zA-Z]{2}|\d{3}))?$")


def normalise_email(value: str) -> str:
    """Trimmed, lower-cased and syntax-checked; raises ValueError with the reason."""
    text = value.strip().lower()
    if not text:
        raise ValueError("email is empty")
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not a valid email address: {exc}") from None


class LeadIn(BaseModel):
    """One lead as intake accepts it; every text kept exactly as written (trimmed)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    industry: str | None = None
    company_size: str | None = None
    country: str | None = None
    region: str | None = None
    timezone: str | None = None
    locale: str | None = None
    product_interest: str | None = None
    owner: str | None = None
    attributes: dict[str, str] = {}

    @field_validator(*PROFILE_FIELDS, mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("*")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str) and _CONTROL_RE.search(value):
            raise ValueError("contains control characters (line breaks, tabs, ...)")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        return normalise_email(value) if value else None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return check_timezone(value) if value else None

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if not value:
            return None
        match = _LOCALE_RE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a locale such as 'en', 'el' or 'de-AT'")
        language, region = match.groups()
        return f"{language.lower()}-{region.upper()}" if region else language.lower()

    def merged_with(self, other: "LeadIn") -> "LeadIn":
        """This lead with the gaps filled from another record of the same person."""
        update = {f: getattr(other, f) for f in PROFILE_FIELDS if getattr(self, f) is None}
        update["attributes"] = {**other.attributes, **self.attributes}
        return self.model_copy(update=update)


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    reason: str


@dataclass
class ParsedRows:
    """Valid leads (de-duplicated, with the row numbers each came from) and rejected rows."""

    leads: list[LeadIn] = field(default_factory=list)
    rows_of: dict[str, list[int]] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    total_rows: int = 0

    @property
    def duplicates(self) -> int:
        return sum(len(rows) - 1 for rows in self.rows_of.values())


class IntakeFileError(Exception):
    """A file that cannot be read as lead rows at all (no email column, not UTF-8, ...)."""


def validate_lead(data: dict[str, Any]) -> LeadIn | list[tuple[str, str]]:
    """A LeadIn, or the (field, reason) pairs that stop it."""
    try:
        return LeadIn.model_validate(data)
    except ValidationError as exc:
        return [
            (".".join(str(p) for p in e["loc"]) or "row", e["msg"].removeprefix("Value error, ")) for e in exc.errors()
        ]


def _header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def parse_csv_text(text: str) -> ParsedRows:
    """Validate every row of a CSV; duplicate emails (any case) merge into the first."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [_header(h) for h in next(reader)]
    except StopIteration:
        raise IntakeFileError("the file is empty: expected a header row with an 'email' column") from None
    if "email" not in header:
        raise IntakeFileError(f"no 'email' column in the header (found: {', '.join(header) or 'nothing'})")
    parsed = ParsedRows()
    index: dict[str, int] = {}
    for row_number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        parsed.total_rows += 1
        if len(values) > len(header):
            parsed.errors.append(RowError(row_number, "row", f"{len(values)} values for {len(header)} columns"))
            continue
        data: dict[str, Any] = {"attributes": {}}
        for name, value in zip(header, values, strict=False):
            if name in PROFILE_FIELDS or name == "email":
                data[name] = value
            elif name and value.strip():
                data["attributes"][name] = value.strip()
        result = validate_lead(data)
        if isinstance(result, list):
            parsed.errors.extend(RowError(row_number, f, r) for f, r in result)
            continue
        if result.email in index:
            position = index[result.email]
            parsed.leads[position] = parsed.leads[position].merged_with(result)
        else:
            index[result.email] = len(parsed.leads)
            parsed.leads.append(result)
        parsed.rows_of.setdefault(result.email, []).append(row_number)
    return parsed


def parse_csv(path: Path) -> ParsedRows:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise IntakeFileError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise IntakeFileError(f"cannot read {path}: {exc.strerror}") from None
    return parse_csv_text(text)
