"""Pydantic models that cross Temporal: workflow, signal, query and activity inputs and results."""

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from leadloop.cadence import Cadence, Sender, SendWindow
from leadloop.scoring import Engagement, LeadProfile, Score, ScoringConfig

Stage = Literal["nurturing", "send_blocked", "with_sales", "cadence_complete", "suppressed"]
STAGES: tuple[Stage, ...] = ("nurturing", "send_blocked", "with_sales", "cadence_complete", "suppressed")
EventKind = Literal["open", "click", "visit", "unsubscribe"]
SendStatus = Literal["sent", "already_sent", "uncertain"]


class LeadNurtureInput(BaseModel):
    """Start of a lead's workflow: the lead id and a snapshot of its cadence."""

    lead_id: int
    cadence: Cadence
    timezone: str = "UTC"
    time_scale: float = 1.0
    cycle: int = 0
    origin: datetime | None = None
    scoring: ScoringConfig | None = Field(default=None, description="snapshot of scoring.yaml at enrolment")
    profile: LeadProfile = Field(default_factory=LeadProfile)


class LeadNurtureResult(BaseModel):
    stage: Stage
    sends: int
    uncertain_sends: int = 0


class EnrollInput(BaseModel):
    """Signal sent with every (re-)enrolment; a running lead records it and keeps its cadence."""

    cadence_name: str
    source: str = "cli"


class RetrySendInput(BaseModel):
    """Signal from an operator: the reason a send was refused is fixed, try the step again."""

    note: str = ""


class EngagementEvent(Engagement):
    """One stored engagement event as the workflow receives it; `count` folds identical repeats."""

    kind: EventKind  # type: ignore[assignment]
    id: str
    human: bool
    reason: str = ""
    outbox_key: str | None = None
    count: int = Field(default=1, ge=1)


class EngagementInput(BaseModel):
    """Signal: events stored by the HTTP service (or injected by an operator), coalesced per lead."""

    events: list[EngagementEvent]


class EngagementCounts(BaseModel):
    human_opens: int = 0
    machine_opens: int = 0
    human_clicks: int = 0
    machine_clicks: int = 0
    visits: int = 0


class RerouteInput(BaseModel):
    """Signal: reps changed (imported, activated); a lead waiting for a rep tries again."""

    reason: str = "reps changed"


class AssignLeadInput(BaseModel):
    """Ask routing for a rep; `key` (lead, cycle, attempt) makes the call idempotent."""

    key: str
    lead_id: int
    cycle: int
    score: int
    profile: LeadProfile
    exclude_rep_ids: list[int] = Field(default_factory=list)


class AssignLeadResult(BaseModel):
    assigned: bool
    key: str
    rule: str
    team: str | None = None
    rep_id: int | None = None
    rep_name: str | None = None
    rep_timezone: str = "UTC"
    sla: timedelta = timedelta(hours=4)
    business_hours: SendWindow = Field(default_factory=SendWindow)
    has_manager: bool = False
    reason: str = ""
    retry_after: timedelta = Field(default=timedelta(hours=1), description="unassigned: when to route again")


class NotifyRepInput(BaseModel):
    """Email a rep that a lead is theirs; the manager copied after repeated lapses."""

    assignment_key: str
    lead_id: int
    cycle: int
    attempt: int
    score: Score
    copy_manager: bool = False
    lapses: int = 0
    deadline: datetime | None = None
    note: str = ""


class NotifyRepResult(BaseModel):
    status: SendStatus
    outbox_key: str


class CloseAssignmentInput(BaseModel):
    key: str
    status: Literal["lapsed", "accepted", "rejected", "closed"]


class LeadState(BaseModel):
    """What the `state` query answers."""

    lead_id: int
    stage: Stage
    cadence: str
    cadence_version: int
    cycle: int
    step_index: int = Field(description="index of the next step to send (0-based)")
    steps_total: int
    current_step: str | None
    next_send_at: datetime | None
    sends: int
    uncertain_sends: int
    blocked_reason: str | None = None
    enrolments: int = 1
    score: Score = Field(default_factory=Score)
    threshold: int | None = None
    engagement: EngagementCounts = Field(default_factory=EngagementCounts)
    last_engaged_at: datetime | None = None
    assigned_rep: str | None = None
    assigned_rep_id: int | None = None
    team: str | None = None
    assignment_key: str | None = None
    response_due: datetime | None = None
    lapsed_rep_ids: list[int] = Field(default_factory=list)
    waiting_for: str = ""


class SendEmailInput(BaseModel):
    """One email of a cadence for one lead; (lead, cycle, step) is its outbox key."""

    lead_id: int
    cycle: int
    step_id: str
    step_number: int
    steps_total: int
    template: str
    subject: str | dict[str, str]
    cadence: str
    default_locale: str
    sender: Sender | None = None
    send_as_owner: bool = False


class SendEmailResult(BaseModel):
    status: SendStatus
    outbox_key: str
    message_id: str
