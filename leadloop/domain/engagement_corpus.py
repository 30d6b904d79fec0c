"""A labelled corpus of engagement hits (JSON Lines) and how the classifier fares on it: the schema, the loader
with line-and-field errors, and the confusion matrix (pure)."""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leadloop.domain.classify import Hit, HitKind, MachineClass, PriorHit, Verdict, classify
from leadloop.domain.ranges import MachineRanges

PACKAGED_CORPUS = Path(__file__).resolve().parent.parent / "data" / "examples" / "engagement-corpus.jsonl"
MACHINE_CLASSES: tuple[MachineClass, ...] = get_args(MachineClass)
#: the rows of the confusion matrix: what a hit was (its class for machines)
Actual = Literal["human", "gateway", "cloud", "prefetch", "mpp", "scanner"]
ACTUALS: tuple[Actual, ...] = get_args(Actual)
#: the send every line's seconds count from (any instant would do: the classifier reads differences)
SENT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class CorpusError(ValueError):
    """A corpus that cannot be checked: the file, the line and the field that are wrong."""


class EarlierHit(BaseModel):
    """An earlier open or click of the same email."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["open", "click"] = "click"
    seconds: float = Field(ge=0, description="seconds after the send")
    url: str = Field(default="", max_length=2000)


class CorpusCase(BaseModel):
    """One labelled hit: what the request carried, when, the email's earlier hits, and where the case comes from."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    label: Literal["human", "machine"]
    machine_class: MachineClass | None = Field(default=None, alias="class")
    case: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="the scenario, e.g. safe_links_detonation")
    resembles: MachineClass | None = Field(default=None, description="human look-alikes: the machine they resemble")
    kind: HitKind
    user_agent: str = Field(max_length=1000)
    client_ip: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    seconds_after_send: float | None = Field(default=None, ge=0)
    url: str = Field(default="", max_length=2000)
    earlier_hits: list[EarlierHit] = Field(default_factory=list)
    links_in_message: int | None = Field(default=None, ge=0, le=1000)
    honeypot: bool = False
    earlier_visits: list[float] = Field(default_factory=list, description="seconds before this page view")
    source: str = Field(min_length=12, max_length=2000)

    @field_validator("headers")
    @classmethod
    def _lower_case_names(cls, headers: dict[str, str]) -> dict[str, str]:
        return {name.lower(): value for name, value in headers.items()}

    @field_validator("source")
    @classmethod
    def _a_web_address(cls, source: str) -> str:
        if not source.startswith(("https://", "http://")):
            raise ValueError("must be the http(s) address of the documentation the case is modelled on")
        return source

    @model_validator(mode="after")
    def _consistent(self) -> "CorpusCase":
        if self.label == "machine" and self.machine_class is None:
            raise ValueError("class: a machine hit needs its class (gateway, cloud, prefetch, mpp or scanner)")
        if self.label == "human" and self.machine_class is not None:
            raise ValueError("class: only machine hits have a class (use `resembles` for a look-alike)")
        if self.label == "machine" and self.resembles is not None:
            raise ValueError("resembles: only human hits resemble a machine")
        if self.kind == "visit" and (self.earlier_hits or self.honeypot):
            raise ValueError("a page view has no earlier hits of an email and is never the honeypot")
        if self.kind != "visit" and self.earlier_visits:
            raise ValueError("earlier_visits: only page views have them")
        if self.seconds_after_send is not None:
            late = [h.seconds for h in self.earlier_hits if h.seconds > self.seconds_after_send]
            if late:
                raise ValueError(f"earlier_hits: a hit at {late[0]:g}s is not earlier than this one")
        elif self.earlier_hits:
            raise ValueError("earlier_hits need seconds_after_send")
        return self

    @property
    def actual(self) -> Actual:
        return "human" if self.label == "human" else self.machine_class or "scanner"

    def hit(self) -> Hit:
        """The hit as the tracking links would see it."""
        sent = SENT if self.seconds_after_send is not None else None
        at = SENT + timedelta(seconds=self.seconds_after_send if self.seconds_after_send is not None else 86_400)
        return Hit(
            self.kind,
            self.user_agent,
            self.client_ip,
            self.headers,
            at,
            sent,
            honeypot=self.honeypot,
            url=self.url,
            message_hits=tuple(PriorHit(h.kind, SENT + timedelta(seconds=h.seconds), h.url) for h in self.earlier_hits),
            links_in_message=self.links_in_message,
            earlier_visits=tuple(at - timedelta(seconds=s) for s in self.earlier_visits),
        )


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_corpus(lines: Iterable[str], where: str = "corpus") -> list[tuple[int, CorpusCase]]:
    """(line number, case) for each non-blank line; CorpusError names the first bad line and its field."""
    cases = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise CorpusError(f"{where}, line {number}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise CorpusError(f"{where}, line {number}: must be a JSON object")
        try:
            cases.append((number, CorpusCase.model_validate(data)))
        except ValidationError as exc:
            raise CorpusError(f"{where}, line {number}: {_problem(exc)}") from None
    if not cases:
        raise CorpusError(f"{where}: no cases (one JSON object a line)")
    return cases


def load_corpus(path: Path) -> list[tuple[int, CorpusCase]]:
    """The corpus file at `path`, checked whole; CorpusError names the file, the line and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: not UTF-8 text") from None
    return parse_corpus(text.splitlines(), str(path))


@dataclass(frozen=True)
class Miss:
    """A line the classifier put on the wrong side of the line."""

    line: int
    case: CorpusCase
    verdict: Verdict


@dataclass
class CorpusCheck:
    """The classifier over a corpus: counts by what a hit was and what it was called."""

    confusion: dict[Actual, dict[Actual, int]] = field(
        default_factory=lambda: {a: dict.fromkeys(ACTUALS, 0) for a in ACTUALS}
    )
    misses: list[Miss] = field(default_factory=list)

    def total(self, actual: Actual) -> int:
        return sum(self.confusion[actual].values())

    def called_machine(self, actual: Actual) -> int:
        return self.total(actual) - self.confusion[actual]["human"]

    def machine_recall(self, cls: MachineClass | None = None) -> float | None:
        """The share of machine hits (of one class) called machine; None when there are none."""
        classes = [cls] if cls is not None else list(MACHINE_CLASSES)
        total = sum(self.total(c) for c in classes)
        return sum(self.called_machine(c) for c in classes) / total if total else None

    def human_called_machine(self) -> float | None:
        """The share of human hits called machine; None when there are none."""
        total = self.total("human")
        return self.called_machine("human") / total if total else None


def check_corpus(
    cases: list[tuple[int, CorpusCase]], ranges: MachineRanges | None, min_delay: timedelta = timedelta(seconds=5)
) -> CorpusCheck:
    """Classify every case and count how it came out."""
    result = CorpusCheck()
    for line, case in cases:
        verdict = classify(case.hit(), ranges=ranges, min_delay=min_delay)
        called: Actual = "human" if verdict.human else verdict.machine_class or "scanner"
        result.confusion[case.actual][called] += 1
        if verdict.human != (case.label == "human"):
            result.misses.append(Miss(line, case, verdict))
    return result
