"""Lead rows: validation, normalisation and in-file de-duplication (pure), shared by CLI and HTTP intake."""

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from leadloop.domain.cadence import known_timezone
from leadloop.domain.crm import normalise_tags
from leadloop.domain.text import CONTROL_RE, LONE_SURROGATE

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "industry",
    "company_size",
    "country",
    "region",
    "timezone",
    "locale",
    "product_interest",
    "owner",
)
CONTROL_REASON = "contains control characters (line breaks, tabs, ...)"
_LOCALE_RE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_]([a-zA-Z]{2}|\d{3}))?$")
UTF8_LOCAL_PART_REASON = (
    "has non-ASCII characters before the @: only a mail server offering SMTPUTF8 can deliver it, and this "
    "installation refuses such addresses (LEADLOOP_INTAKE_REFUSE_UTF8_LOCAL_PART)"
)


def intake_context(refuse_utf8_local_part: bool) -> dict[str, Any]:
    """The validation context (`LeadIn.model_validate(..., context=...)`) for the installation's intake rules."""
    return {"refuse_utf8_local_part": refuse_utf8_local_part}


def normalise_email(value: str) -> str:
    """Trimmed, lower-cased and syntax-checked; raises ValueError with the reason."""
    text = value.strip().lower()
    if not text:
        raise ValueError("email is empty")
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not a valid email address: {exc}") from None


def _text_problem(value: str) -> str | None:
    if CONTROL_RE.search(value):  # a field may end up in a header, a subject or a text column
        return CONTROL_REASON
    if LONE_SURROGATE.search(value):
        return "is not valid Unicode text (a lone surrogate)"
    return None


class LeadIn(BaseModel):
    """One lead as intake accepts it; every text kept exactly as written (trimmed).

    Every field is one line: surrounding whitespace (a trailing line break too) is trimmed, and a control
    character inside a value (CR, LF, NUL, ...) refuses the lead, so nothing a lead types can reach a
    header. Lengths are the database's, so a lead that passes here is stored whole.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=300)
    title: str | None = Field(default=None, max_length=300)
    industry: str | None = Field(default=None, max_length=200)
    company_size: str | None = Field(default=None, max_length=50)
    country: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)
    locale: str | None = Field(default=None, max_length=16)
    product_interest: str | None = Field(default=None, max_length=200)
    owner: str | None = Field(default=None, max_length=320)
    external_id: str | None = Field(default=None, max_length=200, description="the CRM's id for the lead (unique)")
    tags: list[str] = Field(default_factory=list, description="tags (a-z, 0-9, _ . : -); a CSV cell splits on ; or |")
    attributes: dict[str, str] = {}

    @field_validator(*PROFILE_FIELDS, "external_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("*")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str) and (problem := _text_problem(value)):
            raise ValueError(problem)
        if isinstance(value, dict):  # attributes: names and values alike
            for key, item in value.items():
                if problem := _text_problem(key) or _text_problem(item):
                    raise ValueError(f"{key!r}: {problem}")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_cell(cls, value: Any) -> Any:
        # a CSV cell (or a string in JSON) holds several tags: "vip; fair-2026" or "vip|fair-2026"
        return [tag for tag in re.split(r"[;|]", value) if tag.strip()] if isinstance(value, str) else value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return normalise_tags(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str, info: ValidationInfo) -> str:
        email = normalise_email(value)
        # the context carries the installation's rules; without one (previews, tests) nothing more is refused
        if (info.context or {}).get("refuse_utf8_local_part") and not email.rpartition("@")[0].isascii():
            raise ValueError(UTF8_LOCAL_PART_REASON)
        return email

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        # a rep's address, matched against the roster at enrolment (an unknown one is reported, the lead kept):
        # not checked as a deliverable address here, so a rep at a reserved test domain matches too
        return value.lower() if value else None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return known_timezone(value) if value else None

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
        update: dict[str, Any] = {
            f: getattr(other, f) for f in (*PROFILE_FIELDS, "external_id") if getattr(self, f) is None
        }
        update["attributes"] = {**other.attributes, **self.attributes}
        try:
            update["tags"] = normalise_tags([*self.tags, *other.tags])
        except ValueError:  # together over the limit: the first row's tags stand
            update["tags"] = self.tags
        return self.model_copy(update=update)


@dataclass(frozen=True)
class RowError:
    row: int  # the line the row starts on (the header is line 1); a quoted value may span lines
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
    """A file that cannot be read as lead rows at all (no email column, not UTF-8, a quote left open, ...)."""


def validate_lead(data: dict[str, Any], context: dict[str, Any] | None = None) -> LeadIn | list[tuple[str, str]]:
    """A LeadIn, or the (field, reason) pairs that stop it; `context` from `intake_context`."""
    try:
        return LeadIn.model_validate(data, context=context)
    except ValidationError as exc:
        return [
            (".".join(str(p) for p in e["loc"]) or "row", e["msg"].removeprefix("Value error, ")) for e in exc.errors()
        ]


def _header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the line it starts on; a CSV syntax problem refuses the file, naming the line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a value over csv's size limit: a quote left open swallows the file
            hint = ": is a quote left open?" if "field limit" in str(exc) else ""
            raise IntakeFileError(f"line {start}: not readable as CSV ({exc}){hint}") from None
        yield start, values


def _header_of(record: tuple[int, list[str]] | None) -> list[str]:
    if record is None:
        raise IntakeFileError("the file is empty: expected a header row with an 'email' column")
    header = [_header(h) for h in record[1]]
    for number, name in enumerate(header, start=1):
        problem = _text_problem(name)
        if problem:
            raise IntakeFileError(f"the header's column {number} {problem}")
        if name and name in header[: number - 1]:
            first = header.index(name) + 1
            raise IntakeFileError(
                f"column {name!r} appears twice in the header (columns {first} and {number}): which one holds the data?"
            )
    if "email" not in header:
        raise IntakeFileError(f"no 'email' column in the header (found: {', '.join(header) or 'nothing'})")
    return header


def parse_csv_text(text: str, context: dict[str, Any] | None = None) -> ParsedRows:
    """Validate every row of a CSV; duplicate emails (any case) merge into the first.

    Rows are reported by the line they start on. Only a file that is not CSV with an email column at all
    raises (IntakeFileError); a bad row is an error in the result and never costs another row.
    """
    records = _records(text.removeprefix("\ufeff"))
    header = _header_of(next(records, None))
    parsed = ParsedRows()
    index: dict[str, int] = {}
    for row_number, values in records:
        if not any(v.strip() for v in values):
            continue
        parsed.total_rows += 1
        if len(values) > len(header):
            parsed.errors.append(RowError(row_number, "row", f"{len(values)} values for {len(header)} columns"))
            continue
        data: dict[str, Any] = {"attributes": {}}
        for name, value in zip(header, values, strict=False):
            if name in PROFILE_FIELDS or name in ("email", "external_id", "tags"):
                data[name] = value
            elif name and value.strip():
                data["attributes"][name] = value.strip()
        result = validate_lead(data, context)
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


def parse_csv(path: Path, context: dict[str, Any] | None = None) -> ParsedRows:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise IntakeFileError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise IntakeFileError(f"cannot read {path}: {exc.strerror}") from None
    return parse_csv_text(text, context)
