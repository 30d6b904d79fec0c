"""Pydantic models that cross Temporal: workflow, signal, query and activity inputs and results."""

from datetime import date, datetime, timedelta
from typing import Literal, get_args

from pydantic import BaseModel, Field, PrivateAttr

from leadloop.domain.cadence import Cadence, Sender, SendWindow
from leadloop.domain.inbound.verdict import InboundKind
from leadloop.domain.recycle import RecyclePolicy
from leadloop.domain.scoring import Engagement, LeadProfile, Score, ScoringConfig

Stage = Literal[
    "nurturing",
    "send_blocked",
    "paused",
    "big_bang",
    "with_sales",
    "converted",
    "held",
    "dormant",
    "archived",
    "cadence_complete",
    "suppressed",
]
STAGES: tuple[Stage, ...] = get_args(Stage)
EventKind = Literal["open", "click", "visit", "unsubscribe"]
SendStatus = Literal["sent", "already_sent", "uncertain"]


class LeadNurtureInput(BaseModel):
    """Start of a lead's workflow: the lead id and a snapshot of its cadence."""

    lead_id: int
    cadence: Cadence
    timezone: str = "UTC"
    time_scale: float = 1.0
    rep_time_scale: float | None = Field(
        default=None, description="how fast a rep's response deadline runs; None: as fast as the cadence (time_scale)"
    )
    cycle: int = 0
    origin: datetime | None = None
    scoring: ScoringConfig | None = Field(default=None, description="snapshot of scoring.yaml at enrolment")
    profile: LeadProfile = Field(default_factory=LeadProfile)
    recycle: RecyclePolicy | None = Field(default=None, description="snapshot of recycle.yaml; None: reject archives")
    carry: "Carry | None" = Field(default=None, description="state carried over continue-as-new")
    start_after: timedelta = Field(default=timedelta(0), description="cool-down before the first send (cadence time)")
    sales_task_queue: str | None = Field(
        default=None, description="task queue of the sales path's activities; None: the workflow's own"
    )


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
    also: list[str] = Field(default_factory=list, description="ids of the identical repeats folded into this one")
    # the classifier's verdict beyond human or not; None in events stored before verdicts carried it (they count
    # as they always did)
    confidence: float | None = Field(default=None, ge=0, le=1, description="how sure the verdict is (0.5 to 1)")
    machine_class: str | None = Field(default=None, description="gateway | cloud | prefetch | mpp | scanner")
    confirmed: bool | None = Field(
        default=None,
        description="a human click: True once the landing page's beacon reported the visitor; False: "
        "not yet (it counts with scoring.yaml's unconfirmed_click_weight); None: not a click, or stored before",
    )
    confirms: str | None = Field(
        default=None,
        description="the id of the earlier click (kind click) or of the click proving an email opened (kind open) "
        "that this event confirms: the landing page's beacon reported the visitor the click sent",
    )
    was_human: bool | None = Field(
        default=None, description="with `confirms`: the confirmed click had counted as a human (unconfirmed) click"
    )


class EngagementInput(BaseModel):
    """Signal: events stored by the HTTP service (or injected by an operator), coalesced per lead."""

    events: list[EngagementEvent]


class EngagementCounts(BaseModel):
    human_opens: int = 0
    machine_opens: int = 0
    human_clicks: int = 0
    machine_clicks: int = 0
    visits: int = 0
    unconfirmed_clicks: int = Field(default=0, description="human clicks no landing page confirmed (yet)")
    confirmed_clicks: int = Field(default=0, description="clicks the landing page's beacon confirmed")


#: Characters of a reply's own text a signal carries (the rep's notification shows it; the database keeps it whole).
REPLY_TEXT_CHARS = 4000


