"""The report's numbers as plain models (counts and rates, nothing from the database attached) and its errors."""

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from leadloop.domain.lifecycle import FINAL_STAGES

FUNNEL = ("enrolled", "engaged", "escalated", "converted")
OUTCOMES = ("rejected", "recycled", "dormant", "suppressed")
ACTIVITY = ("enrolled", "emailed", "engaged", "escalated", "converted", "rejected", "recycled", "dormant", "suppressed")
#: the stages a lead's workflow ends in
ENDED = FINAL_STAGES
CHARTS = ("stages_now", "funnel", "steps", "inbound", "reps", "reasons", "planner")
#: what came back of a step's emails, as counted in the report (inbound kinds, the unsubscribe request apart)
CAME_BACK = ("replies", "auto_replies", "hard_bounces", "soft_bounces", "policy_blocks", "complaints")
#: the classes the classifier names a machine by, in the order the report shows them
MACHINE_CLASSES = ("gateway", "cloud", "prefetch", "mpp", "scanner")
#: how the report names machine events whose verdict named no class (stored before verdicts named one)
UNCLASSIFIED = "unclassified"
#: a machine class as the report's tables and charts head it
CLASS_LABELS = {"mpp": "MPP"}


class ReportError(ValueError):
    """The report cannot be made as asked (unknown cadence, a period in the future); nothing was written."""


class PlanError(ValueError):
    """The funnel planner refuses its input (a rate of zero, a negative target ...), saying why."""


class FunnelStage(BaseModel):
    stage: str
    leads: int
    rate: float | None = Field(default=None, description="÷ the previous stage; None at the top or after 0")
    of_top: float | None = None


class Flag(BaseModel):
    """A rate that reached a threshold a mailbox provider or relay publishes (`definitions.THRESHOLDS`)."""

    metric: str = Field(description="complaint_rate or bounce_rate")
    level: str = Field(description="'warning' (above the aim, or under review) or 'crossed' (the limit)")
    threshold: float
    text: str


class CameBack(BaseModel):
    """What came back of some sent emails (inbound messages matched to their send), with the complaint and
    bounce rates the providers judge a sender by, flagged where they reach a published threshold."""

    sends: int = 0
    bounces: int = Field(default=0, description="refused for good at the send (outbox status bounced)")
    replies: int = Field(default=0, description="emails answered by a person")
    auto_replies: int = 0
    hard_bounces: int = Field(default=0, description="sent emails that bounced for good afterwards (mailed, webhook)")
    soft_bounces: int = 0
    policy_blocks: int = 0
    complaints: int = 0
    reply_rate: float | None = None
    bounce_rate: float | None = None
    complaint_rate: float | None = None
    flags: list[Flag] = Field(default_factory=list)

    def add(self, other: "CameBack") -> None:
        for name in ("sends", "bounces", *CAME_BACK):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class StepStats(CameBack):
    """One cadence step's emails in the period and what readers (and machines) did with them."""

    cadence: str
    step: str
    human_opened: int = Field(default=0, description="emails with a human open or click (a confirmed click's too)")
    human_clicked: int = Field(default=0, description="emails with a human click, confirmed or not")
    open_events: int = Field(default=0, description="open events, by people and machines (confirmations apart)")
    machine_opens: int = 0
    click_events: int = Field(default=0, description="click events, by people and machines (confirmations apart)")
    machine_clicks: int = Field(default=0, description="machine click events no landing page confirmed")
    unsubscribes: int = 0
    open_rate: float | None = None
    click_rate: float | None = None
    machine_open_share: float | None = None
    machine_click_share: float | None = None
    unsubscribe_rate: float | None = None
    opened: int = Field(default=0, description="emails with any open or click event, a person's or a machine's")
    clicked: int = Field(default=0, description="emails with any click event, a person's or a machine's")
    confirmed_clicked: int = Field(default=0, description="emails with a click the landing page confirmed")
    human_opens: int = Field(default=0, description="open events by people")
    confirmed_clicks: int = Field(default=0, description="click events the landing page's beacon confirmed")
    unconfirmed_clicks: int = Field(default=0, description="human click events no landing page confirmed")
    machine_opens_by_class: dict[str, int] = Field(default_factory=dict, description="machine open events by class")
    machine_clicks_by_class: dict[str, int] = Field(default_factory=dict, description="machine click events by class")
    raw_open_rate: float | None = Field(default=None, description="opened ÷ sends")
    raw_click_rate: float | None = Field(default=None, description="clicked ÷ sends")
    confirmed_click_rate: float | None = Field(default=None, description="confirmed_clicked ÷ sends")


class CadenceCameBack(CameBack):
    """One cadence's emails in the period and what came back of them; cadence None: every cadence together."""

    cadence: str | None = None


class InboundSummary(BaseModel):
    """What came back in the period, per cadence and in all, and what could not be placed on any send."""

    cadences: list[CadenceCameBack] = Field(default_factory=list)
    total: CadenceCameBack = Field(default_factory=CadenceCameBack)
    unmatched: dict[str, int] = Field(default_factory=dict, description="messages matched to no send, by kind")

    @property
    def unmatched_total(self) -> int:
        return sum(self.unmatched.values())


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


class GoalStats(BaseModel):
    """Goals reached outside leadloop and recorded in the period, of one kind from one source."""

    kind: str
    source: str
    goals: int


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
    inbound: InboundSummary = Field(default_factory=InboundSummary)
    plan: FunnelPlan | None = None
    plan_note: str | None = None
    goals: list[GoalStats] = Field(default_factory=list, description="goals recorded in the period, by kind, source")
    categories: dict[str, int] = Field(
        default_factory=dict, description="leads with a lifecycle event in the period, by scoring.yaml category"
    )


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def machine_classes(steps: Sequence[StepStats]) -> list[str]:
    """The machine classes a table of steps shows: the classifier's five, then any other class the events
    name, then the unclassified when some step has them."""
    seen = {c for s in steps for c in (*s.machine_opens_by_class, *s.machine_clicks_by_class)}
    others = sorted(seen - {*MACHINE_CLASSES, UNCLASSIFIED})
    return [*MACHINE_CLASSES, *others, *([UNCLASSIFIED] if UNCLASSIFIED in seen else [])]


def class_labels(classes: Sequence[str]) -> tuple[str, ...]:
    """Machine classes as column heads."""
    return tuple(CLASS_LABELS.get(c, c) for c in classes)
