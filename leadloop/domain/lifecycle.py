"""A lead's lifecycle (pure): which event moves a stage where, the drip's next email, what a rep's decision does."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from leadloop.domain.cadence import BIG_BANG_STEP, BigBang
from leadloop.domain.models import (
    Carry,
    DispositionOutcome,
    EngagementEvent,
    LeadNurtureInput,
    SendEmailInput,
    Stage,
)
from leadloop.domain.outcomes import OUTCOME_STAGES
from leadloop.domain.recycle import Disposition, RecyclePolicy
from leadloop.domain.schedule import describe_local
from leadloop.domain.scoring import ScoringConfig

Event = Literal[
    "big_bang_sent",  # the last-chance email went out: its response window opens
    "big_bang_over",  # the response window ended (answered, or cut short): back to the drip
    "paused",  # an operator held the drip
    "resumed",  # the hold ended
    "send_refused",  # a send was refused in a way the sender must fix
    "send_retried",  # an operator (or an escalation) lifted the block
    "threshold_reached",  # the score reached the cadence's threshold: the lead goes to a rep
    "unsubscribed",  # the lead asked to hear no more
    "bounced",  # the address is dead or on the suppression list
    "cadence_complete",  # the last step went out, nothing follows
    "dormant",  # silence (cadence done, big bang unanswered) or a rep's decision: the lead sleeps
    "archived",  # retired: no dormant cycles left, or a rep's decision
    "converted",  # the rep accepted
    "recycled",  # the rep gave it back: nurture again with another cadence
    "held",  # the rep says the lead's data is wrong
    "re-routed",  # the rep says wrong team or rep: another rep
    "suppressed",  # the rep says never email again
    "data_fixed",  # an operator fixed a held lead's data
    "reengaged",  # a dormant lead woke up on its timer
    "replied",  # the lead answered one of our emails in person: the lead goes to a rep, whatever the score
    "hard_bounced",  # a bounce came back saying the address is dead
    "complained",  # the lead marked our email as spam
    "soft_bounced",  # too many temporary bounces in a row of days (recycle.yaml soft_bounces)
    "left_company",  # an auto-reply says the lead has left: held until the data is fixed
    "goal_reached",  # the CRM says the lead converted (a deal, a meeting, an opportunity): nurture ends as an accept
    "stopped",  # the CRM or an operator stopped the lead's nurture, with a reason (it can be re-enrolled later)
]

#: Every allowed move; an event a stage does not list is a bug in the caller (`IllegalTransition`).
TRANSITIONS: dict[Stage, dict[Event, Stage]] = {
    "nurturing": {
        "big_bang_sent": "big_bang",
        "paused": "paused",
        "send_refused": "send_blocked",
        "threshold_reached": "with_sales",
        "unsubscribed": "suppressed",
        "bounced": "suppressed",
        "cadence_complete": "cadence_complete",
        "dormant": "dormant",
        "archived": "archived",
    },
    "big_bang": {"big_bang_over": "nurturing", "threshold_reached": "with_sales", "unsubscribed": "suppressed"},
    "paused": {"resumed": "nurturing", "unsubscribed": "suppressed"},
    "send_blocked": {"send_retried": "nurturing", "threshold_reached": "with_sales", "unsubscribed": "suppressed"},
    # a rep's decision: the stage each outcome leads to (outcomes.py), or an unsubscribe meanwhile
    "with_sales": {
        **{cast(Event, action): stage for action, stage in OUTCOME_STAGES.items()},
        "unsubscribed": "suppressed",
    },
    "held": {"data_fixed": "nurturing", "unsubscribed": "suppressed"},
    "dormant": {"reengaged": "nurturing", "threshold_reached": "with_sales", "unsubscribed": "suppressed"},
}
#: Inbound mail that ends the lead's emails wherever it is, as an unsubscribe does.
SUPPRESSING_EVENTS: tuple[Event, ...] = ("hard_bounced", "complained", "soft_bounced")
for _moves in TRANSITIONS.values():
    if "threshold_reached" in _moves:  # a reply hands over wherever the score could
        _moves["replied"] = "with_sales"
    if "unsubscribed" in _moves:
        _moves.update(dict.fromkeys(SUPPRESSING_EVENTS, "suppressed"))
        _moves["goal_reached"] = "converted"
        _moves["stopped"] = "archived"
#: Stages an out-of-office saying the lead has left holds the lead from (with sales: the rep's to judge).
LEFT_COMPANY_HOLDS: tuple[Stage, ...] = ("nurturing", "big_bang", "paused", "send_blocked", "dormant")
for _stage in LEFT_COMPANY_HOLDS:
    TRANSITIONS[_stage]["left_company"] = "held"
#: Stages a workflow ends in.
FINAL_STAGES: tuple[Stage, ...] = ("converted", "archived", "cadence_complete", "suppressed")
#: Stages in which reaching the threshold sends the lead to sales.
ESCALATING_STAGES: tuple[Stage, ...] = tuple(s for s, moves in TRANSITIONS.items() if "threshold_reached" in moves)
#: Error types on which the lead leaves nurture for good.
SUPPRESSING_ERRORS = frozenset({"HardBounce", "Suppressed"})
#: Error types the sender must fix; the workflow waits for an operator's retry.
BLOCKING_ERRORS = frozenset({"SendRefused", "TemplateError", "LeadMissing"})
#: What a rep's decision can lead to: both an event of the lifecycle and an outcome the report counts.
DecisionAction = Literal["converted", "recycled", "dormant", "archived", "suppressed", "held", "re-routed"]
#: A recycle policy's action, and what it leads to.
_RESULTS: dict[str, tuple[DecisionAction, Stage]] = {
    "nurture": ("recycled", "nurturing"),
    "dormant": ("dormant", "dormant"),
    "archive": ("archived", "archived"),
    "suppress": ("suppressed", "suppressed"),
    "hold": ("held", "held"),
    "reroute": ("re-routed", "with_sales"),
}


class IllegalTransition(ValueError):
    """An event the lead's stage does not allow."""


