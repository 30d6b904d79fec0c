"""Lead scoring: profile fit plus decaying engagement points, from the marketer's scoring.yaml (pure)."""

import fnmatch
import itertools
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from leadloop.domain.cadence import CadenceError, Wait, require_unique
from leadloop.domain.rules import Lines, Strict, line_of, load_model_lines, parse_model_lines

EventKind = Literal["open", "click", "visit", "reply"]
BantField = Literal["budget", "authority", "need", "timeline"]
#: the lead attributes scoring reads (BANT); a lead's other attributes never reach a workflow
BANT_FIELDS: tuple[BantField, ...] = get_args(BantField)
SCORING_SHAPE = "a scoring file must be a YAML mapping (version, half_life, profile, engagement)"
#: What a human reply is worth when the rules (a file, or a snapshot older than replies) have no `reply` rule.
DEFAULT_REPLY_POINTS = 30
#: What a scoring file that does not say gets: a page's views count once a day.
VISITS_ONCE_PER_PAGE = timedelta(days=1)
#: What a scoring file that does not say gets: an unconfirmed click earns 30% of its rule's points ...
UNCONFIRMED_CLICK_WEIGHT = 0.3
#: ... and only confirmed or high-confidence human evidence hands a lead to sales.
ESCALATE_ON: Literal["confirmed", "any"] = "confirmed"
ESCALATION_CONFIDENCE = 0.9


class Size(Strict):
    """A company size (employees) from `min` to `max` inclusive; no max: and above."""

    min: int = Field(default=0, ge=0)
    max: int | None = Field(default=None, ge=0)

    def holds(self, size: int) -> bool:
        return self.min <= size and (self.max is None or size <= self.max)

    def covers(self, other: "Size") -> bool:
        top = self.max if self.max is not None else float("inf")
        other_top = other.max if other.max is not None else float("inf")
        return self.min <= other.min and other_top <= top


class SizeBand(Size):
    """Points for a company size band."""

    points: int = Field(ge=-1000, le=1000)