class InboundInput(BaseModel):
    """Signal `inbound`: one classified inbound message matched to this lead; applied once by `id`."""

    id: str = Field(description="'inbound-<row id>': the stored message, so a second signal of it is no news")
    kind: InboundKind
    received_at: datetime
    source: str = "imap"
    outbox_key: str | None = Field(default=None, description="the send it answers or bounces, when known")
    message_id: str | None = Field(default=None, description="the inbound message's own Message-ID (the thread)")
    subject: str = Field(default="", max_length=998)
    reply_text: str = Field(default="", max_length=REPLY_TEXT_CHARS, description="the reply's words, quote stripped")
    return_date: date | None = None
    left_company: bool = False
    contact_hint: str | None = Field(default=None, max_length=500)
    challenge: bool = False
    status: str | None = Field(default=None, max_length=32, description="a bounce's enhanced status code")
    confidence: Literal["high", "medium", "low"] = "high"


class InboundCounts(BaseModel):
    """Inbound messages applied to a lead, by kind (lifelong)."""

    human_reply: int = 0
    auto_reply: int = 0
    hard_bounce: int = 0
    soft_bounce: int = 0
    policy_block: int = 0
    complaint: int = 0
    unsubscribe_request: int = 0

    def add(self, kind: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)


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
    prefer_rep_id: int | None = Field(default=None, description="keep in touch: this rep, if still active")


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


class ReplyShown(BaseModel):
    """A lead's reply as its rep reads it: her words (quote stripped) and the thread they belong to."""

    id: str = Field(description="the inbound message's signal id: a notification of it is sent once")
    text: str = Field(default="", max_length=REPLY_TEXT_CHARS)
    subject: str = Field(default="", max_length=998)
    message_id: str | None = Field(default=None, description="the reply's own Message-ID")
    answers: str | None = Field(default=None, description="outbox key of leadloop's email it answers")
    received_at: datetime | None = None

    @classmethod
    def of(cls, message: "InboundInput") -> "ReplyShown":
        return cls(
            id=message.id,
            text=message.reply_text,
            subject=message.subject,
            message_id=message.message_id,
            answers=message.outbox_key,
            received_at=message.received_at,
        )


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
    reminder: bool = Field(default=False, description="halfway to the deadline and still no answer")
    reply: ReplyShown | None = Field(default=None, description="the lead's reply the rep must read")
    reply_only: bool = Field(default=False, description="the rep already has the lead: this tells only of a reply")


class SuppressAddressInput(BaseModel):
    """Put the lead's current address on the suppression list for a reason of its own (e.g. soft bounces)."""

    lead_id: int
    reason: str = Field(max_length=32)
    detail: str = Field(default="", max_length=500)


class NotifyRepResult(BaseModel):
    status: SendStatus
    outbox_key: str


class CloseAssignmentInput(BaseModel):
    key: str
    status: Literal["lapsed", "accepted", "rejected", "closed"]


#: Event ids remembered to apply each event once; the HTTP side marks what it signalled, so only
#: a race between two signallers repeats an id, and it repeats a recent one.
SEEN_EVENT_IDS = 2000
#: Human events kept for scoring; per-rule caps make older ones worth nothing more.
SCORED_EVENTS = 500
#: Soft bounce times a lead keeps (recycle.yaml's `suppress_after` is at most 100).
SOFT_BOUNCES_KEPT = 100
#: Lines of past cycles a lead keeps.
HISTORY_LINES = 50


class Recontact(BaseModel):
    """Keep in touch: the rep who asked, and when (cadence time) the lead comes straight back to them."""

    rep_id: int
    at: datetime
    day: date
    note: str = ""


