"""The report's numbers as plain models (counts and rates, nothing from the database attached) and its errors."""

from datetime import datetime

from pydantic import BaseModel, Field

from leadloop.domain.lifecycle import FINAL_STAGES

FUNNEL = ("enrolled", "engaged", "escalated", "converted")
OUTCOMES = ("rejected", "recycled", "dormant", "suppressed")
ACTIVITY = ("enrolled", "emailed", "engaged", "escalated", "converted", "rejected", "recycled", "dormant", "suppressed")
#: the stages a lead's workflow ends in
ENDED = FINAL_STAGES
CHARTS = ("stages_now", "funnel", "steps", "reps", "reasons", "planner")


class ReportError(ValueError):
    """The report cannot be made as asked (unknown cadence, a period in the future); nothing was written."""


class PlanError(ValueError):
    """The funnel planner refuses its input (a rate of zero, a negative target ...), saying why."""


class FunnelStage(BaseModel):
    stage: str
    leads: int
    rate: float | None = Field(default=None, description="÷ the previous stage; None at the top or after 0")
    of_top: float | None = None


class StepStats(BaseModel):
    """One cadence step's emails in the period and what readers (and machines) did with them."""

    cadence: str
    step: str
    sends: int = 0
    human_opened: int = Field(default=0, description="emails with a human open or click")
    human_clicked: int = 0
    open_events: int = 0
    machine_opens: int = 0
    click_events: int = 0
    machine_clicks: int = 0
    unsubscribes: int = 0
    bounces: int = 0
    open_rate: float | None = None
    click_rate: float | None = None
    machine_open_share: float | None = None
    machine_click_share: float | None = None
    unsubscribe_rate: float | None = None
    bounce_rate: float | None = None


class RepStats(BaseModel):
    rep_id: int | None
    rep: str
    team: str | None = None
    sla_hours: float | None = None
    handovers: int = 0
    accepted: int = 0
    rejected: int = 0
    lapsed: int = 0
    open: int = 0
    closed: int = 0
    median_hours_to_decide: float | None = None
    mean_hours_to_decide: float | None = None


class ReasonStats(BaseModel):
    reason: str
    label: str
    rejections: int
    outcomes: dict[str, int] = Field(default_factory=dict)


class SalesStats(BaseModel):
    reps: list[RepStats] = Field(default_factory=list)
    handovers: int = 0
    waited: int = 0
    accepted: int = 0
    rejected: int = 0
    lapsed: int = 0
    lapse_rate: float | None = None
    median_hours_to_accept: float | None = None
    median_hours_to_reject: float | None = None
    reasons: list[ReasonStats] = Field(default_factory=list)
    recycled: int = 0
    recycled_converted: int = 0
    recycled_converted_rate: float | None = None


class PlanStage(BaseModel):
    stage: str
    rate: float | None = Field(description="measured rate into this stage from the previous; None at the top")
    needed: int
    measured: int | None = None
    more_needed: int | None = None


class FunnelPlan(BaseModel):
    target_conversions: int
    growth_pct: float | None = None
    stages: list[PlanStage]


class ReportData(BaseModel):
    """Every number of a report: plain counts and rates, nothing from the database left attached."""

    generated_at: datetime
    since: datetime | None = None
    cadence: str | None = None
    live_stages: dict[str, int] | None = None
    live_note: str | None = None
    funnel: list[FunnelStage] = Field(default_factory=list)
    outcomes: dict[str, int] = Field(default_factory=dict)
    activity: dict[str, int] = Field(default_factory=dict)
    steps: list[StepStats] = Field(default_factory=list)
    sales: SalesStats = Field(default_factory=SalesStats)
    suppressions: dict[str, int] = Field(default_factory=dict)
    plan: FunnelPlan | None = None
    plan_note: str | None = None


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
