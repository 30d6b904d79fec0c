"""The recycle policy (recycle.yaml): what a rep's rejection reason does to the lead (pure)."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from leadloop.domain.cadence import CadenceError, Wait, cadence_path, load_cadence
from leadloop.domain.rules import RuleFileError, Strict, line_of, load_model_lines

Reason = Literal[
    "not_ready",
    "no_budget",
    "no_authority",
    "no_need",
    "bad_fit",
    "not_interested",
    "invalid_data",
    "unreachable",
    "wrong_route",
    "other",
]
REASONS: tuple[Reason, ...] = get_args(Reason)
REASON_LABELS: dict[str, str] = {
    "not_ready": "Not ready yet",
    "no_budget": "No budget",
    "no_authority": "Not the decision maker",
    "no_need": "No need right now",
    "bad_fit": "Bad fit for us",
    "not_interested": "Not interested (never email again)",
    "invalid_data": "Contact data is wrong",
    "unreachable": "Could not reach them",
    "wrong_route": "Wrong team or rep",
    "other": "Other",
}
Action = Literal["nurture", "archive", "suppress", "hold", "dormant", "reroute"]
RECYCLE_SHAPE = "a recycle file must be a YAML mapping (version, max_recycles, dormant, reasons)"


class Disposition(Strict):
    """What one reason does."""

    action: Action
    cadence: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    cool_down: Wait = timedelta(0)
    reset_engagement: bool = True

    @model_validator(mode="after")
    def _cadence_for_nurture(self) -> "Disposition":
        if self.action == "nurture" and self.cadence is None:
            raise ValueError("action 'nurture' needs the cadence to go back to")
        if self.action != "nurture" and self.cadence is not None and self.action != "hold":
            raise ValueError(f"action {self.action!r} takes no cadence")
        return self


class Dormancy(Strict):
    """A dormant lead sleeps, then re-enters nurture with the re-engagement cadence; after max_cycles it retires."""

    reengage_after: Wait = timedelta(days=180)
    cadence: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    max_cycles: int = Field(default=2, ge=0, le=100)


class SoftBounces(Strict):
    """Temporary bounces (mailbox full, server busy) are counted; this many within `within` suppress the address."""

    suppress_after: int = Field(default=3, ge=1, le=100)
    within: Wait = timedelta(days=30)

    @model_validator(mode="after")
    def _a_real_window(self) -> "SoftBounces":
        if self.within < timedelta(hours=1):
            raise ValueError("soft_bounces.within must be at least 1h, e.g. '30d'")
        return self

    def exceeded(self, bounces: list[datetime], now: datetime) -> bool:
        """Whether the soft bounces received in the window ending `now` reach `suppress_after`."""
        return sum(1 for at in bounces if now - self.within < at <= now) >= self.suppress_after


class RecyclePolicy(Strict):
    """Every reason's disposition; a snapshot travels in each workflow, refreshed at each new cycle."""

    version: int = Field(ge=1)
    max_recycles: int = Field(default=3, ge=0, le=100, description="recycled more often: the lead goes dormant")
    dormant: Dormancy
    reasons: dict[Reason, Disposition]
    soft_bounces: SoftBounces = Field(
        default_factory=SoftBounces, description="N soft bounces within D days suppress the address"
    )

    @model_validator(mode="after")
    def _every_reason(self) -> "RecyclePolicy":
        missing = [r for r in REASONS if r not in self.reasons]
        if missing:
            raise ValueError(f"every reason needs a disposition; missing: {', '.join(missing)}")
        return self

    def cadences(self) -> set[str]:
        named = {d.cadence for d in self.reasons.values() if d.cadence}
        return named | {self.dormant.cadence}

    def for_reason(self, reason: str) -> Disposition:
        return self.reasons[reason]  # type: ignore[index]


def load_recycle(path: Path, cadence_dir: Path | None = None) -> RecyclePolicy:
    """Load recycle.yaml; with `cadence_dir`, every cadence it names must exist and load (check time, not run time)."""
    policy, lines = load_model_lines(path, RecyclePolicy, RECYCLE_SHAPE)
    if cadence_dir is not None:
        problems: list[tuple[int | None, str, str]] = []
        named: list[tuple[str, str | None]] = [(r, d.cadence) for r, d in policy.reasons.items()]
        for reason, name in [*named, ("dormant", policy.dormant.cadence)]:
            if not name:
                continue
            loc = ("dormant", "cadence") if reason == "dormant" else ("reasons", reason, "cadence")
            try:
                load_cadence(cadence_path(cadence_dir, name))
            except RuleFileError as exc:
                detail = "; ".join(exc.lines())
                field = "dormant.cadence" if reason == "dormant" else f"reasons.{reason}.cadence"
                problems.append((line_of(lines, *loc), field, f"cadence {name!r} does not load: {detail}"))
        if problems:
            raise CadenceError(path, problems)
    return policy


def current_recycle(cadence_dir: Path) -> RecyclePolicy | None:
    """recycle.yaml as it is now, every cadence it names checked; None when there is none."""
    path = cadence_dir / "recycle.yaml"
    return load_recycle(path, cadence_dir) if path.exists() else None