class Carry(BaseModel):
    """A lead's memory: what its workflow counts in a cycle, and what it keeps from one run to the next.

    The workflow holds one and hands it to the next run (continue-as-new) in `LeadNurtureInput.carry`.
    """

    recycles: int = 0
    dormant_cycles: int = 0
    sends: int = 0
    seen_ids: list[str] = Field(default_factory=list)
    counts: "EngagementCounts" = Field(default_factory=lambda: EngagementCounts())
    inbound: InboundCounts = Field(default_factory=InboundCounts, description="inbound messages applied, by kind")
    last_engaged_at: datetime | None = None
    enrolments: int = 0
    history: list[str] = Field(default_factory=list, description="one line per past cycle")
    scored: list[Engagement] = Field(default_factory=list, description="human events still scoring")
    # within a cycle, when Temporal suggested a fresh history mid-cadence
    resume: bool = False
    step_index: int = 0
    cycle_sends: int = 0
    uncertain: int = 0
    streak: int = 0
    big_bang_sent: bool = False
    last_planned: datetime | None = None
    paused: bool = False
    soft_bounces: list[datetime] = Field(default_factory=list, description="when soft bounces came (lifelong)")
    back_at: datetime | None = Field(default=None, description="an out-of-office: no email before (cadence time)")
    tags: list[str] = Field(default_factory=list, description="the lead's tags, shown as LeadTags")
    recontact: Recontact | None = Field(default=None, description="keep in touch: back to this rep at this time")
    announced: int = Field(default=0, description="lifecycle events announced in this run (their keys' counter)")
    engaged_cycle: int | None = Field(default=None, description="the cycle whose first engagement was announced")
    crm_shown: bool = Field(default=False, description="LeadTags or LeadCategory were ever shown (unset when gone)")
    _seen: set[str] = PrivateAttr(default_factory=set)

    def model_post_init(self, context: object, /) -> None:
        self._seen = set(self.seen_ids)

    @classmethod
    def begin(cls, carried: "Carry | None") -> "Carry":
        """The memory a run starts from: all of `carried` within a cycle, only what outlives a cycle otherwise."""
        if carried is None:
            return cls()
        kept = carried.model_copy(deep=True)
        if carried.resume:
            return kept
        return cls(**{name: getattr(kept, name) for name in _LIFELONG})

    def next_cycle(self, line: str, *, reset_engagement: bool, back_at: datetime | None = None) -> "Carry":
        """What the next cycle (a new run) starts from, `line` added to the lead's history; `back_at`: an
        out-of-office's return still ahead, on the next run's cadence clock."""
        return Carry(
            recycles=self.recycles,
            dormant_cycles=self.dormant_cycles,
            seen_ids=self.seen_ids[-SEEN_EVENT_IDS:],
            counts=self.counts,
            inbound=self.inbound,
            last_engaged_at=self.last_engaged_at,
            enrolments=self.enrolments,
            history=[*self.history, line][-HISTORY_LINES:],
            scored=[] if reset_engagement else self.scored,
            soft_bounces=self.soft_bounces,
            back_at=back_at,
            tags=self.tags,
            recontact=self.recontact,
            engaged_cycle=self.engaged_cycle,
            crm_shown=self.crm_shown,
        )

    def same_cycle(self) -> "Carry":
        """What a fresh history of the same cycle (continue-as-new mid-cadence) goes on from."""
        return self.model_copy(update={"resume": True, "seen_ids": self.seen_ids[-SEEN_EVENT_IDS:]})

    def first_seen(self, event: "EngagementEvent") -> "EngagementEvent | None":
        """The part of `event` not applied before (a folded batch keeps its new ids' count); None: all were."""
        fresh = [i for i in (event.id, *event.also) if i not in self._seen]
        if not fresh:
            return None
        self._seen.update(fresh)
        self.seen_ids.extend(fresh)
        if len(fresh) < 1 + len(event.also):  # some of a folded batch were applied before
            return event.model_copy(update={"count": len(fresh)})
        return event

    def first_inbound(self, message: "InboundInput") -> bool:
        """True the first time a stored inbound message is signalled; it is then counted by kind."""
        if message.id in self._seen:
            return False
        self._seen.add(message.id)
        self.seen_ids.append(message.id)
        self.inbound.add(message.kind)
        return True

    def count_reply(self, message: "InboundInput") -> None:
        """A human reply is engagement: it scores (`reply`), and the lead plainly read what it answers."""
        self.streak = 0
        at = message.received_at
        self.last_engaged_at = max(at, self.last_engaged_at) if self.last_engaged_at else at
        self.scored.append(Engagement(kind="reply", at=at))
        del self.scored[:-SCORED_EVENTS]

    def count_soft_bounce(self, at: datetime) -> None:
        self.soft_bounces = [*self.soft_bounces, at][-SOFT_BOUNCES_KEPT:]

    def forget_old_ids(self) -> None:
        if len(self.seen_ids) > SEEN_EVENT_IDS:
            for old in self.seen_ids[:-SEEN_EVENT_IDS]:
                self._seen.discard(old)
            del self.seen_ids[:-SEEN_EVENT_IDS]

    def count(self, event: "EngagementEvent") -> bool:
        """Count an open, click or visit; True when it was human and so calls for a new score."""
        counts = self.counts
        if event.confirms is not None and event.kind == "click":
            return self._confirm_click(event)
        if event.kind == "open":
            if event.human and event.confirms is not None:
                # the open a confirmed click proves (one per email): the machine-looking open it stands for was the
                # reader's after all
                counts.machine_opens = max(counts.machine_opens - 1, 0)
            if event.human:
                counts.human_opens += event.count
            else:
                counts.machine_opens += event.count
        elif event.kind == "click":
            if event.human:
                counts.human_clicks += event.count
                if event.confirmed is False:
                    counts.unconfirmed_clicks += event.count
            else:
                counts.machine_clicks += event.count
        elif event.human:
            counts.visits += event.count
        if not event.human:
            return False
        if event.kind in ("open", "click"):
            self.streak = 0  # machine hits never reach here: they do not count as opened
        self.last_engaged_at = max(event.at, self.last_engaged_at) if self.last_engaged_at else event.at
        # a click still waiting for its landing page's word keeps its id and scores with reduced weight
        waiting = event.kind == "click" and event.confirmed is False
        for _ in range(min(event.count, SCORED_EVENTS)):
            self.scored.append(
                Engagement(kind=event.kind, at=event.at, url=event.url, id=event.id, confirmed=False)
                if waiting
                else Engagement(kind=event.kind, at=event.at, url=event.url)
            )
        del self.scored[:-SCORED_EVENTS]
        return True

    def _confirm_click(self, event: "EngagementEvent") -> bool:
        """The landing page's beacon reported the visitor of an earlier click: the click scores in full; a click
        judged machine before (a cloud desktop, an unpublished proxy) becomes a person's click."""
        counts = self.counts
        counts.confirmed_clicks += 1
        if event.was_human:
            counts.unconfirmed_clicks = max(counts.unconfirmed_clicks - 1, 0)
            for index, scored in enumerate(self.scored):
                if scored.id == event.confirms and scored.confirmed is False:
                    self.scored[index] = scored.model_copy(update={"confirmed": True})
            return True
        counts.machine_clicks = max(counts.machine_clicks - 1, 0)
        counts.human_clicks += 1
        self.streak = 0
        self.last_engaged_at = max(event.at, self.last_engaged_at) if self.last_engaged_at else event.at
        self.scored.append(Engagement(kind="click", at=event.at, url=event.url, id=event.confirms, confirmed=True))
        del self.scored[:-SCORED_EVENTS]
        return True


