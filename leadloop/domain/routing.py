"""Routing rules (routing.yaml) and the sales roster (reps.yaml): which team, then which rep (pure)."""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from leadloop.domain.cadence import HeaderText, SendWindow, Wait, known_timezone, require_unique
from leadloop.domain.rules import Strict, load_model_lines
from leadloop.domain.scoring import LeadProfile, Size, company_headcount

Strategy = Literal["round_robin", "least_loaded"]
ROUTING_SHAPE = "a routing file must be a YAML mapping (version, rules, retry_unassigned_every)"
REPS_SHAPE = "a reps file must be a YAML mapping with a list of teams, each with its reps"


class Conditions(Strict):
    """All given conditions must hold; a list holds when the lead's value is one of it (any case)."""

    region: list[str] | None = None
    country: list[str] | None = None
    product_interest: list[str] | None = None
    industry: list[str] | None = None
    company_size: Size | None = None

    def holds(self, lead: LeadProfile) -> bool:
        for field in ("region", "country", "product_interest", "industry"):
            wanted = getattr(self, field)
            if wanted is not None:
                value = getattr(lead, field)
                if not value or value.strip().casefold() not in {w.casefold() for w in wanted}:
                    return False
        if self.company_size is not None:
            size = company_headcount(lead.company_size)
            if size is None or not self.company_size.holds(size):
                return False
        return True

    def covers(self, other: "Conditions") -> bool:
        """True when every lead `other` matches is matched by self too (so other, after self, is dead)."""
        for field in ("region", "country", "product_interest", "industry"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine is None:
                continue
            if theirs is None or not {t.casefold() for t in theirs} <= {m.casefold() for m in mine}:
                return False
        if self.company_size is not None:
            if other.company_size is None or not self.company_size.covers(other.company_size):
                return False
        return True


class Rule(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    when: Conditions = Conditions()
    team: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")


class RoutingConfig(Strict):
    """Ordered rules: the first whose conditions hold chooses the team."""

    version: int = Field(ge=1)
    rules: list[Rule] = Field(min_length=1)
    retry_unassigned_every: Wait = Field(default=timedelta(hours=1), description="how often a waiting lead retries")

    @model_validator(mode="after")
    def _no_dead_rules(self) -> "RoutingConfig":
        require_unique([r.name for r in self.rules], "rule names")
        for index, rule in enumerate(self.rules):
            for earlier in self.rules[:index]:
                if earlier.when.covers(rule.when):
                    raise ValueError(
                        f"rules overlap: rule {rule.name!r} can never match, because rule {earlier.name!r} "
                        "before it already matches every lead it would; put the narrower rule first"
                    )
        if self.retry_unassigned_every <= timedelta(0):
            raise ValueError("retry_unassigned_every must be longer than zero")
        return self

    def route(self, lead: LeadProfile) -> Rule | None:
        return next((rule for rule in self.rules if rule.when.holds(lead)), None)


class RepIn(Strict):
    email: HeaderText = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: HeaderText = Field(min_length=1, max_length=200)
    timezone: str = "UTC"
    capacity: int = Field(default=25, ge=1, le=100_000)
    active: bool = True

    @model_validator(mode="after")
    def _zone(self) -> "RepIn":
        known_timezone(self.timezone)
        return self


class Manager(Strict):
    name: HeaderText = Field(min_length=1)
    email: HeaderText = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class TeamIn(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    strategy: Strategy = "round_robin"
    sla: Wait = Field(default=timedelta(hours=4), description="business time a rep has to act")
    business_hours: SendWindow = SendWindow()
    manager: Manager | None = None
    reps: list[RepIn]

    @model_validator(mode="after")
    def _has_reps(self) -> "TeamIn":
        if not self.reps:
            raise ValueError(f"team {self.name!r} is empty: give it at least one rep")
        if self.sla <= timedelta(0):
            raise ValueError("sla must be longer than zero")
        return self


class Roster(Strict):
    """Every team and its reps, as `leadloop reps import` takes it."""

    teams: list[TeamIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_team_per_rep(self) -> "Roster":
        require_unique([t.name for t in self.teams], "team names")
        seen: dict[str, str] = {}
        for team in self.teams:
            for rep in team.reps:
                address = rep.email.casefold()
                if address in seen:
                    other = seen[address]
                    where = f"teams {other!r} and {team.name!r}" if other != team.name else f"team {other!r} twice"
                    raise ValueError(f"rep {rep.email} is in {where}: a rep belongs to one team")
                seen[address] = team.name
        return self


@dataclass(frozen=True)
class Candidate:
    """A rep as the chooser sees one."""

    id: int
    active: bool
    capacity: int
    open_leads: int


def choose_rep(
    candidates: list[Candidate], strategy: Strategy, *, last_rep_id: int | None, exclude: set[int]
) -> Candidate | None:
    """The next rep: round-robin after the last one chosen, or the least loaded; skips the inactive,
    the full and the excluded. None when nobody can take the lead."""
    eligible = sorted(
        (c for c in candidates if c.active and c.open_leads < c.capacity and c.id not in exclude), key=lambda c: c.id
    )
    if not eligible:
        return None
    if strategy == "least_loaded":
        return min(eligible, key=lambda c: (c.open_leads, c.id))
    after = [c for c in eligible if last_rep_id is not None and c.id > last_rep_id]
    return after[0] if after else eligible[0]


def load_routing(path: Path) -> RoutingConfig:
    return load_model_lines(path, RoutingConfig, ROUTING_SHAPE)[0]


def load_roster(path: Path) -> Roster:
    return load_model_lines(path, Roster, REPS_SHAPE)[0]
