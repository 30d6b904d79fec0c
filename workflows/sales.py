"""The sales path of a lead's workflow: route to a rep, notify, remind, move on at a lapse, apply the rep's decision."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.commands import REMINDER_RETRY, SEND_RETRY, Queue, sales_queue, wait_for

with workflow.unsafe.imports_passed_through():
    from activities.assignment import AssignmentActivities
    from activities.email import EmailActivities
    from activities.leads import LeadActivities
    from leadloop.domain.lifecycle import Decision, Lifecycle, accepted, rejected
    from leadloop.domain.metrics import ACCEPTANCES, LAPSES, REJECTIONS
    from leadloop.domain.models import (
        AssignLeadInput,
        AssignLeadResult,
        Carry,
        CloseAssignmentInput,
        DispositionInput,
        LeadNurtureInput,
        NotifyRepInput,
        Recontact,
        RepActionInput,
        RepActionResult,
        ReplyShown,
        Stage,
    )
    from leadloop.domain.schedule import DemoClock, add_business_time, describe_local, local_morning
    from leadloop.domain.scoring import Score

#: workflow.patched ids, one per change of what the workflow does (README: "Changing workflow code")
REP_REMINDER_PATCH = "rep-reminder-halfway"
#: A lead with no rep available retries routing no slower than this (real time).
MAX_ROUTING_BACKOFF = timedelta(days=1)

RepAction = Literal["accept", "reject"]


class Lead(Protocol):
    """What the sales path reads from the lead's workflow."""

    input: LeadNurtureInput
    life: Lifecycle
    memory: Carry
    score: Score
    clock: DemoClock
    waiting_for: str

    def threshold(self) -> int | None: ...

    def publish(self, details: str | None = None) -> None: ...

    def announce(
        self,
        type: str,
        *,
        actor: str = "",
        rep_id: int | None = None,
        stage: Stage | None = None,
        **data: str | int | None,
    ) -> None: ...


@dataclass(frozen=True)
class Verdict:
    """The rep's decision as applied, and the words the workflow goes on with (why it finishes, holds, sleeps)."""

    decision: Decision
    why: str