#: What outlives a cycle; the rest of a `Carry` counts within one.
_LIFELONG = {
    "recycles",
    "dormant_cycles",
    "sends",
    "seen_ids",
    "counts",
    "inbound",
    "last_engaged_at",
    "enrolments",
    "history",
    "scored",
    "soft_bounces",
    "back_at",  # `next_cycle` keeps it only while the lead is still away
    "tags",
    "recontact",
    "engaged_cycle",
    "crm_shown",
}


class PauseInput(BaseModel):
    """Signal from an operator: hold the drip (pause) or let it go on (resume)."""

    note: str = Field(default="", max_length=500)


class ProfileUpdatedInput(BaseModel):
    """Signal: an operator fixed the lead's data (a held lead resumes)."""

    fields: list[str] = Field(default_factory=list)


class RepActionInput(BaseModel):
    """A rep's accept or reject (Temporal update); `rep_id` None: an operator acting for the assignee."""

    rep_id: int | None = None
    reason: str | None = None
    note: str = Field(default="", max_length=2000)
    opportunity_id: str | None = Field(default=None, max_length=200)
    source: str = "api"
    recontact_on: date | None = Field(
        default=None, description="not_ready: the day the lead comes straight back to this rep (keep in touch)"
    )
    actor: str = Field(default="", max_length=100, description="who asked: the API key's name or --actor")