def next_stage(stage: Stage, event: Event) -> Stage:
    """The stage `event` moves a lead in `stage` to."""
    moves = TRANSITIONS.get(stage, {})
    if event not in moves:
        raise IllegalTransition(f"a lead that is {stage.replace('_', ' ')} cannot be {event.replace('_', ' ')}")
    return moves[event]


def escalates(stage: Stage, score: int, threshold: int | None) -> bool:
    """A human engagement brought the score to the threshold in a stage from which sales takes over."""
    return threshold is not None and score >= threshold and stage in ESCALATING_STAGES


def proves_interest(event: EngagementEvent, rules: ScoringConfig | None) -> bool:
    """Whether a human event may hand the lead to sales when the score reaches the threshold: with scoring.yaml's
    `escalate_on: confirmed` (files that do not say), only a click its landing page confirmed, or a hit judged human
    with at least `escalation_confidence`; a scanner that passes for a browser cannot escalate a lead on its own.
    Events stored before verdicts carried a confidence, and snapshots older than the rule, escalate as before."""
    if not event.human:
        return False
    if rules is None or rules.escalate_on != "confirmed" or event.confidence is None:
        return True
    if event.kind == "click":
        return event.confirmed is True or event.confidence >= (rules.escalation_confidence or 1.0)
    return event.confidence >= (rules.escalation_confidence or 1.0)


def send_failure(error_type: str | None) -> Event | None:
    """What a send's permanent failure does to the lead: bounced, blocked, or None (not the lead's: raise)."""
    if error_type in SUPPRESSING_ERRORS:
        return "bounced"
    if error_type in BLOCKING_ERRORS:
        return "send_refused"
    return None


@dataclass
class Lifecycle:
    """The lead's stage and the events handlers have noted that the run loop has yet to act on."""

    stage: Stage = "nurturing"
    escalate: bool = False
    unsubscribed: bool = False
    reroute: bool = False
    retry: bool = False
    profile_fixed: bool = False
    replied: bool = False  # the escalation is a reply's, not the score's
    exit: tuple[Event, str] | None = None  # inbound mail suppressed the lead: the event and why
    hold_for: str | None = None  # an auto-reply says the lead has left: why the drip holds
    replan: bool = False  # an auto-reply moved the next email: the drip's timer is cut to plan again
    move_to: str | None = None  # the CRM asked for another cadence: the next step boundary starts it
    recontact_due: bool = False  # keep in touch: the day the rep asked for came; the lead goes back to them

    def enter(self, event: Event) -> Stage:
        self.stage = next_stage(self.stage, event)
        return self.stage

    def suppress(self, event: Event, why: str) -> None:
        """Inbound mail ended the lead's emails (bounce, complaint): every wait ends as an unsubscribe's does."""
        if not self.unsubscribed:
            self.exit = (event, why)
        self.unsubscribed = True

    def end(self, event: Event, why: str) -> None:
        """A change from outside ends nurture (a goal reached, a stop): every wait ends as an unsubscribe's does."""
        self.suppress(event, why)

    def departure(self) -> tuple[Event, str]:
        """Why a lead that is leaving for good leaves: an unsubscribe, or the inbound mail that suppressed it."""
        return self.exit or ("unsubscribed", "unsubscribed")

    @property
    def handover(self) -> Event:
        """The event that takes the lead to sales: a reply's, or the score's."""
        return "replied" if self.replied else "threshold_reached"

    @property
    def leaving(self) -> bool:
        """Unsubscribed or escalated: whatever the lead waits for, it waits no longer."""
        return self.unsubscribed or self.escalate