class TitleRule(Strict):
    """Points when the title holds one of the keywords; in each group only the best rule counts."""

    group: str = Field(default="seniority", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    keywords: list[str] = Field(min_length=1)
    points: int = Field(ge=-1000, le=1000)


class ProfileRules(Strict):
    industry: dict[str, int] = Field(default_factory=dict)
    company_size: list[SizeBand] = Field(default_factory=list)
    title: list[TitleRule] = Field(default_factory=list)
    region: dict[str, int] = Field(default_factory=dict)
    country: dict[str, int] = Field(default_factory=dict)
    product_interest: dict[str, int] = Field(default_factory=dict)
    fields: dict[BantField, dict[str, int] | int] = Field(
        default_factory=dict,
        description="points per value of a BANT field, e.g. budget: {approved: 10, planned: 5}; a bare number "
        "(points for any value, 'none' too) only decodes in snapshots of leads enrolled with it",
    )

    @model_validator(mode="after")
    def _bands_apart(self) -> "ProfileRules":
        for band in self.company_size:
            if band.max is not None and band.max < band.min:
                raise ValueError(f"company_size band {band.min}-{band.max}: max is below min")
        ordered = sorted(self.company_size, key=lambda b: b.min)
        for low, high in itertools.pairwise(ordered):
            if low.max is None or low.max >= high.min:
                raise ValueError(
                    f"company_size bands overlap: {low.min}-{low.max if low.max is not None else '…'} "
                    f"and {high.min}-{high.max if high.max is not None else '…'}"
                )
        return self


class EngagementRule(Strict):
    """Points per human event of a kind, optionally only for URLs matching a glob (a tag such as pricing)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: EventKind
    url: str | None = Field(default=None, description="glob on the clicked or visited URL, e.g. '*/pricing*'")
    points: int = Field(ge=0, le=1000)
    cap: int | None = Field(default=None, ge=0, description="most points this rule gives in all")

    def matches(self, kind: str, url: str) -> bool:
        return kind == self.kind and (self.url is None or fnmatch.fnmatchcase(url.lower(), self.url.lower()))


class CategoryRule(Strict):
    """A category the marketer names (likely buyer, educable, no prospect): a lead falls in the first whose bounds
    its fit (profile points) and engagement (engagement points) are within; bounds left out do not limit."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    min_fit: int | None = None
    max_fit: int | None = None
    min_engagement: int | None = None
    max_engagement: int | None = None

    def holds(self, score: "Score") -> bool:
        fit, engaged = score.profile, score.engagement
        return (
            (self.min_fit is None or fit >= self.min_fit)
            and (self.max_fit is None or fit <= self.max_fit)
            and (self.min_engagement is None or engaged >= self.min_engagement)
            and (self.max_engagement is None or engaged <= self.max_engagement)
        )


class ScoringConfig(Strict):
    """The marketer's scoring rules; a snapshot travels in each workflow so edits never rewrite the past."""

    version: int = Field(ge=1)
    half_life: Wait | None = Field(default=None, description="engagement points halve after this; none: no decay")
    profile: ProfileRules = ProfileRules()
    engagement: list[EngagementRule] = Field(default_factory=list)
    # None in snapshots taken before the rule existed: those leads score as they always did (replays unchanged);
    # the loader gives a file that does not say VISITS_ONCE_PER_PAGE
    visits_once_per_page: Wait | None = Field(
        default=None,
        description="a lead's views of one page (address without query) count once within this; 0: every view",
    )

    # None in snapshots taken before clicks needed the landing page's word: those leads score and escalate as they
    # always did; the loader gives a file that does not say UNCONFIRMED_CLICK_WEIGHT, ESCALATE_ON, ...CONFIDENCE
    unconfirmed_click_weight: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="the share of its points a human click gets until the landing page's beacon confirms it",
    )
    escalate_on: Literal["confirmed", "any"] | None = Field(
        default=None,
        description="confirmed: only a confirmed click, a site visit, a reply or a human hit of at least "
        "escalation_confidence may hand the lead to sales; any: every human hit may",
    )
    escalation_confidence: float | None = Field(
        default=None, ge=0.5, le=1, description="the confidence a human hit needs to hand a lead to sales"
    )
    categories: list[CategoryRule] = Field(
        default_factory=list, description="the first that holds names the lead's category (LeadCategory); none: none"
    )

    @model_validator(mode="after")
    def _category_names_unique(self) -> "ScoringConfig":
        names = [rule.name for rule in self.categories]
        if len(names) != len(set(names)):
            repeated = sorted(n for n in set(names) if names.count(n) > 1)
            raise ValueError(f"categories: each name once ({', '.join(repeated)} repeated)")
        return self

    @field_validator("visits_once_per_page")
    @classmethod
    def _a_real_window(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and timedelta(0) < value < timedelta(hours=1):
            raise ValueError("at least 1h (shorter lets a reload count again), or 0: every page view counts")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> "ScoringConfig":
        require_unique([r.name for r in self.engagement], "engagement rule names")
        catch_all: dict[str, str] = {}
        for rule in self.engagement:
            if rule.kind in catch_all:
                raise ValueError(
                    f"engagement rule {rule.name!r} can never match: rule {catch_all[rule.kind]!r} before it "
                    f"takes every {rule.kind}; put URL-specific rules first"
                )
            if rule.url is None:
                catch_all[rule.kind] = rule.name
        if self.half_life is not None and self.half_life <= timedelta(0):
            raise ValueError("half_life must be longer than zero")
        return self


class LeadProfile(BaseModel):
    """The fields of a lead that scoring and routing read (no address, no name)."""

    industry: str | None = None
    company_size: str | None = None
    title: str | None = None
    country: str | None = None
    region: str | None = None
    product_interest: str | None = None
    owner: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class Engagement(BaseModel):
    """What scoring needs of an event."""

    kind: EventKind
    at: datetime
    url: str = ""
    id: str | None = Field(default=None, description="the event's id (a click's, so its confirmation finds it)")
    confirmed: bool | None = Field(
        default=None, description="a click: False until the landing page confirms it (reduced weight); None: full"
    )


class ScoreItem(BaseModel):
    rule: str
    points: int


class Score(BaseModel):
    """A score and which rule gave which points."""

    total: int = 0
    profile: int = 0
    engagement: int = 0
    items: list[ScoreItem] = Field(default_factory=list)


_SIZE = re.compile(r"(\d[\d,.\s]*)")


def company_headcount(value: str | None) -> int | None:
    """'51-200' -> 51, '1000+' -> 1000, '1,200' -> 1200; the lower bound of what was written."""
    if not value:
        return None
    match = _SIZE.search(value)
    if not match:
        return None
    digits = re.sub(r"[,.\s]", "", match.group(1))
    return int(digits) if digits else None


def _lookup(table: dict[str, int], value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    wanted = value.strip().casefold()
    for key, points in table.items():
        if key.casefold() == wanted:
            return key, points
    return None


def profile_items(rules: ProfileRules, lead: LeadProfile) -> list[ScoreItem]:
    """Profile-fit points, one item per rule that applies."""
    items: list[ScoreItem] = []
    for field in ("industry", "region", "country", "product_interest"):
        hit = _lookup(getattr(rules, field), getattr(lead, field))
        if hit:
            items.append(ScoreItem(rule=f"{field}={hit[0]}", points=hit[1]))
    size = company_headcount(lead.company_size)
    if size is not None:
        for band in rules.company_size:
            if band.holds(size):
                label = f"{band.min}-{band.max}" if band.max is not None else f"{band.min}+"
                items.append(ScoreItem(rule=f"company_size {label}", points=band.points))
                break
    if lead.title:
        words = set(re.findall(r"\w+", lead.title.casefold()))
        best: dict[str, ScoreItem] = {}
        for rule in rules.title:
            hit_word = next((k for k in rule.keywords if k.casefold() in words), None)
            if hit_word and (rule.group not in best or rule.points > best[rule.group].points):
                best[rule.group] = ScoreItem(rule=f"title {rule.group} '{hit_word}'", points=rule.points)
        items.extend(best.values())
    for field, bant in rules.fields.items():
        value = lead.attributes.get(field)
        if isinstance(bant, int):
            # the old form, still in the snapshots of leads enrolled with it: any value counts, as it did
            # when their decisions were made (replays must reach the same score)
            if value not in (None, "", [], {}):
                items.append(ScoreItem(rule=f"has {field}", points=bant))
            continue
        wanted = _bant_value(value)
        matched = next((key for key in bant if _bant_value(key) == wanted), None) if wanted else None
        if matched is not None:
            items.append(ScoreItem(rule=f"{field}={matched}", points=bant[matched]))
    return items


def _bant_value(value: object) -> str | None:
    """'Decision maker', 'decision-maker' and 'decision_maker' alike; None for what is not a word."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = re.sub(r"[\s_-]+", " ", str(value)).strip().casefold()
    return text or None


def compute_score(
    config: ScoringConfig,
    lead: LeadProfile,
    events: list[Engagement],
    now: datetime,
    *,
    time_scale: float = 1.0,
    proven: bool = False,
) -> Score:
    """The score at `now`: profile fit plus each human event's points, decayed, capped per rule.

    Args:
        time_scale: how many cadence seconds pass per real second (demo speed), so a half-life of
            14 days lasts 14 s at 86400.
        proven: leave out clicks no landing page confirmed (what escalation reads with `escalate_on: confirmed`).
    """
    items = profile_items(config.profile, lead)
    earned: dict[str, float] = {}
    replies = 0.0  # replies no rule prices: DEFAULT_REPLY_POINTS each
    once = config.visits_once_per_page.total_seconds() if config.visits_once_per_page else 0.0
    counted: dict[str, datetime] = {}  # page -> when a view of it last counted
    for event in events:
        if proven and event.kind == "click" and event.confirmed is False:
            continue
        if once and event.kind == "visit":
            page = page_of(event.url)
            last = counted.get(page)
            if last is not None and abs((event.at - last).total_seconds()) * time_scale < once:
                continue  # a reload, a second tab or a replayed beacon: the page counted already
            counted[page] = event.at
        rule = next((r for r in config.engagement if r.matches(event.kind, event.url)), None)
        if rule is None and event.kind != "reply":
            continue
        points = float(rule.points if rule else DEFAULT_REPLY_POINTS)
        if event.kind == "click" and event.confirmed is False and config.unconfirmed_click_weight is not None:
            points *= config.unconfirmed_click_weight  # no landing page said a person arrived (yet)
        if config.half_life is not None:
            age = max((now - event.at).total_seconds(), 0.0) * time_scale
            points *= 0.5 ** (age / config.half_life.total_seconds())
        if rule is None:
            replies += points
            continue
        earned[rule.name] = earned.get(rule.name, 0.0) + points
    engagement = 0
    for rule in config.engagement:
        if rule.name in earned:
            value = earned[rule.name] if rule.cap is None else min(earned[rule.name], rule.cap)
            points = round(value)
            engagement += points
            items.append(ScoreItem(rule=f"{rule.kind} {rule.name}", points=points))
    if replies:
        engagement += round(replies)
        items.append(ScoreItem(rule="reply", points=round(replies)))
    profile = sum(i.points for i in items) - engagement
    return Score(total=profile + engagement, profile=profile, engagement=engagement, items=items)


def page_of(url: str) -> str:
    """One page, however it was addressed (rules match paths whatever their case, and the beacon's address is
    whoever sent it): 'HTTPS://Site.example:443//Pricing/%7Eplan/?utm=x#top' -> 'https://site.example/pricing/~plan'."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    path = re.sub(r"/{2,}", "/", unquote(parts.path)).rstrip("/").lower()
    return f"{scheme}://{host}{path}"


def _file_defaults(config: ScoringConfig) -> ScoringConfig:
    """What a file leaves unsaid and a snapshot must not (a snapshot's missing field means 'as before')."""
    defaults = {
        "visits_once_per_page": VISITS_ONCE_PER_PAGE,
        "unconfirmed_click_weight": UNCONFIRMED_CLICK_WEIGHT,
        "escalate_on": ESCALATE_ON,
        "escalation_confidence": ESCALATION_CONFIDENCE,
    }
    unsaid = {name: value for name, value in defaults.items() if name not in config.model_fields_set}
    return config.model_copy(update=unsaid) if unsaid else config


def parse_scoring_lines(text: str, path: Path) -> tuple[ScoringConfig, Lines]:
    config, lines = _values_only(*parse_model_lines(text, path, ScoringConfig, SCORING_SHAPE), path)
    return _file_defaults(config), lines


def load_scoring(path: Path) -> ScoringConfig:
    """Load scoring.yaml; CadenceError names file, line and field of every problem."""
    return _file_defaults(_values_only(*load_model_lines(path, ScoringConfig, SCORING_SHAPE), path)[0])


def _values_only(config: ScoringConfig, lines: Lines, path: Path) -> tuple[ScoringConfig, Lines]:
    """Refuse a BANT rule that scores the field's presence: `budget: 10` gave a lead with `budget: none` its
    points. (Snapshots in running workflows decode the old form; files must name the values.)"""
    problems: list[tuple[int | None, str, str]] = [
        (
            line_of(lines, "profile", "fields", field),
            f"profile.fields.{field}",
            f"{rule} points for any {field} scores '{field}: none' too: give points per value, "
            f"e.g. {field}: {BANT_EXAMPLES[field]}",
        )
        for field, rule in config.profile.fields.items()
        if isinstance(rule, int)
    ]
    if problems:
        raise CadenceError(path, problems)
    return config, lines


BANT_EXAMPLES: dict[str, str] = {
    "budget": "{approved: 10, planned: 5}",
    "authority": "{decision-maker: 5, influencer: 2}",
    "need": "{confirmed: 5, identified: 3}",
    "timeline": "{this-quarter: 5, next-quarter: 3}",
}


def category_of(config: ScoringConfig | None, score: Score) -> str | None:
    """The lead's category by scoring.yaml's rules, in order; None when no rule holds (or there are none)."""
    if config is None:
        return None
    return next((rule.name for rule in config.categories if rule.holds(score)), None)


def current_scoring(path: Path) -> ScoringConfig | None:
    """scoring.yaml as it is now (its snapshot goes into each new workflow); None when there is none."""
    return load_scoring(path) if path.exists() else None