class RepActionResult(BaseModel):
    """What now happens to the lead."""

    stage: Stage
    outcome: str
    back_at: datetime | None = None
    cadence: str | None = None


class LoadCycleInput(BaseModel):
    """Fresh snapshots for a new cycle: the cadence to run, and the rules as they are now."""

    lead_id: int
    cadence: str


class LoadCycleResult(BaseModel):
    cadence: Cadence
    scoring: ScoringConfig | None = None
    recycle: RecyclePolicy | None = None
    profile: LeadProfile
    timezone: str
    found: bool = True


#: What a rep's decision can lead to ("other": a row recorded before outcomes were kept as data, unreadable).
OutcomeAction = Literal["converted", "recycled", "dormant", "archived", "suppressed", "held", "re-routed", "other"]


class DispositionOutcome(BaseModel):
    """What a rep's decision led to, as data: the report counts these, nobody parses the prose."""

    action: OutcomeAction
    #: the cadence a recycled lead goes back to
    cadence: str | None = None
    #: the stage the lead is in once the decision has applied
    stage: Stage | None = None


class DispositionInput(BaseModel):
    """One rep decision to record: lead, rep, reason, note, what it led to (`outcome` in words, `result` as data)."""

    key: str
    lead_id: int
    cycle: int
    rep_id: int | None
    action: Literal["accept", "reject"]
    reason: str | None = None
    note: str = ""
    opportunity_id: str | None = None
    outcome: str = ""
    source: str = "api"
    #: None from a workflow started before outcomes were recorded as data: the activity reads `outcome`
    result: DispositionOutcome | None = None
    recontact_on: date | None = None


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
    inbound: InboundCounts = Field(default_factory=InboundCounts)
    back_at: datetime | None = Field(default=None, description="an out-of-office paused the drip until then")
    last_engaged_at: datetime | None = None
    assigned_rep: str | None = None
    assigned_rep_id: int | None = None
    team: str | None = None
    assignment_key: str | None = None
    response_due: datetime | None = None
    lapsed_rep_ids: list[int] = Field(default_factory=list)
    waiting_for: str = ""
    recycles: int = 0
    dormant_cycles: int = 0
    unopened_streak: int = 0
    big_bang_sent: bool = False
    last_disposition: str | None = None
    opportunity_id: str | None = None
    history: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    category: str | None = Field(default=None, description="scoring.yaml's category the lead falls in now")
    owner: str | None = None
    recontact_on: date | None = Field(default=None, description="keep in touch: the day it goes back to its rep")
    recontact_rep_id: int | None = None
    moving_to: str | None = Field(default=None, description="a move asked for: the cadence it goes on with")
    goal: str | None = None


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
    note: str | None = None  # how the send differed from what was asked (the owner had left: the cadence's sender)


LeadNurtureInput.model_rebuild()


class ChangeInput(BaseModel):
    """Who asked for a change from outside (the CRM's API key's name, or `--actor`) and why."""

    actor: str = Field(default="", max_length=100)
    reason: str = Field(default="", max_length=500)