class Sales:
    """One lead with sales: its assignment, the reps that let it lapse or passed it on, the rep's decision."""

    def __init__(self, lead: Lead) -> None:
        self._lead = lead
        self.assignment: AssignLeadResult | None = None
        self.response_due: datetime | None = None
        self.lapsed: list[int] = []
        self.rerouted_from: list[int] = []
        self.last_disposition: str | None = None
        self.opportunity_id: str | None = None
        self._decision: tuple[RepAction, RepActionInput] | None = None
        self._awaiting_decision = False  # only while the rep's response window is open
        self._decided = ""  # the outcome of the decision this run applied
        self._decision_result: RepActionResult | None = None
        self.replies: list[ReplyShown] = []  # the lead's replies no rep has been told of yet
        self.last_reply: ReplyShown | None = None  # every later hand-over (after a lapse too) shows it
        self._announced: int | None = None  # the rep this hand-over was announced with (0: waiting for one)

    async def hand_over(self) -> Verdict | None:
        """Route, notify, and move on to the next rep when one lets the lead lapse; None: it unsubscribed."""
        lead = self._lead
        attempt = 0
        backoff: timedelta | None = None
        self._announced = None
        recontact = lead.memory.recontact if lead.life.recontact_due else None
        while not lead.life.unsubscribed:
            attempt += 1
            key = f"lead-{lead.input.lead_id}.c{lead.input.cycle}.a{attempt}"
            why = "the lead replied" if lead.life.replied else f"score {lead.score.total} reached {lead.threshold()}"
            if recontact is not None:
                why = f"keep in touch: rep-{recontact.rep_id} asked to call back on {recontact.day}"
            lead.publish(f"{why}: routing to a rep")
            lead.life.reroute = False  # before the activity: a roster change during it still counts
            assignment = await self._queue.run(
                AssignmentActivities.assign_lead,
                AssignLeadInput(
                    key=key,
                    lead_id=lead.input.lead_id,
                    cycle=lead.input.cycle,
                    score=lead.score.total,
                    profile=lead.input.profile,
                    exclude_rep_ids=[*self.lapsed, *self.rerouted_from],
                    prefer_rep_id=recontact.rep_id if recontact is not None and attempt == 1 else None,
                ),
                f"route lead (attempt {attempt}, score {lead.score.total})",
            )
            if not assignment.assigned:
                if self._announced is None:
                    self._announced = 0
                    lead.announce("lead.escalated", waiting=1, why=why, waiting_for=assignment.reason)
                backoff = await self._no_rep(assignment, backoff)
                continue
            backoff = None
            verdict = await self._with_rep(key, attempt, assignment, why, recontact)
            if verdict is not None:
                return verdict
        return None

    async def _no_rep(self, assignment: AssignLeadResult, backoff: timedelta | None) -> timedelta:
        """Nobody to route to: wait (longer each time) for a roster change, then route again."""
        lead = self._lead
        self.assignment = None
        backoff = min(backoff * 2, MAX_ROUTING_BACKOFF) if backoff else assignment.retry_after / lead.input.time_scale
        lead.waiting_for = f"a rep: {assignment.reason}"
        lead.publish(f"unassigned, waiting for {lead.waiting_for}")
        await wait_for(
            lambda: lead.life.reroute or lead.life.unsubscribed, backoff, f"no rep available; route again in {backoff}"
        )
        return backoff

    async def _with_rep(
        self, key: str, attempt: int, assignment: AssignLeadResult, why: str, recontact: Recontact | None
    ) -> Verdict | None:
        """Tell the rep, wait for an answer; None: route again (lapsed, not notified, re-routed, unsubscribed)."""
        lead = self._lead
        self.assignment = assignment
        clock = self._rep_clock()
        rep_now = clock.cadence_time(workflow.now())
        due = add_business_time(rep_now, assignment.sla, assignment.business_hours, assignment.rep_timezone)
        self.response_due = workflow.now() + clock.real_delay(workflow.now(), due)
        if not await self._notify(key, attempt, assignment, due, recontact):
            return None
        if recontact is not None and lead.memory.recontact is recontact:
            lead.memory.recontact = None  # the call back is with its rep now
            lead.life.recontact_due = False
        previous = self._announced
        self._announced = assignment.rep_id or 0
        lead.announce(
            "lead.reassigned" if previous else "lead.escalated",
            rep_id=assignment.rep_id,
            why=why,
            rule=assignment.rule,
            team=assignment.team,
            previous_rep_id=previous or None,
            recontact_on=str(recontact.day) if recontact is not None else None,
        )
        when = describe_local(due, assignment.rep_timezone)
        lead.waiting_for = f"rep-{assignment.rep_id} to accept or reject by {when}"
        lead.publish(f"with rep-{assignment.rep_id} ({assignment.rule}); response due {when}")
        self._awaiting_decision = True
        decided = await self._await_answer(key, attempt, assignment, clock, rep_now, due)
        self._awaiting_decision = False
        if decided:
            if self._decision is None:  # unsubscribed
                await self._close(key, "closed", "lead unsubscribed: assignment closed")
                return None
            return await self._decide(key, assignment)
        await self._close(key, "lapsed", f"rep-{assignment.rep_id} let the lead lapse")
        assert assignment.rep_id is not None
        self.lapsed.append(assignment.rep_id)
        LAPSES.add(workflow.metric_meter(), team=assignment.team or "none")
        self.assignment = None
        self.response_due = None
        return None

    async def _await_answer(
        self, key: str, attempt: int, assignment: AssignLeadResult, clock: DemoClock, rep_now: datetime, due: datetime
    ) -> bool:
        """Wait for the rep's decision until the deadline; True when one came (or the lead unsubscribed)."""
        life = self._lead.life
        answered: Callable[[], bool] = lambda: life.unsubscribed or self._decision is not None  # noqa: E731
        decided = False
        # A reminder halfway (in the rep's business hours) to the deadline. Leads handed over before this
        # change keep the single wait their histories recorded (see "Changing workflow code" in README).
        if workflow.patched(REP_REMINDER_PATCH):
            hours, zone = assignment.business_hours, assignment.rep_timezone
            halfway = add_business_time(rep_now, assignment.sla / 2, hours, zone)
            until = clock.real_delay(workflow.now(), halfway)
            if until > timedelta(0):
                remind_at = describe_local(halfway, assignment.rep_timezone)
                summary = f"remind rep-{assignment.rep_id} at {remind_at}"
                decided = await self._wait(answered, until, summary, key, attempt, assignment, due)
                if not decided:
                    await self._remind(key, attempt, assignment, due)
        if not decided:
            delay = clock.real_delay(workflow.now(), due)  # after the notification, however long it took
            when = describe_local(due, assignment.rep_timezone)
            summary = f"response due {when} (rep-{assignment.rep_id})"
            decided = await self._wait(answered, delay, summary, key, attempt, assignment, due)
        return decided

    async def _wait(
        self,
        answered: Callable[[], bool],
        limit: timedelta,
        summary: str,
        key: str,
        attempt: int,
        assignment: AssignLeadResult,
        due: datetime,
    ) -> bool:
        """Wait up to `limit` for the rep's answer, telling the rep of each reply of the lead's that comes meanwhile
        (the time left stays as it was); True when the answer came."""
        end = workflow.now() + limit
        while True:
            if await wait_for(lambda: answered() or bool(self.replies), limit, summary) and answered():
                return True
            if not self.replies:
                return False
            await self._tell_reply(key, attempt, assignment, due)
            limit = end - workflow.now()
            if limit <= timedelta(0):
                return answered()

    def _rep_clock(self) -> DemoClock:
        """The clock a rep's deadline runs on: the cadence's, or (the demo) one of its own from this moment on, so
        a person reading the rep's email can still act while the cadence runs a day a second."""
        lead = self._lead
        scale = lead.input.rep_time_scale
        if scale is None or scale == lead.input.time_scale:
            return lead.clock  # leads started without one keep the deadlines their histories recorded
        return DemoClock(workflow.now(), scale)

    def _notice(self, key: str, attempt: int, due: datetime, *, copy_manager: bool = False) -> NotifyRepInput:
        """What the rep is told of this attempt."""
        lead = self._lead
        return NotifyRepInput(
            assignment_key=key,
            lead_id=lead.input.lead_id,
            cycle=lead.input.cycle,
            attempt=attempt,
            score=lead.score,
            copy_manager=copy_manager,
            lapses=len(self.lapsed),
            deadline=due,
            reply=self.last_reply,
        )

    def heard(self, reply: ReplyShown) -> None:
        """The lead replied: the next notification carries it, or, with a rep waiting, one of its own."""
        self.replies.append(reply)
        self.last_reply = reply

    async def _tell_reply(self, key: str, attempt: int, assignment: AssignLeadResult, due: datetime) -> None:
        """The lead replied while the rep has it: the rep gets her words (a failure costs only that note)."""
        reply = self.replies.pop(0)
        notice = self._notice(key, attempt, due).model_copy(update={"reply": reply, "reply_only": True})
        try:
            await self._queue.run(
                EmailActivities.notify_rep,
                notice,
                f"tell rep-{assignment.rep_id}: the lead replied",
                retry=REMINDER_RETRY,
            )
        except ActivityError as err:
            lead_id = self._lead.input.lead_id
            workflow.logger.warning("lead %s: reply to rep-%s not told: %s", lead_id, assignment.rep_id, err.cause)

    async def _notify(
        self, key: str, attempt: int, assignment: AssignLeadResult, due: datetime, recontact: Recontact | None = None
    ) -> bool:
        """Tell the rep the lead is theirs (the manager copied after two lapses); False: the rep cannot be told."""
        copy_manager = len(self.lapsed) >= 2 and assignment.has_manager
        notice = self._notice(key, attempt, due, copy_manager=copy_manager)
        told = len(self.replies)  # the last reply goes with the hand-over; replies after it are told on their own
        if self.lapsed:
            notice.note = f"after {len(self.lapsed)} lapsed hand-over(s)"
        if recontact is not None and assignment.rep_id == recontact.rep_id:
            asked = f": {recontact.note}" if recontact.note else ""
            notice.note = f"keep in touch: you asked to call this lead back on {recontact.day}{asked}"
        manager = ", manager copied" if copy_manager else ""
        try:
            await self._queue.run(
                EmailActivities.notify_rep,
                notice,
                f"notify rep-{assignment.rep_id} ({assignment.team}){manager}",
                retry=SEND_RETRY,
            )
        except ActivityError as err:
            # the rep cannot be told (address refused, rep removed): hand the lead to someone else
            workflow.logger.warning(
                "lead %s: rep-%s not notified: %s", self._lead.input.lead_id, assignment.rep_id, err.cause
            )
            await self._close(key, "closed", f"rep-{assignment.rep_id} could not be notified")
            if assignment.rep_id is not None:
                self.rerouted_from.append(assignment.rep_id)
            self.assignment, self.response_due = None, None
            return False
        del self.replies[:told]
        return True

    async def _remind(self, key: str, attempt: int, assignment: AssignLeadResult, due: datetime) -> None:
        """Halfway to the deadline without an answer: remind the rep once (a failure only costs the reminder)."""
        try:
            await self._queue.run(
                EmailActivities.notify_rep,
                self._notice(key, attempt, due).model_copy(update={"reminder": True}),
                f"remind rep-{assignment.rep_id}: no answer yet",
                retry=REMINDER_RETRY,
            )
        except ActivityError as err:
            lead_id = self._lead.input.lead_id
            workflow.logger.warning("lead %s: reminder to rep-%s failed: %s", lead_id, assignment.rep_id, err.cause)

    async def _close(self, key: str, status: Literal["lapsed", "accepted", "rejected", "closed"], summary: str) -> None:
        await self._queue.run(
            AssignmentActivities.close_assignment, CloseAssignmentInput(key=key, status=status), summary
        )

    async def _decide(self, key: str, assignment: AssignLeadResult) -> Verdict | None:
        """Apply the rep's accept or reject; None when the lead is re-routed and stays with sales."""
        assert self._decision is not None
        action, request = self._decision
        rep = assignment.rep_id
        await self._close(key, "accepted" if action == "accept" else "rejected", f"rep-{rep} {action}ed")
        if action == "accept":
            self.opportunity_id = request.opportunity_id
            decision = accepted(request.opportunity_id)
            await self._record(key, rep, request, action, decision)
            lead = self._lead
            lead.announce("lead.accepted", actor=request.actor, rep_id=rep, opportunity_id=request.opportunity_id)
            ACCEPTANCES.add(workflow.metric_meter(), team=assignment.team or "none")
            self._answer(RepActionResult(stage=decision.stage, outcome=decision.outcome))
            return Verdict(decision, f"accepted by rep-{rep}: {decision.outcome}")
        return await self._reject(key, rep, request)

    async def _reject(self, key: str, rep: int | None, request: RepActionInput) -> Verdict | None:
        """The recycle policy decides by the reason; a re-route stays here, the rest goes back to the workflow."""
        lead = self._lead
        reason = request.reason or "other"
        decision = rejected(
            lead.input.recycle,
            reason,
            recycles=lead.memory.recycles,
            dormant_cycles=lead.memory.dormant_cycles,
            now=lead.clock.cadence_time(workflow.now()),
            timezone=lead.input.timezone,
            rep=rep,
        )
        assert decision.disposition is not None
        await self._record(key, rep, request, "reject", decision)
        # this decision's call-back day replaces any earlier one (a reject without one clears it)
        keeps = request.recontact_on is not None and rep is not None and decision.action in ("recycled", "dormant")
        lead.memory.recontact = (
            Recontact(
                rep_id=rep,
                at=local_morning(request.recontact_on, lead.input.timezone),
                day=request.recontact_on,
                note=request.note,
            )
            if keeps and rep is not None and request.recontact_on is not None
            else None
        )
        lead.announce(
            "lead.rejected",
            actor=request.actor,
            rep_id=rep,
            reason=reason,
            note=request.note or None,
            outcome=decision.action,
            recontact_on=str(request.recontact_on) if request.recontact_on else None,
        )
        REJECTIONS.add(workflow.metric_meter(), reason=reason, disposition=decision.disposition.action)
        self.last_disposition = f"{reason}: {decision.outcome}"
        back_at = None if decision.back_after is None else workflow.now() + decision.back_after / lead.input.time_scale
        self._answer(
            RepActionResult(
                stage=decision.stage, outcome=decision.outcome, back_at=back_at, cadence=decision.disposition.cadence
            )
        )
        self.assignment, self.response_due = None, None
        if decision.action == "re-routed":
            if rep is not None:
                self.rerouted_from.append(rep)
            return None
        if decision.action == "suppressed":
            await self._queue.run(
                LeadActivities.suppress_lead, lead.input.lead_id, "rep: not interested → suppression list"
            )
        why = {
            "archived": f"rejected by rep-{rep} ({reason}): {decision.outcome}",
            "suppressed": f"rejected by rep-{rep}: not interested",
            "held": reason,
            "dormant": f"rejected by rep-{rep} ({reason})",
        }.get(decision.action, decision.outcome)
        return Verdict(decision, why)

    async def _record(
        self, key: str, rep: int | None, request: RepActionInput, action: RepAction, decision: Decision
    ) -> None:
        lead = self._lead
        reason = f" ({request.reason})" if request.reason else ""
        await self._queue.run(
            LeadActivities.record_disposition,
            DispositionInput(
                key=key,
                lead_id=lead.input.lead_id,
                cycle=lead.input.cycle,
                rep_id=rep,
                action=action,
                reason=request.reason,
                note=request.note,
                opportunity_id=request.opportunity_id,
                outcome=decision.outcome,
                source=request.source,
                result=decision.result,
                recontact_on=request.recontact_on,
            ),
            f"record: rep-{rep} {action}{reason}",
        )

    def _answer(self, result: RepActionResult) -> None:
        self._decision_result = result
        self._decision = None
        self._decided = result.outcome

    def check(self, action: RepAction, input: RepActionInput) -> None:
        """An accept's or reject's validator: refused here, nothing is written to history."""
        lead = self._lead.input.lead_id
        stage = self._lead.life.stage
        if self._decision is not None:
            raise ValueError(f"another decision on lead {lead} is being applied")
        if self._decided and not self._awaiting_decision:
            raise ValueError(f"lead {lead} was just decided ({self._decided}), not with sales: nothing to {action}")
        if stage != "with_sales":
            raise ValueError(f"lead {lead} is {stage.replace('_', ' ')}, not with sales: nothing to {action}")
        life = self._lead.life
        if life.unsubscribed:  # a goal, a stop or an unsubscribe came first: it ends the hand-over
            why = life.exit[1] if life.exit else "unsubscribed"
            raise ValueError(f"lead {lead} is leaving nurture ({why}): nothing to {action}")
        if self.assignment is None or self.assignment.rep_id is None or not self._awaiting_decision:
            raise ValueError(f"lead {lead} has no rep assigned at the moment (it is being routed); try again shortly")
        if input.rep_id is not None and input.rep_id != self.assignment.rep_id:
            raise ValueError(f"rep-{input.rep_id} is not the rep of lead {lead} (rep-{self.assignment.rep_id} is)")

    async def act(self, action: RepAction, input: RepActionInput) -> RepActionResult:
        """An accept or reject, handed to the waiting sales path; answers once the decision has applied."""
        if self._decision is not None or self._lead.life.stage != "with_sales" or not self._awaiting_decision:
            # two actions validated in the same moment: the first one wins
            raise ApplicationError(f"lead {self._lead.input.lead_id} was decided a moment ago", type="AlreadyDecided")
        life = self._lead.life
        if life.unsubscribed:  # a goal, a stop or an unsubscribe validated in the same moment came first
            why = life.exit[1] if life.exit else "unsubscribed"
            raise ApplicationError(f"lead {self._lead.input.lead_id} is leaving nurture ({why})", type="Leaving")
        self._decision = (action, input)
        self._decision_result = None
        await workflow.wait_condition(lambda: self._decision_result is not None)
        assert self._decision_result is not None
        return self._decision_result

    @property
    def deciding(self) -> bool:
        """A rep's accept or reject is being applied."""
        return self._decision is not None

    @property
    def _queue(self) -> Queue:
        return sales_queue(self._lead.input.sales_task_queue)