@dataclass(frozen=True)
class NextEmail:
    """The drip's next email, how long after the last one it goes, how the UI names it; `big_bang` when it is that."""

    email: SendEmailInput
    wait: timedelta
    label: str
    big_bang: BigBang | None = None


def next_email(lead: LeadNurtureInput, memory: Carry) -> NextEmail | None:
    """The big bang once enough emails went unopened, else the next step; None: the cadence is complete."""
    cadence, index = lead.cadence, memory.step_index
    big = cadence.big_bang
    if big is None or memory.big_bang_sent or memory.streak < big.after_unopened:
        big = None
    if big is not None:
        step_id, template, subject, wait = BIG_BANG_STEP, big.template, big.subject, big.wait
        label = f"the big bang ({memory.streak} unopened)"
    elif index < len(cadence.steps):
        step = cadence.steps[index]
        step_id, template, subject, wait = step.id, step.template, step.subject, step.wait
        label = f"step {index + 1} of {len(cadence.steps)} '{step.id}'"
    else:
        return None
    email = SendEmailInput(
        lead_id=lead.lead_id,
        cycle=lead.cycle,
        step_id=step_id,
        step_number=min(index + 1, len(cadence.steps)),
        steps_total=len(cadence.steps),
        template=template,
        subject=subject,
        cadence=cadence.name,
        default_locale=cadence.default_locale,
        sender=cadence.sender,
        send_as_owner=cadence.send_as_owner,
    )
    return NextEmail(email, wait, label, big)


def format_wait(wait: timedelta) -> str:
    """'3d', '1d12h', '90m' -> as a marketer wrote it (roughly)."""
    minutes = int(wait.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (mins, "m")) if n)
    return text or "0"


@dataclass(frozen=True)
class Decision:
    """What a rep's accept or reject leads to: the effective disposition, the outcome in words and as data.

    `back_after`: cadence time until the lead is back in nurture (recycled or dormant), None otherwise.
    """

    disposition: Disposition | None
    outcome: str
    action: DecisionAction
    stage: Stage
    back_after: timedelta | None = None

    @property
    def result(self) -> DispositionOutcome:
        """The outcome as recorded: a recycled lead names the cadence it goes back to."""
        cadence = self.disposition.cadence if self.action == "recycled" and self.disposition else None
        return DispositionOutcome(action=self.action, cadence=cadence, stage=self.stage)


def accepted(opportunity_id: str | None) -> Decision:
    outcome = "converted" + (f", opportunity {opportunity_id}" if opportunity_id else "")
    return Decision(None, outcome, "converted", "converted")


def rejected(
    policy: RecyclePolicy | None,
    reason: str,
    *,
    recycles: int,
    dormant_cycles: int,
    now: datetime,
    timezone: str,
    rep: int | None,
) -> Decision:
    """The recycle policy's answer to a rejection for `reason`, at `now` (cadence time) in the lead's zone."""
    disposition = policy.for_reason(reason) if policy else Disposition(action="archive")
    if disposition.action == "nurture" and policy and recycles >= policy.max_recycles:
        disposition = Disposition(action="dormant")  # recycled often enough: let it rest
    back_after: timedelta | None = None
    if disposition.action == "nurture":
        back_after = disposition.cool_down
        outcome = (
            f"back to nurture with '{disposition.cadence}' after a {format_wait(disposition.cool_down)} "
            f"cool-down, on {describe_local(now + disposition.cool_down, timezone)}"
        )
    elif disposition.action == "dormant":
        dormancy = policy.dormant if policy else None
        if dormancy is None or dormant_cycles >= dormancy.max_cycles:
            disposition, outcome = Disposition(action="archive"), "archived: retired after its dormant cycles"
        else:
            back_after = dormancy.reengage_after
            outcome = f"dormant; back with '{dormancy.cadence}' on {describe_local(now + back_after, timezone)}"
    else:
        outcome = {
            "archive": f"archived ({reason})",
            "suppress": "suppressed: never emailed again",
            "hold": "held until the lead's data is fixed (`leadloop lead update` or PATCH /leads/{id})",
            "reroute": f"re-routed to another rep; rep-{rep} excluded",
        }[disposition.action]
    action, stage = _RESULTS[disposition.action]
    return Decision(disposition, outcome, action, stage, back_after)
