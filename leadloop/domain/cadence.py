"""Cadence files: the schema marketers write in YAML, and a loader whose errors name file, line and field."""

import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from leadloop.domain.rules import Lines, RuleFileError, Strict, load_model_lines, parse_model_lines
from leadloop.domain.text import CONTROL_RE

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LOCALES = ("en", "el", "de", "es", "pl", "hu")

MAX_WAIT = timedelta(days=365)
_WAIT_RE = re.compile(r"^\s*(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$")


def parse_wait(value: Any) -> timedelta:
    """'3d', '1d12h', '2w', '90m' or '0' as a timedelta; negative or over a year is refused."""
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("wait must be a duration such as '3d', '1d12h', '2w' or '90m'")
    elif isinstance(value, int) or value.strip().lstrip("-").isdigit():
        if int(value) != 0:
            raise ValueError("a bare number is ambiguous: write a unit, e.g. '3d' or '12h'")
        delta = timedelta(0)
    elif value.strip().upper().startswith(("P", "-P")):
        # ISO 8601, as a cadence snapshot comes back from a workflow's JSON input
        try:
            delta = TypeAdapter(timedelta).validate_python(value.strip())
        except ValidationError:
            raise ValueError(f"wait {value!r} is not an ISO 8601 duration such as 'P3D'") from None
    else:
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"wait {text!r} is negative: a step cannot be sent before the one it follows")
        match = _WAIT_RE.match(text)
        if not text or not match or not any(match.groups()):
            raise ValueError(f"wait {text!r} is not a duration such as '3d', '1d12h', '2w' or '90m'")
        weeks, days, hours, minutes = (int(g) if g else 0 for g in match.groups())
        delta = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)
    if delta < timedelta(0):
        raise ValueError("wait is negative: a step cannot be sent before the one it follows")
    if delta > MAX_WAIT:
        raise ValueError(f"wait of {delta.days} days is absurd: at most {MAX_WAIT.days} days per step")
    return delta