class GoalInput(ChangeInput):
    """Update: a goal reached outside leadloop (converted, meeting booked, opportunity created) ends nurture the way
    an accept does; `reference` (the CRM's deal or meeting id) makes the same goal applied once."""

    kind: Literal["converted", "meeting_booked", "opportunity_created"]
    source: str = Field(default="api", max_length=40)
    reference: str | None = Field(default=None, max_length=200)


class StopInput(ChangeInput):
    """Update: stop the lead's nurture for good, with a reason (recorded; the lead can be re-enrolled later)."""


class OwnerInput(ChangeInput):
    """Update: the lead's owner rep (their address), who gets its next hand-over; None: no owner, routing decides."""

    owner: str | None = Field(default=None, max_length=320)


class MoveInput(ChangeInput):
    """Update: go on with another cadence from its first step, at the next step boundary."""

    cadence: str = Field(min_length=1, max_length=64)


class TagsInput(ChangeInput):
    """Signal: the lead's tags as they now stand in the database (a set: applying it twice changes nothing)."""

    tags: list[str] = Field(default_factory=list, max_length=20)


class ChangeResult(BaseModel):
    """What a change from outside did: the stage now, and in words."""

    stage: Stage
    outcome: str
    applied: bool = True  # False: it was already so (a goal with the same reference, the same owner)


class LifecycleInput(BaseModel):
    """Activity: one lifecycle event of a lead, recorded once by `key` and delivered to the CRM's webhooks."""

    key: str = Field(description="unique per event: lead-<id>.r<run>.<type>.<n>; the webhook-id derives from it")
    lead_id: int
    type: str
    cycle: int
    stage: Stage
    score: Score | None = None
    cadence: str | None = None
    rep_id: int | None = None
    actor: str = ""
    data: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    occurred_at: datetime


class LifecycleResult(BaseModel):
    recorded: bool
    deliveries: int = 0


class RecordGoalInput(BaseModel):
    """Activity: record a goal reached outside leadloop; (lead, kind, reference) makes a retry a no-op."""

    lead_id: int
    kind: str
    source: str
    reference: str | None = None
    actor: str = ""
    note: str = ""
    stage_before: str | None = None


class WebhookRetry(BaseModel):
    """How a delivery is retried (the settings' LEADLOOP_WEBHOOK_RETRY_*), carried into the delivery workflow."""

    initial_interval: timedelta = timedelta(seconds=10)
    max_interval: timedelta = timedelta(hours=1)
    retry_for: timedelta = timedelta(days=3)
    timeout: timedelta = timedelta(seconds=15)  # one HTTP attempt


class WebhookDeliveryInput(BaseModel):
    """Workflow: deliver one endpoint's lifecycle events of one lead, in order; `pending` rides across
    continue-as-new."""

    endpoint_id: int
    lead_id: int
    retry: WebhookRetry = Field(default_factory=WebhookRetry)
    pending: list[int] = Field(default_factory=list)
    delivered_before: int = 0  # across the runs before this one (continue-as-new)
    per_run: int = Field(default=200, ge=1)  # deliveries per run before it continues as new


class WebhookDeliverySignal(BaseModel):
    """Signal: one more delivery (by id) for this workflow's endpoint and lead; an id it holds already is ignored."""

    delivery_id: int


class WebhookDeliveryResult(BaseModel):
    delivered: int = 0
    dead: int = 0


class DeliverWebhookInput(BaseModel):
    """Activity: one attempt at a delivery (signed at each attempt with the endpoint's current secret)."""

    delivery_id: int


class DeliverWebhookResult(BaseModel):
    """delivered; dead (410 Gone, or the endpoint is disabled, or the body was erased); gone (endpoint removed)."""

    outcome: Literal["delivered", "dead", "gone"]
    status_code: int | None = None


class DeadLetterInput(BaseModel):
    """Activity: a delivery whose retries ran out; `error` is the last failure's message."""

    delivery_id: int
    error: str = ""


class DeadLetterResult(BaseModel):
    endpoint_disabled: bool = False
