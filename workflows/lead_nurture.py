"""LeadNurtureWorkflow: one durable workflow per lead that drips its cadence inside send windows."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from leadloop.domain.cadence import BigBang
    from leadloop.domain.metrics import (
        ACCEPTANCES,
        BIG_BANGS,
        ESCALATIONS,
        LAPSES,
        LEADS_FINISHED,
        RECYCLES,
        REJECTIONS,
        UNSUBSCRIBES_APPLIED,
    )
    from leadloop.domain.models import (
        AssignLeadInput,
        AssignLeadResult,
        Carry,
        CloseAssignmentInput,
        DispositionInput,
        EngagementCounts,
        EngagementEvent,
        EngagementInput,
        EnrollInput,
        LeadNurtureInput,
        LeadNurtureResult,
        LeadState,
        LoadCycleInput,
        LoadCycleResult,
        NotifyRepInput,
        NotifyRepResult,
        PauseInput,
        ProfileUpdatedInput,
        RepActionInput,
        RepActionResult,
        RerouteInput,
        RetrySendInput,
        SendEmailInput,
        SendEmailResult,
        Stage,
    )
    from leadloop.domain.recycle import REASONS, Disposition
    from leadloop.domain.schedule import DemoClock, add_business_time, describe_local, next_send_time
    from leadloop.domain.scoring import Engagement, Score, compute_score
    from leadloop.domain.search import (
        ASSIGNED_REP,
        CADENCE_NAME,
        CADENCE_STEP,
        LAST_ENGAGED_AT,
        LEAD_SCORE,
        LEAD_STAGE,
        RECYCLE_COUNT,
        UNOPENED_STREAK,
    )

#: SMTP 4xx and lost connections retry with backoff, without limit: a relay that is down for an
#: hour must not lose the email. Permanent refusals are raised non-retryable by the activity.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
SEND_TIMEOUT = timedelta(seconds=30)
#: Routing and the rep's notification: database work that retries until it succeeds.
SALES_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
SALES_TIMEOUT = timedelta(seconds=30)
#: The sales path (routing, the rep's notification, decisions) and unsubscribes go ahead of the drip's sends when the
#: task queue has a backlog: a rep hears of a hot lead in well under a second even while thousands of
#: nurture emails are queued. The drip keeps the default priority (3). Leads enrolled with a sales task queue
#: (LEADLOOP_SALES_TASK_QUEUE) run these activities there, on a worker of their own (`LEADLOOP_WORKER_ROLE=sales`).
SALES_PRIORITY = Priority(priority_key=1)
#: The halfway reminder to a rep is worth a few tries, not a wait that delays the rep's decision.
REMINDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)  # fmt: skip
#: workflow.patched ids, one per change of what the workflow does (README: "Changing workflow code")
REP_REMINDER_PATCH = "rep-reminder-halfway"
#: A lead with no rep available retries routing no slower than this (real time).
MAX_ROUTING_BACKOFF = timedelta(days=1)
#: Event ids remembered to apply each event once; the HTTP side marks what it signalled, so only
#: a race between two signallers repeats an id, and it repeats a recent one.
SEEN_EVENT_IDS = 2000
#: Human events kept for scoring; per-rule caps make older ones worth nothing more.
SCORED_EVENTS = 500
#: Stages in which reaching the threshold sends the lead to sales.
ESCALATING_STAGES = ("nurturing", "send_blocked", "big_bang", "dormant")
#: Error types on which the lead leaves nurture for good.
SUPPRESSING_ERRORS = frozenset({"HardBounce", "Suppressed"})
#: Error types the sender must fix; the workflow waits for an operator's retry.
BLOCKING_ERRORS = frozenset({"SendRefused", "TemplateError", "LeadMissing"})


def format_wait(wait: timedelta) -> str:
    """'3d', '1d12h', '90m' -> as a marketer wrote it (roughly)."""
    minutes = int(wait.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (mins, "m")) if n)
    return text or "0"


@workflow.defn
class LeadNurtureWorkflow:
    @workflow.init
    def __init__(self, input: LeadNurtureInput) -> None:
        self._input = input
        self._stage: Stage = "nurturing"
        self._step_index = 0
        self._sends = 0
        self._uncertain = 0
        self._next_send_at: datetime | None = None
        self._blocked_reason: str | None = None
        self._retry_requested = False
        self._enrolments = 0
        self._published: tuple[object, ...] | None = None
        self._seen_ids: list[str] = []
        self._seen_set: set[str] = set()
        self._scored: list[Engagement] = []
        self._counts = EngagementCounts()
        self._score: Score = self._compute_score()
        self._last_engaged_at: datetime | None = None
        self._escalate = False
        self._unsubscribed = False
        self._reroute = False
        self._assignment: AssignLeadResult | None = None
        self._response_due: datetime | None = None
        self._lapsed: list[int] = []
        self._rerouted_from: list[int] = []
        self._waiting_for = ""
        self._details = ""
        self._decision: tuple[Literal["accept", "reject"], RepActionInput] | None = None
        self._awaiting_decision = False  # only while the rep's response window is open
        self._decided = ""  # the outcome of the decision this run applied
        self._decision_result: RepActionResult | None = None
        self._last_disposition: str | None = None
        self._opportunity_id: str | None = None
        self._profile_fixed = False
        self._recycles = 0
        self._dormant_cycles = 0
        self._streak = 0
        self._big_bang_sent = False
        self._paused = False
        self._history: list[str] = []
        if input.carry is not None:
            carry = input.carry
            self._recycles, self._dormant_cycles = carry.recycles, carry.dormant_cycles
            self._seen_ids = list(carry.seen_ids)
            self._seen_set = set(self._seen_ids)
            self._counts = carry.counts.model_copy()
            self._last_engaged_at = carry.last_engaged_at
            self._enrolments = carry.enrolments
            self._history = list(carry.history)
            self._scored = list(carry.scored)
            self._score = self._compute_score()
            if carry.resume:  # the same cycle, continued in a fresh history
                self._step_index, self._sends, self._uncertain = carry.step_index, carry.cycle_sends, carry.uncertain
                self._streak, self._big_bang_sent = carry.streak, carry.big_bang_sent
                self._paused = carry.paused

    @workflow.run
    async def run(self, input: LeadNurtureInput) -> LeadNurtureResult:
        cadence = input.cadence
        clock = DemoClock(input.origin or workflow.now(), input.time_scale)
        self._clock = clock
        self._publish()
        if input.start_after > timedelta(0):
            resume = clock.cadence_time(workflow.now()) + input.start_after
            when = describe_local(resume, input.timezone)
            self._waiting_for = f"cool-down until {when}, then cadence '{cadence.name}'"
            self._next_send_at = workflow.now() + clock.real_delay(workflow.now(), resume)
            self._publish(self._waiting_for)
            await self._wait(
                lambda: self._unsubscribed or self._escalate,
                clock.real_delay(workflow.now(), resume),
                f"cool-down {format_wait(input.start_after)} → {when}, then '{cadence.name}'",
            )
        last_planned = clock.cadence_time(workflow.now())
        if input.carry is not None and input.carry.resume and input.carry.last_planned is not None:
            last_planned = input.carry.last_planned
        while True:
            if self._unsubscribed:
                return await self._finish("suppressed", "unsubscribed")
            if self._escalate:
                return await self._with_sales()
            if self._paused:
                if await self._hold_paused():  # a long pause with many events: go on in a fresh history
                    return await self._fresh_history(last_planned)
                continue
            big = self._big_bang_due()
            if big is None and self._step_index >= len(cadence.steps):
                break
            if big is not None:
                step_id, template, subject, wait = "big-bang", big.template, big.subject, big.wait
                label = f"the big bang ({self._streak} unopened)"
            else:
                step = cadence.steps[self._step_index]
                step_id, template, subject, wait = step.id, step.template, step.subject, step.wait
                label = f"step {self._step_index + 1} of {len(cadence.steps)} '{step.id}'"
            earliest = max(last_planned + wait, clock.cadence_time(workflow.now()))
            planned = next_send_time(earliest, cadence.send_window, input.timezone)
            delay = clock.real_delay(workflow.now(), planned)
            self._next_send_at = workflow.now() + delay
            when = describe_local(planned, input.timezone)
            self._waiting_for = f"{label}, next email {when}"
            self._publish(self._waiting_for)
            if delay > timedelta(0):
                # a timer that an unsubscribe or an escalation cuts short
                if await self._wait(
                    lambda: (
                        self._unsubscribed
                        or self._escalate
                        or self._paused
                        or workflow.info().is_continue_as_new_suggested()
                    ),
                    delay,
                    f"wait {format_wait(wait)} → {when}, {label}",
                ):
                    if not (self._unsubscribed or self._escalate or self._paused):
                        return await self._fresh_history(last_planned)
                    continue
            try:
                result = await workflow.execute_activity(
                    "send_email",
                    SendEmailInput(
                        lead_id=input.lead_id,
                        cycle=input.cycle,
                        step_id=step_id,
                        step_number=min(self._step_index + 1, len(cadence.steps)),
                        steps_total=len(cadence.steps),
                        template=template,
                        subject=subject,
                        cadence=cadence.name,
                        default_locale=cadence.default_locale,
                        sender=cadence.sender,
                        send_as_owner=cadence.send_as_owner,
                    ),
                    result_type=SendEmailResult,
                    start_to_close_timeout=SEND_TIMEOUT,
                    retry_policy=SEND_RETRY,
                    summary=f"send {label} ({template})",
                )
            except ActivityError as err:
                cause = err.cause
                if not isinstance(cause, ApplicationError):
                    raise
                if cause.type in SUPPRESSING_ERRORS:
                    workflow.logger.info("lead %s suppressed: %s", input.lead_id, cause.message)
                    return await self._finish("suppressed", f"suppressed: {cause.message}")
                if cause.type in BLOCKING_ERRORS:
                    await self._blocked(step_id, f"{cause.type}: {cause.message}")
                    continue
                raise
            if result.status == "uncertain":
                self._uncertain += 1
            else:
                self._sends += 1
            last_planned = planned
            if big is not None:
                self._big_bang_sent = True
                BIG_BANGS.add(workflow.metric_meter(), cadence=cadence.name)
                finished = await self._big_bang_window(big, planned)
                if finished is not None:
                    return finished
                continue
            self._streak += 1
            self._step_index += 1
        self._next_send_at = None
        if cadence.next_cadence:
            return await self._new_cycle(
                cadence.next_cadence, timedelta(0), False, f"cadence '{cadence.name}' complete"
            )
        if self._input.recycle is not None:
            return await self._dormant(f"cadence '{cadence.name}' complete without an escalation")
        return await self._finish("cadence_complete", f"cadence '{cadence.name}' complete")

    def _big_bang_due(self) -> BigBang | None:
        big = self._input.cadence.big_bang
        if big is None or self._big_bang_sent or self._streak < big.after_unopened:
            return None
        return big

    async def _big_bang_window(self, big: BigBang, sent_at: datetime) -> LeadNurtureResult | None:
        """After the big bang: a human engagement resumes nurture (and may escalate); silence means dormant."""
        self._stage = "big_bang"
        self._next_send_at = None
        until = sent_at + big.response_window
        when = describe_local(until, self._input.timezone)
        self._waiting_for = f"a response to the big bang by {when}"
        self._publish(self._waiting_for)
        engaged = await self._wait(
            lambda: self._unsubscribed or self._escalate or self._streak == 0,
            self._clock.real_delay(workflow.now(), until),
            f"big bang response window → {when}",
        )
        self._stage = "nurturing"
        if self._unsubscribed:
            return await self._finish("suppressed", "unsubscribed")
        if self._escalate:
            return await self._with_sales()
        if engaged:
            return None
        return await self._dormant(f"no response to the big bang by {when}")

    async def _hold_paused(self) -> bool:
        """An operator paused the drip: nothing is sent until `leadloop resume`; an unsubscribe or an
        escalation still ends the hold. True when Temporal suggests a fresh history instead."""
        self._stage = "paused"
        self._next_send_at = None
        self._waiting_for = "an operator to resume it (`leadloop resume`)"
        self._publish(f"paused; waiting for {self._waiting_for}")
        await workflow.wait_condition(
            lambda: (
                not self._paused
                or self._unsubscribed
                or self._escalate
                or workflow.info().is_continue_as_new_suggested()
            )
        )
        self._stage = "nurturing"
        return self._paused and not (self._unsubscribed or self._escalate)

    async def _wait(self, condition: Callable[[], bool], limit: timedelta, summary: str) -> bool:
        """A durable timer that `condition` cuts short; True when it did."""
        try:
            await workflow.wait_condition(condition, timeout=limit, timeout_summary=summary)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ sales

    async def _with_sales(self) -> LeadNurtureResult:
        """Hand the lead to a rep: route, notify, and move on to the next rep when one lets it lapse."""
        self._stage = "with_sales"
        self._next_send_at = None
        self._escalate = False
        ESCALATIONS.add(workflow.metric_meter(), cadence=self._input.cadence.name)
        attempt = 0
        backoff: timedelta | None = None
        while not self._unsubscribed:
            attempt += 1
            key = f"lead-{self._input.lead_id}.c{self._input.cycle}.a{attempt}"
            self._publish(f"score {self._score.total} reached {self._threshold()}: routing to a rep")
            self._reroute = False  # before the activity: a roster change during it still counts
            assignment = await workflow.execute_activity(
                "assign_lead",
                AssignLeadInput(
                    key=key,
                    lead_id=self._input.lead_id,
                    cycle=self._input.cycle,
                    score=self._score.total,
                    profile=self._input.profile,
                    exclude_rep_ids=[*self._lapsed, *self._rerouted_from],
                ),
                result_type=AssignLeadResult,
                start_to_close_timeout=SALES_TIMEOUT,
                retry_policy=SALES_RETRY,
                priority=SALES_PRIORITY,
                task_queue=self._input.sales_task_queue,
                summary=f"route lead (attempt {attempt}, score {self._score.total})",
            )
            if not assignment.assigned:
                self._assignment = None
                backoff = (
                    min(backoff * 2, MAX_ROUTING_BACKOFF)
                    if backoff
                    else assignment.retry_after / self._input.time_scale
                )
                self._waiting_for = f"a rep: {assignment.reason}"
                self._publish(f"unassigned, waiting for {self._waiting_for}")
                await self._wait(
                    lambda: self._reroute or self._unsubscribed, backoff, f"no rep available; route again in {backoff}"
                )
                continue
            backoff = None
            self._assignment = assignment
            clock = self._rep_clock()
            rep_now = clock.cadence_time(workflow.now())
            due = add_business_time(rep_now, assignment.sla, assignment.business_hours, assignment.rep_timezone)
            self._response_due = workflow.now() + clock.real_delay(workflow.now(), due)
            copy_manager = len(self._lapsed) >= 2 and assignment.has_manager
            try:
                await self._notify(key, attempt, assignment, due, copy_manager)
            except ActivityError as err:
                # the rep cannot be told (address refused, rep removed): hand the lead to someone else
                workflow.logger.warning(
                    "lead %s: rep-%s not notified: %s", self._input.lead_id, assignment.rep_id, err.cause
                )
                await workflow.execute_activity(
                    "close_assignment",
                    CloseAssignmentInput(key=key, status="closed"),
                    start_to_close_timeout=SALES_TIMEOUT,
                    retry_policy=SALES_RETRY,
                    priority=SALES_PRIORITY,
                    task_queue=self._input.sales_task_queue,
                    summary=f"rep-{assignment.rep_id} could not be notified",
                )
                if assignment.rep_id is not None:
                    self._rerouted_from.append(assignment.rep_id)
                self._assignment, self._response_due = None, None
                continue
            when = describe_local(due, assignment.rep_timezone)
            self._waiting_for = f"rep-{assignment.rep_id} to accept or reject by {when}"
            self._publish(f"with rep-{assignment.rep_id} ({assignment.rule}); response due {when}")
            self._awaiting_decision = True
            answered: Callable[[], bool] = lambda: self._unsubscribed or self._decision is not None  # noqa: E731
            decided = False
            # A reminder halfway (in the rep's business hours) to the deadline. Leads handed over before this
            # change keep the single wait their histories recorded (see "Changing workflow code" in README).
            if workflow.patched(REP_REMINDER_PATCH):
                halfway = add_business_time(rep_now, assignment.sla / 2, assignment.business_hours,
                                            assignment.rep_timezone)  # fmt: skip
                until = clock.real_delay(workflow.now(), halfway)
                if until > timedelta(0):
                    remind_at = describe_local(halfway, assignment.rep_timezone)
                    decided = await self._wait(answered, until, f"remind rep-{assignment.rep_id} at {remind_at}")
                    if not decided:
                        await self._remind(key, attempt, assignment, due)
            if not decided:
                delay = clock.real_delay(workflow.now(), due)  # after the notification, however long it took
                decided = await self._wait(answered, delay, f"response due {when} (rep-{assignment.rep_id})")
            self._awaiting_decision = False
            if decided:
                if self._decision is None:
                    break  # unsubscribed
                outcome = await self._decide(key, assignment)
                if outcome is not None:
                    return outcome
                continue  # re-routed
            await workflow.execute_activity(
                "close_assignment",
                CloseAssignmentInput(key=key, status="lapsed"),
                start_to_close_timeout=SALES_TIMEOUT,
                retry_policy=SALES_RETRY,
                priority=SALES_PRIORITY,
                task_queue=self._input.sales_task_queue,
                summary=f"rep-{assignment.rep_id} let the lead lapse",
            )
            assert assignment.rep_id is not None
            self._lapsed.append(assignment.rep_id)
            LAPSES.add(workflow.metric_meter(), team=assignment.team or "none")
            self._assignment = None
            self._response_due = None
        if self._assignment is not None:
            key = f"lead-{self._input.lead_id}.c{self._input.cycle}.a{attempt}"
            await workflow.execute_activity(
                "close_assignment",
                CloseAssignmentInput(key=key, status="closed"),
                start_to_close_timeout=SALES_TIMEOUT,
                retry_policy=SALES_RETRY,
                priority=SALES_PRIORITY,
                task_queue=self._input.sales_task_queue,
                summary="lead unsubscribed: assignment closed",
            )
        return await self._finish("suppressed", "unsubscribed")

    def _rep_clock(self) -> DemoClock:
        """The clock a rep's deadline runs on: the cadence's, or (the demo) one of its own from this moment on, so
        a person reading the rep's email can still act while the cadence runs a day a second."""
        scale = self._input.rep_time_scale
        if scale is None or scale == self._input.time_scale:
            return self._clock  # leads started without one keep the deadlines their histories recorded
        return DemoClock(workflow.now(), scale)

    async def _notify(
        self, key: str, attempt: int, assignment: AssignLeadResult, due: datetime, copy_manager: bool
    ) -> None:
        await workflow.execute_activity(
            "notify_rep",
            NotifyRepInput(
                assignment_key=key,
                lead_id=self._input.lead_id,
                cycle=self._input.cycle,
                attempt=attempt,
                score=self._score,
                copy_manager=copy_manager,
                lapses=len(self._lapsed),
                deadline=due,
                note=f"after {len(self._lapsed)} lapsed hand-over(s)" if self._lapsed else "",
            ),
            result_type=NotifyRepResult,
            start_to_close_timeout=SALES_TIMEOUT,
            retry_policy=SEND_RETRY,
            priority=SALES_PRIORITY,
            task_queue=self._input.sales_task_queue,
            summary=f"notify rep-{assignment.rep_id} ({assignment.team})"
            + (", manager copied" if copy_manager else ""),
        )

    async def _remind(self, key: str, attempt: int, assignment: AssignLeadResult, due: datetime) -> None:
        """Halfway to the deadline without an answer: remind the rep once (a failure only costs the reminder)."""
        try:
            await workflow.execute_activity(
                "notify_rep",
                NotifyRepInput(
                    assignment_key=key, lead_id=self._input.lead_id, cycle=self._input.cycle, attempt=attempt,
                    score=self._score, lapses=len(self._lapsed), deadline=due, reminder=True,
                ),
                result_type=NotifyRepResult,
                start_to_close_timeout=SALES_TIMEOUT,
                retry_policy=REMINDER_RETRY,
                priority=SALES_PRIORITY,
                task_queue=self._input.sales_task_queue,
                summary=f"remind rep-{assignment.rep_id}: no answer yet",
            )  # fmt: skip
        except ActivityError as err:
            workflow.logger.warning("lead %s: reminder to rep-%s failed: %s", self._input.lead_id,
                                    assignment.rep_id, err.cause)  # fmt: skip

    async def _decide(self, key: str, assignment: AssignLeadResult) -> LeadNurtureResult | None:
        """Apply the rep's accept or reject; None when the lead is re-routed and stays with sales."""
        assert self._decision is not None
        action, request = self._decision
        rep = assignment.rep_id
        await workflow.execute_activity(
            "close_assignment",
            CloseAssignmentInput(key=key, status="accepted" if action == "accept" else "rejected"),
            start_to_close_timeout=SALES_TIMEOUT,
            retry_policy=SALES_RETRY,
            priority=SALES_PRIORITY,
            task_queue=self._input.sales_task_queue,
            summary=f"rep-{rep} {action}ed",
        )
        if action == "accept":
            self._opportunity_id = request.opportunity_id
            outcome = "converted" + (f", opportunity {request.opportunity_id}" if request.opportunity_id else "")
            await self._record(key, rep, request, "accept", outcome)
            ACCEPTANCES.add(workflow.metric_meter(), team=assignment.team or "none")
            self._answer(RepActionResult(stage="converted", outcome=outcome))
            return await self._finish("converted", f"accepted by rep-{rep}: {outcome}")
        reason = request.reason or "other"
        policy = self._input.recycle
        disposition = policy.for_reason(reason) if policy else Disposition(action="archive")
        if disposition.action == "nurture" and policy and self._recycles >= policy.max_recycles:
            disposition = Disposition(action="dormant")  # recycled often enough: let it rest
        now_cadence = self._clock.cadence_time(workflow.now())
        tz = self._input.timezone
        back_at: datetime | None = None
        if disposition.action == "nurture":
            back_at = workflow.now() + disposition.cool_down / self._input.time_scale
            outcome = (
                f"back to nurture with '{disposition.cadence}' after a {format_wait(disposition.cool_down)} "
                f"cool-down, on {describe_local(now_cadence + disposition.cool_down, tz)}"
            )
        elif disposition.action == "dormant":
            dormancy = policy.dormant if policy else None
            if dormancy is None or self._dormant_cycles >= dormancy.max_cycles:
                disposition, outcome = Disposition(action="archive"), "archived: retired after its dormant cycles"
            else:
                back_at = workflow.now() + dormancy.reengage_after / self._input.time_scale
                outcome = (
                    f"dormant; back with '{dormancy.cadence}' on "
                    f"{describe_local(now_cadence + dormancy.reengage_after, tz)}"
                )
        else:
            outcome = {
                "archive": f"archived ({reason})",
                "suppress": "suppressed: never emailed again",
                "hold": "held until the lead's data is fixed (`leadloop lead update` or PATCH /leads/{id})",
                "reroute": f"re-routed to another rep; rep-{rep} excluded",
            }[disposition.action]
        await self._record(key, rep, request, "reject", outcome)
        REJECTIONS.add(workflow.metric_meter(), reason=reason, disposition=disposition.action)
        self._last_disposition = f"{reason}: {outcome}"
        stage: Stage = {
            "nurture": "nurturing", "dormant": "dormant", "archive": "archived", "suppress": "suppressed",
            "hold": "held", "reroute": "with_sales",
        }[disposition.action]  # type: ignore[assignment]  # fmt: skip
        self._answer(RepActionResult(stage=stage, outcome=outcome, back_at=back_at, cadence=disposition.cadence))
        self._assignment, self._response_due = None, None
        if disposition.action == "reroute":
            if rep is not None:
                self._rerouted_from.append(rep)
            return None
        if disposition.action == "archive":
            return await self._finish("archived", f"rejected by rep-{rep} ({reason}): {outcome}")
        if disposition.action == "suppress":
            await workflow.execute_activity(
                "suppress_lead",
                self._input.lead_id,
                start_to_close_timeout=SALES_TIMEOUT,
                retry_policy=SALES_RETRY,
                priority=SALES_PRIORITY,
                task_queue=self._input.sales_task_queue,
                summary="rep: not interested → suppression list",
            )
            return await self._finish("suppressed", f"rejected by rep-{rep}: not interested")
        if disposition.action == "hold":
            return await self._hold(reason)
        if disposition.action == "dormant":
            return await self._dormant(f"rejected by rep-{rep} ({reason})")
        self._recycles += 1
        assert disposition.cadence is not None
        RECYCLES.add(workflow.metric_meter(), cadence=disposition.cadence)
        return await self._new_cycle(disposition.cadence, disposition.cool_down, disposition.reset_engagement, outcome)

    async def _record(
        self, key: str, rep: int | None, request: RepActionInput, action: Literal["accept", "reject"], outcome: str
    ) -> None:
        await workflow.execute_activity(
            "record_disposition",
            DispositionInput(
                key=key,
                lead_id=self._input.lead_id,
                cycle=self._input.cycle,
                rep_id=rep,
                action=action,
                reason=request.reason,
                note=request.note,
                opportunity_id=request.opportunity_id,
                outcome=outcome,
                source=request.source,
            ),
            start_to_close_timeout=SALES_TIMEOUT,
            retry_policy=SALES_RETRY,
            priority=SALES_PRIORITY,
            task_queue=self._input.sales_task_queue,
            summary=f"record: rep-{rep} {action}" + (f" ({request.reason})" if request.reason else ""),
        )

    def _answer(self, result: RepActionResult) -> None:
        self._decision_result = result
        self._decision = None
        self._decided = result.outcome

    async def _hold(self, reason: str) -> LeadNurtureResult:
        """Wait, visibly, for the lead's data to be fixed; then nurture resumes with the same cadence."""
        self._stage = "held"
        self._next_send_at = None
        self._waiting_for = "the lead's data to be fixed (`leadloop lead update`, PATCH /leads/{id})"
        self._publish(f"held ({reason}): waiting for {self._waiting_for}")
        self._profile_fixed = False
        await workflow.wait_condition(lambda: self._profile_fixed or self._unsubscribed)
        if self._unsubscribed:
            return await self._finish("suppressed", "unsubscribed")
        return await self._new_cycle(self._input.cadence.name, timedelta(0), False, "data fixed: nurture resumes")

    async def _dormant(self, why: str) -> LeadNurtureResult:
        """Sleep on a durable timer, then re-engage; retired (archived) after the policy's dormant cycles."""
        policy = self._input.recycle
        if policy is None or self._dormant_cycles >= policy.dormant.max_cycles:
            return await self._finish("archived", f"{why}: retired after {self._dormant_cycles} dormant cycle(s)")
        dormancy = policy.dormant
        self._stage = "dormant"
        self._next_send_at = None
        wake = self._clock.cadence_time(workflow.now()) + dormancy.reengage_after
        when = describe_local(wake, self._input.timezone)
        self._waiting_for = f"re-engagement with '{dormancy.cadence}' on {when}"
        self._publish(f"dormant ({why}); {self._waiting_for}")
        if await self._wait(
            lambda: self._unsubscribed or self._escalate,
            self._clock.real_delay(workflow.now(), wake),
            f"dormant until {when}",
        ):
            if self._escalate:  # woke up by itself: engaged enough to go to sales
                return await self._with_sales()
            return await self._finish("suppressed", "unsubscribed while dormant")
        self._dormant_cycles += 1
        return await self._new_cycle(
            dormancy.cadence, timedelta(0), True, f"re-engaged after {format_wait(dormancy.reengage_after)}"
        )

    async def _fresh_history(self, last_planned: datetime) -> LeadNurtureResult:
        """Temporal suggests a new run (the history grew long): continue-as-new in the same cycle and step."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._unsubscribed:
            return await self._finish("suppressed", "unsubscribed")
        carry = self._carry(f"cycle {self._input.cycle} continued in a fresh history", reset_engagement=False)
        carry = carry.model_copy(
            update={
                "history": self._history,
                "resume": True,
                "step_index": self._step_index,
                "cycle_sends": self._sends,
                "uncertain": self._uncertain,
                "streak": self._streak,
                "big_bang_sent": self._big_bang_sent,
                "last_planned": last_planned,
                "paused": self._paused,
            }
        )
        workflow.continue_as_new(self._input.model_copy(update={"carry": carry, "origin": self._clock.origin,
                                                                 "start_after": timedelta(0)}))  # fmt: skip

    def _carry(self, line: str, *, reset_engagement: bool) -> Carry:
        return Carry(
            recycles=self._recycles,
            dormant_cycles=self._dormant_cycles,
            seen_ids=self._seen_ids[-SEEN_EVENT_IDS:],
            counts=self._counts,
            last_engaged_at=self._last_engaged_at,
            enrolments=self._enrolments,
            history=[*self._history, line][-50:],
            scored=[] if reset_engagement else self._scored,
        )

    async def _new_cycle(
        self, cadence: str, start_after: timedelta, reset_engagement: bool, why: str
    ) -> LeadNurtureResult:
        """Continue-as-new into the next cycle with fresh snapshots of the marketer's files."""
        loaded = await workflow.execute_activity(
            "load_cycle",
            LoadCycleInput(lead_id=self._input.lead_id, cadence=cadence),
            result_type=LoadCycleResult,
            start_to_close_timeout=SALES_TIMEOUT,
            retry_policy=SALES_RETRY,
            summary=f"load cadence '{cadence}' for cycle {self._input.cycle + 1}",
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._unsubscribed:  # checked in the same task as the continue-as-new: nothing slips between
            return await self._finish("suppressed", "unsubscribed")
        line = f"cycle {self._input.cycle} ('{self._input.cadence.name}'): {self._sends} sent, {why}"
        carry = self._carry(line, reset_engagement=reset_engagement)
        workflow.continue_as_new(
            LeadNurtureInput(
                lead_id=self._input.lead_id,
                cadence=loaded.cadence,
                timezone=loaded.timezone,
                time_scale=self._input.time_scale,
                rep_time_scale=self._input.rep_time_scale,
                cycle=self._input.cycle + 1,
                scoring=loaded.scoring,
                profile=loaded.profile,
                recycle=loaded.recycle or self._input.recycle,
                carry=carry,
                start_after=start_after,
                sales_task_queue=self._input.sales_task_queue,
            )
        )

    def _threshold(self) -> int | None:
        escalation = self._input.cadence.escalation
        return escalation.threshold if escalation else None

    # ------------------------------------------------------------------ engagement

    def _compute_score(self) -> Score:
        if self._input.scoring is None:
            return Score()
        return compute_score(
            self._input.scoring, self._input.profile, self._scored, workflow.now(), time_scale=self._input.time_scale
        )

    def _apply(self, event: EngagementEvent) -> bool:
        """Count one event; True when it was human and so calls for a new score."""
        if event.kind == "unsubscribe":
            if not self._unsubscribed:
                UNSUBSCRIBES_APPLIED.add(workflow.metric_meter(), stage=self._stage)
            self._unsubscribed = True
            return False
        counts = self._counts
        if event.kind == "open":
            if event.human:
                counts.human_opens += event.count
            else:
                counts.machine_opens += event.count
        elif event.kind == "click":
            if event.human:
                counts.human_clicks += event.count
            else:
                counts.machine_clicks += event.count
        elif event.human:
            counts.visits += event.count
        if not event.human:
            return False
        if event.kind in ("open", "click"):
            self._streak = 0  # machine hits never reach here: they do not count as opened
        self._last_engaged_at = max(event.at, self._last_engaged_at) if self._last_engaged_at else event.at
        for _ in range(min(event.count, SCORED_EVENTS)):
            self._scored.append(Engagement(kind=event.kind, at=event.at, url=event.url))
        del self._scored[:-SCORED_EVENTS]
        return True

    async def _blocked(self, step_id: str, reason: str) -> None:
        """Wait, visibly, until an operator says the cause of a refused send is fixed."""
        self._stage = "send_blocked"
        self._blocked_reason = reason
        self._next_send_at = None
        self._publish(f"sending blocked at step '{step_id}': {reason}; waiting for `leadloop retry`")
        self._retry_requested = False
        await workflow.wait_condition(lambda: self._retry_requested or self._unsubscribed)
        self._stage = "nurturing"
        self._blocked_reason = None

    async def _finish(self, stage: Stage, details: str) -> LeadNurtureResult:
        self._stage = stage
        self._publish(details)
        await workflow.wait_condition(workflow.all_handlers_finished)
        LEADS_FINISHED.add(workflow.metric_meter(), stage=stage)
        return LeadNurtureResult(stage=stage, sends=self._sends, uncertain_sends=self._uncertain)

    def _publish(self, details: str | None = None) -> None:
        """Keep search attributes and the UI's current details in step with the state."""
        steps = self._input.cadence.steps
        step = steps[min(self._step_index, len(steps) - 1)].id
        rep = f"rep-{self._assignment.rep_id}" if self._assignment and self._assignment.rep_id else ""
        current = (self._stage, step, self._score.total, rep, self._last_engaged_at, self._streak, self._recycles)
        if current != self._published:  # each upsert is a history event: only on change
            self._published = current
            updates: list[SearchAttributeUpdate[Any]] = [
                LEAD_STAGE.value_set(self._stage),
                CADENCE_NAME.value_set(self._input.cadence.name),
                CADENCE_STEP.value_set(step),
                LEAD_SCORE.value_set(self._score.total),
                ASSIGNED_REP.value_set(rep) if rep else ASSIGNED_REP.value_unset(),
                UNOPENED_STREAK.value_set(self._streak),
                RECYCLE_COUNT.value_set(self._recycles),
            ]
            if self._last_engaged_at:
                updates.append(LAST_ENGAGED_AT.value_set(self._last_engaged_at))
            workflow.upsert_search_attributes(updates)
        threshold = self._threshold()
        score = f"score {self._score.total}/{threshold}" if threshold else f"score {self._score.total}"
        if details:
            self._details = details
        streak = f"; streak {self._streak}" if self._streak else ""
        workflow.set_current_details(f"{self._stage}: {self._details}; {score}{streak}; {self._sends} sent")

    @workflow.signal
    def enroll(self, input: EnrollInput) -> None:
        """Every enrolment signals; a lead already on a cadence keeps it (idempotent intake)."""
        self._enrolments += 1
        if self._enrolments > 1:
            workflow.logger.info(
                "lead %s enrolled again (%s, from %s): keeps cadence '%s'",
                self._input.lead_id, input.cadence_name, input.source, self._input.cadence.name,
            )  # fmt: skip

    @workflow.signal
    def engagement(self, input: EngagementInput) -> None:
        """Events from the HTTP service, coalesced; each event id is applied once."""
        rescore = False
        for event in input.events:
            fresh = [i for i in (event.id, *event.also) if i not in self._seen_set]
            if not fresh:
                continue
            self._seen_set.update(fresh)
            self._seen_ids.extend(fresh)
            if len(fresh) < 1 + len(event.also):  # some of a folded batch were applied before
                event = event.model_copy(update={"count": len(fresh)})
            rescore = self._apply(event) or rescore
        if len(self._seen_ids) > SEEN_EVENT_IDS:
            for old in self._seen_ids[:-SEEN_EVENT_IDS]:
                self._seen_set.discard(old)
            del self._seen_ids[:-SEEN_EVENT_IDS]
        if rescore:
            self._score = self._compute_score()
            threshold = self._threshold()
            if threshold is not None and self._score.total >= threshold and self._stage in ESCALATING_STAGES:
                self._escalate = True
                self._retry_requested = True  # a blocked send gives way to sales
        self._publish()

    @workflow.update
    async def accept(self, input: RepActionInput) -> RepActionResult:
        """The assigned rep takes the lead: converted, nurture stops for good."""
        return await self._act("accept", input)

    @accept.validator
    def _validate_accept(self, input: RepActionInput) -> None:
        self._check_action("accept", input)

    @workflow.update
    async def reject(self, input: RepActionInput) -> RepActionResult:
        """The assigned rep gives the lead back; the recycle policy decides by the reason."""
        return await self._act("reject", input)

    @reject.validator
    def _validate_reject(self, input: RepActionInput) -> None:
        self._check_action("reject", input)
        if input.reason not in REASONS:
            raise ValueError(f"unknown reason {input.reason!r}; one of: {', '.join(REASONS)}")

    def _check_action(self, action: str, input: RepActionInput) -> None:
        """Refused here, nothing is written to history."""
        lead = self._input.lead_id
        if self._decision is not None:
            raise ValueError(f"another decision on lead {lead} is being applied")
        if self._decided and not self._awaiting_decision:
            raise ValueError(f"lead {lead} was just decided ({self._decided}), not with sales: nothing to {action}")
        if self._stage != "with_sales":
            raise ValueError(f"lead {lead} is {self._stage.replace('_', ' ')}, not with sales: nothing to {action}")
        if self._assignment is None or self._assignment.rep_id is None or not self._awaiting_decision:
            raise ValueError(f"lead {lead} has no rep assigned at the moment (it is being routed); try again shortly")
        if input.rep_id is not None and input.rep_id != self._assignment.rep_id:
            raise ValueError(f"rep-{input.rep_id} is not the rep of lead {lead} (rep-{self._assignment.rep_id} is)")
        if self._decision is not None:
            raise ValueError(f"another decision on lead {lead} is being applied")

    async def _act(self, action: Literal["accept", "reject"], input: RepActionInput) -> RepActionResult:
        if self._decision is not None or self._stage != "with_sales" or not self._awaiting_decision:
            # two actions validated in the same moment: the first one wins
            raise ApplicationError(f"lead {self._input.lead_id} was decided a moment ago", type="AlreadyDecided")
        self._decision = (action, input)
        self._decision_result = None
        await workflow.wait_condition(lambda: self._decision_result is not None)
        assert self._decision_result is not None
        return self._decision_result

    @workflow.signal
    def pause(self, input: PauseInput) -> None:
        """An operator holds the drip; engagement is still recorded."""
        self._paused = True

    @workflow.signal
    def resume(self, input: PauseInput) -> None:
        """An operator lets the drip go on, from the step it stopped at."""
        self._paused = False

    @workflow.signal
    def profile_updated(self, input: ProfileUpdatedInput) -> None:
        """The lead's data was fixed; a held lead goes back to nurture."""
        self._profile_fixed = True

    @workflow.signal
    def reroute(self, input: RerouteInput) -> None:
        """Reps changed: a lead waiting for one tries routing again now."""
        self._reroute = True

    @workflow.signal
    def retry_send(self, input: RetrySendInput) -> None:
        """An operator fixed what refused the last send."""
        if self._stage == "send_blocked":
            self._retry_requested = True

    @workflow.query
    def state(self) -> LeadState:
        steps = self._input.cadence.steps
        return LeadState(
            lead_id=self._input.lead_id,
            stage=self._stage,
            cadence=self._input.cadence.name,
            cadence_version=self._input.cadence.version,
            cycle=self._input.cycle,
            step_index=self._step_index,
            steps_total=len(steps),
            current_step=steps[self._step_index].id if self._step_index < len(steps) else None,
            next_send_at=self._next_send_at,
            sends=self._sends,
            uncertain_sends=self._uncertain,
            blocked_reason=self._blocked_reason,
            enrolments=self._enrolments,
            score=self._score,
            threshold=self._threshold(),
            engagement=self._counts,
            last_engaged_at=self._last_engaged_at,
            assigned_rep=self._assignment.rep_name if self._assignment else None,
            assigned_rep_id=self._assignment.rep_id if self._assignment else None,
            team=self._assignment.team if self._assignment else None,
            assignment_key=self._assignment.key if self._assignment else None,
            response_due=self._response_due,
            lapsed_rep_ids=list(self._lapsed),
            waiting_for=self._waiting_for,
            recycles=self._recycles,
            dormant_cycles=self._dormant_cycles,
            unopened_streak=self._streak,
            big_bang_sent=self._big_bang_sent,
            last_disposition=self._last_disposition,
            opportunity_id=self._opportunity_id,
            history=list(self._history),
        )