def _parse_time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 09:00 as the sexagesimal integer 540
        return time(value // 60, value % 60) if 0 <= value < 24 * 60 else value
    return value


# C0 and C1 controls (CR, LF, NUL, NEL, ...) and Unicode's line and paragraph separators: none belongs in a
# one-line value, and any of them could end a header line somewhere on the way to a mailbox


def _one_line(value: str) -> str:
    if CONTROL_RE.search(value):
        raise ValueError("must be one line without control characters: it goes into an email header")
    return value


Wait = Annotated[timedelta, BeforeValidator(parse_wait)]
LocalTime = Annotated[time, BeforeValidator(_parse_time)]
HeaderText = Annotated[str, AfterValidator(_one_line)]  # a display name or an address


def check_timezone(name: str) -> str:
    """Return an IANA zone name unchanged, or raise ValueError naming it."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Athens") from None
    return name


def known_timezone(name: str) -> str:
    """An IANA zone name unchanged, or ValueError naming it, also for a name the file system refuses (too long)."""
    try:
        return check_timezone(name)
    except OSError:
        shown = name if len(name) <= 60 else f"{name[:60]}…"
        raise ValueError(f"unknown time zone {shown!r}: use an IANA name such as Europe/Athens") from None


def require_unique(values: list[str], what: str) -> None:
    """Raise ValueError naming the repeated values, e.g. 'step ids must be unique; repeated: tips'."""
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(dupes)}")


class SendWindow(Strict):
    """The weekdays and local hours in which a lead may receive email."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    start: LocalTime = time(9, 0)
    end: LocalTime = time(17, 0)

    @model_validator(mode="after")
    def _not_empty(self) -> "SendWindow":
        if not self.days:
            raise ValueError("send window has no days: list at least one of mon..sun")
        if self.start >= self.end:
            raise ValueError(f"send window is empty: start {self.start:%H:%M} must be before end {self.end:%H:%M}")
        return self


class Sender(Strict):
    """Who the emails come from."""

    name: HeaderText = Field(min_length=1)
    address: HeaderText = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    postal_address: str | None = None


class Step(Strict):
    """One email of the cadence."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    wait: Wait
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    subject: str | dict[str, str]

    def subject_for(self, locale: str, default_locale: str) -> str:
        """The subject template for a locale, falling back to the cadence's default."""
        if isinstance(self.subject, str):
            return self.subject
        return self.subject.get(locale) or self.subject[default_locale]


class Escalation(Strict):
    """When a lead goes to sales: its score reaches the threshold."""

    threshold: int = Field(ge=1, le=10_000)


#: An out-of-office pauses a lead's drip at most this long, whatever return date it states.
MAX_AUTO_REPLY_PAUSE = timedelta(days=90)
#: the step id of a cadence's big-bang email, in the outbox, the workflow's details and the report
BIG_BANG_STEP = "big-bang"


class BigBang(Strict):
    """One last, special email after N sends in a row that nobody opened (e.g. a personal offer)."""

    after_unopened: int = Field(ge=1, le=50)
    wait: Wait = Field(default=timedelta(days=3), description="after the last regular send")
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    subject: str | dict[str, str]
    response_window: Wait = Field(default=timedelta(days=14), description="no human engagement by then: dormant")


class Cadence(Strict):
    """A marketer's cadence; a snapshot of it travels in each lead's workflow input."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    version: int = Field(ge=1)
    description: str = ""
    default_locale: str = "en"
    default_timezone: str = "UTC"
    send_window: SendWindow = SendWindow()
    sender: Sender | None = Field(default=None, description="defaults to LEADLOOP_FROM_ADDRESS")
    steps: list[Step] = Field(min_length=1)
    escalation: Escalation | None = Field(default=None, description="absent: leads of this cadence never escalate")
    send_as_owner: bool = Field(
        default=False, description="an owned lead's emails come from its owner rep, with Reply-To the rep"
    )
    big_bang: BigBang | None = None
    next_cadence: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="after the last step without an escalation: this cadence next; none: the lead goes dormant",
    )
    auto_reply_pause: Wait = Field(
        default=timedelta(days=7),
        description="an out-of-office that states no return date pauses the drip this long (0: not at all)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "Cadence":
        require_unique([s.id for s in self.steps], "step ids")
        for step in self.steps:
            if isinstance(step.subject, dict) and self.default_locale not in step.subject:
                raise ValueError(f"step {step.id!r} has no subject for the default locale {self.default_locale!r}")
        if self.big_bang is not None:
            if isinstance(self.big_bang.subject, dict) and self.default_locale not in self.big_bang.subject:
                raise ValueError(f"big_bang has no subject for the default locale {self.default_locale!r}")
            if self.big_bang.after_unopened > len(self.steps):
                raise ValueError(
                    f"big_bang.after_unopened is {self.big_bang.after_unopened} but the cadence has only "
                    f"{len(self.steps)} steps: it could never be sent"
                )
        known_timezone(self.default_timezone)
        if self.auto_reply_pause > MAX_AUTO_REPLY_PAUSE:
            raise ValueError(
                f"auto_reply_pause of {self.auto_reply_pause.days} days is too long: at most "
                f"{MAX_AUTO_REPLY_PAUSE.days}d (a lead silent that long is for dormancy, recycle.yaml)"
            )
        return self

    def total_wait(self) -> timedelta:
        return sum((s.wait for s in self.steps), timedelta(0))


class CadenceError(RuleFileError):
    """A cadence file that cannot be loaded; each problem names file, line and field."""


CADENCE_SHAPE = "a cadence file must be a YAML mapping (name, version, sender, steps, ...)"


def parse_cadence(text: str, path: Path) -> Cadence:
    """Parse and validate a cadence's YAML text; raises CadenceError listing every problem."""
    return parse_cadence_lines(text, path)[0]


def parse_cadence_lines(text: str, path: Path) -> tuple[Cadence, Lines]:
    """As parse_cadence, with the line of every field (keyed by its path) for later reports."""
    return parse_model_lines(text, path, Cadence, CADENCE_SHAPE, error=CadenceError)


def load_cadence(path: Path) -> Cadence:
    """Load one cadence file."""
    return load_cadence_lines(path)[0]


def load_cadence_lines(path: Path) -> tuple[Cadence, Lines]:
    return load_model_lines(path, Cadence, CADENCE_SHAPE, error=CadenceError)


def cadence_path(cadence_dir: Path, name: str) -> Path:
    """The file a cadence name refers to: a path as given, or `<dir>/<name>.yaml`."""
    candidate = Path(name)
    if candidate.suffix in {".yaml", ".yml"} and candidate.exists():
        return candidate
    for suffix in (".yaml", ".yml"):
        path = cadence_dir / f"{name}{suffix}"
        if path.exists():
            return path
    raise CadenceError(cadence_dir / f"{name}.yaml", [(None, "", f"no cadence named {name!r} in {cadence_dir}")])
