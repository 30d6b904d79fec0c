"""LeadNurtureWorkflow: one durable workflow per lead that drips its cadence inside send windows."""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.commands import DATABASE_RETRY, DRIP, sales_queue, wait_for
from workflows.sales import Sales
from workflows.view import View, lead_state

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.leads import LeadActivities
    from leadloop.domain.cadence import BigBang
    from leadloop.domain.inbound_effects import back_at, effect_of, hold_reason, pause_until, suppression
    from leadloop.domain.lifecycle import (
        Event,
        Lifecycle,
        NextEmail,
        escalates,
        format_wait,
        next_email,
        proves_interest,
        send_failure,
    )
    from leadloop.domain.metrics import (
        BIG_BANGS,
        ESCALATIONS,
        INBOUND_APPLIED,
        LEADS_FINISHED,
        RECYCLES,
        UNSUBSCRIBES_APPLIED,
    )
    from leadloop.domain.models import (
        Carry,
        EngagementInput,
        EnrollInput,
        InboundInput,
        LeadNurtureInput,
        LeadNurtureResult,
        LeadState,
        LoadCycleInput,
        PauseInput,
        ProfileUpdatedInput,
        RepActionInput,
        RepActionResult,
        ReplyShown,
        RerouteInput,
        RetrySendInput,
        SuppressAddressInput,
    )
    from leadloop.domain.recycle import REASONS, SoftBounces
    from leadloop.domain.schedule import DemoClock, describe_local, next_send_time
    from leadloop.domain.scoring import Score, compute_score

#: workflow.patched id: inbound messages act (hand over, pause, hold, suppress); before it they were only counted
INBOUND_EFFECTS_PATCH = "inbound-effects"
#: workflow.patched id: a reply's hand-over or a left-company hold noted as the run was about to go on in a new one
#: (the next cycle loading, a fresh history) is acted on; before it the new run dropped it
PENDING_BEFORE_NEW_RUN_PATCH = "inbound-pending-before-new-run"
#: workflow.patched id: an out-of-office pauses for its span on the cadence's clock, from when the message came;
#: before it the return date was compared with cadence time as it was (at demo speed long past) at the signal
OUT_OF_OFFICE_CADENCE_TIME_PATCH = "out-of-office-cadence-time"


@workflow.defn
class LeadNurtureWorkflow:
    """The run loop walks the lead's lifecycle (`leadloop.domain.lifecycle`); handlers only note what happened."""

    @workflow.init
    def __init__(self, input: LeadNurtureInput) -> None:
        self.input = input
        self.memory = Carry.begin(input.carry)
        self.life = Lifecycle()
        self.clock = DemoClock(input.origin or workflow.now(), input.time_scale)
        self.score: Score = self._compute_score()
        self.waiting_for = ""
        self.sales = Sales(self)
        self.next_send_at: datetime | None = None
        self.blocked_reason: str | None = None
        self._view = View()

    @workflow.run
    async def run(self, input: LeadNurtureInput) -> LeadNurtureResult:
        self.publish()
        if input.start_after > timedelta(0):
            await self._cool_down()
        memory, life = self.memory, self.life
        if not memory.resume or memory.last_planned is None:
            memory.last_planned = self.clock.cadence_time(workflow.now())
        while True:
            if life.unsubscribed:
                return await self._leave()
            if life.escalate:
                return await self._with_sales()
            if life.hold_for:
                return await self._hold(life.hold_for, "left_company")
            if memory.paused:
                if await self._hold_paused():  # a long pause with many events: go on in a fresh history
                    return await self._fresh_history()
                continue
            upcoming = next_email(input, memory)
            if upcoming is None:
                return await self._cadence_done()
            finished = await self._drip(upcoming)
            if finished is not None:
                return finished

    async def _cool_down(self) -> None:
        """A recycled lead rests before its new cadence; an unsubscribe or an escalation cuts the rest short."""
        cadence, clock, now = self.input.cadence, self.clock, workflow.now()
        resume = clock.cadence_time(now) + self.input.start_after
        when = describe_local(resume, self.input.timezone)
        self.waiting_for = f"cool-down until {when}, then cadence '{cadence.name}'"
        self.next_send_at = now + clock.real_delay(now, resume)
        self.publish(self.waiting_for)
        await wait_for(
            lambda: self.life.leaving,
            clock.real_delay(workflow.now(), resume),
            f"cool-down {format_wait(self.input.start_after)} → {when}, then '{cadence.name}'",
        )

    async def _drip(self, upcoming: NextEmail) -> LeadNurtureResult | None:
        """Wait for the next email's moment in the send window, send it; None: the loop goes on."""
        memory, life, tz = self.memory, self.life, self.input.timezone
        email, wait, label, big = upcoming.email, upcoming.wait, upcoming.label, upcoming.big_bang
        assert memory.last_planned is not None
        life.replan = False
        earliest = max(memory.last_planned + wait, self.clock.cadence_time(workflow.now()))
        away = memory.back_at is not None and memory.back_at > earliest
        if memory.back_at is not None and away:
            earliest = memory.back_at  # an out-of-office: not before the lead is back
        planned = next_send_time(earliest, self.input.cadence.send_window, tz)
        delay = self.clock.real_delay(workflow.now(), planned)
        self.next_send_at = workflow.now() + delay
        when = describe_local(planned, tz)
        self.waiting_for = f"{label}, next email {when}" + (" (the lead is out of office until then)" if away else "")
        self.publish(self.waiting_for)
        if delay > timedelta(0):
            # a timer that an unsubscribe, an escalation, a pause, inbound mail or a long history cuts short
            if await wait_for(
                lambda: (
                    life.leaving
                    or memory.paused
                    or life.replan
                    or life.hold_for is not None
                    or workflow.info().is_continue_as_new_suggested()
                ),
                delay,
                f"wait {format_wait(wait)} → {when}, {label}",
            ):
                if not (life.leaving or memory.paused or life.replan or life.hold_for):
                    return await self._fresh_history()
                return None
        try:
            result = await DRIP.run(EmailActivities.send_email, email, f"send {label} ({email.template})")
        except ActivityError as err:
            return await self._send_failed(err, email.step_id)
        if result.status == "uncertain":
            memory.uncertain += 1
        else:
            memory.cycle_sends += 1
        memory.last_planned = planned
        if big is not None:
            memory.big_bang_sent = True
            BIG_BANGS.add(workflow.metric_meter(), cadence=self.input.cadence.name)
            return await self._big_bang_window(big, planned)
        memory.streak += 1
        memory.step_index += 1
        return None

    async def _send_failed(self, err: ActivityError, step_id: str) -> LeadNurtureResult | None:
        """A send refused for good: the lead is suppressed, or the drip waits for the sender's fix."""
        cause = err.cause
        event = send_failure(cause.type) if isinstance(cause, ApplicationError) else None
        if event is None:
            raise err
        assert isinstance(cause, ApplicationError)
        if event == "bounced":
            workflow.logger.info("lead %s suppressed: %s", self.input.lead_id, cause.message)
            return await self._finish(event, f"suppressed: {cause.message}")
        await self._blocked(step_id, f"{cause.type}: {cause.message}")
        return None

    async def _cadence_done(self) -> LeadNurtureResult:
        cadence = self.input.cadence
        self.next_send_at = None
        if cadence.next_cadence:
            return await self._new_cycle(
                cadence.next_cadence, timedelta(0), False, f"cadence '{cadence.name}' complete"
            )
        if self.input.recycle is not None:
            return await self._dormant(f"cadence '{cadence.name}' complete without an escalation")
        return await self._finish("cadence_complete", f"cadence '{cadence.name}' complete")

    async def _big_bang_window(self, big: BigBang, sent_at: datetime) -> LeadNurtureResult | None:
        """After the big bang: a human engagement resumes nurture (and may escalate); silence means dormant."""
        life = self.life
        life.enter("big_bang_sent")
        self.next_send_at = None
        until = sent_at + big.response_window
        when = describe_local(until, self.input.timezone)
        self.waiting_for = f"a response to the big bang by {when}"
        self.publish(self.waiting_for)
        engaged = await wait_for(
            lambda: life.leaving or self.memory.streak == 0,
            self.clock.real_delay(workflow.now(), until),
            f"big bang response window → {when}",
        )
        life.enter("big_bang_over")
        if life.unsubscribed:
            return await self._leave()
        if life.escalate:
            return await self._with_sales()
        if engaged:
            return None
        return await self._dormant(f"no response to the big bang by {when}")

    async def _hold_paused(self) -> bool:
        """An operator paused the drip: nothing is sent until `leadloop resume`; an unsubscribe or an
        escalation still ends the hold. True when Temporal suggests a fresh history instead."""
        memory, life = self.memory, self.life
        life.enter("paused")
        self.next_send_at = None
        self.waiting_for = "an operator to resume it (`leadloop resume`)"
        self.publish(f"paused; waiting for {self.waiting_for}")
        await workflow.wait_condition(
            lambda: not memory.paused or life.leaving or workflow.info().is_continue_as_new_suggested()
        )
        life.enter("resumed")
        return memory.paused and not life.leaving

    async def _blocked(self, step_id: str, reason: str) -> None:
        """Wait, visibly, until an operator says the cause of a refused send is fixed."""
        life = self.life
        life.enter("send_refused")
        self.blocked_reason = reason
        self.next_send_at = None
        self.publish(f"sending blocked at step '{step_id}': {reason}; waiting for `leadloop retry`")
        life.retry = False
        await workflow.wait_condition(lambda: life.retry or life.unsubscribed)
        life.enter("send_retried")
        self.blocked_reason = None

    async def _with_sales(self) -> LeadNurtureResult:
        """Hand the lead to a rep (`workflows.sales`), then go where the rep's decision leads."""
        life = self.life
        life.enter(life.handover)
        self.next_send_at = None
        life.escalate = False
        if not life.replied:
            ESCALATIONS.add(workflow.metric_meter(), cadence=self.input.cadence.name)
        verdict = await self.sales.hand_over()
        if verdict is None:
            return await self._leave()
        decision = verdict.decision
        if decision.action == "held":
            return await self._hold(verdict.why)
        if decision.action == "dormant":
            return await self._dormant(verdict.why)
        if decision.action != "recycled":
            return await self._finish(decision.action, verdict.why)
        disposition = decision.disposition
        assert disposition is not None and disposition.cadence is not None
        self.memory.recycles += 1
        RECYCLES.add(workflow.metric_meter(), cadence=disposition.cadence)
        return await self._new_cycle(
            disposition.cadence, disposition.cool_down, disposition.reset_engagement, decision.outcome
        )

    async def _hold(self, reason: str, event: Event = "held") -> LeadNurtureResult:
        """Wait, visibly, for the lead's data to be fixed; then nurture resumes with the same cadence."""
        life = self.life
        life.enter(event)
        life.hold_for = None  # acted on: the next cycle starts without it
        self.next_send_at = None
        self.waiting_for = "the lead's data to be fixed (`leadloop lead update`, PATCH /leads/{id})"
        if event == "left_company":
            self.waiting_for += f": {reason}"
        self.publish(f"held ({reason}): waiting for {self.waiting_for}")
        life.profile_fixed = False
        await workflow.wait_condition(lambda: life.profile_fixed or life.unsubscribed)
        if life.unsubscribed:
            return await self._leave()
        return await self._new_cycle(self.input.cadence.name, timedelta(0), False, "data fixed: nurture resumes")

    async def _dormant(self, why: str) -> LeadNurtureResult:
        """Sleep on a durable timer, then re-engage; retired (archived) after the policy's dormant cycles."""
        policy, memory, life = self.input.recycle, self.memory, self.life
        if policy is None or memory.dormant_cycles >= policy.dormant.max_cycles:
            return await self._finish("archived", f"{why}: retired after {memory.dormant_cycles} dormant cycle(s)")
        dormancy = policy.dormant
        life.enter("dormant")
        self.next_send_at = None
        wake = self.clock.cadence_time(workflow.now()) + dormancy.reengage_after
        when = describe_local(wake, self.input.timezone)
        self.waiting_for = f"re-engagement with '{dormancy.cadence}' on {when}"
        self.publish(f"dormant ({why}); {self.waiting_for}")
        if await wait_for(
            lambda: life.leaving or life.hold_for is not None,
            self.clock.real_delay(workflow.now(), wake),
            f"dormant until {when}",
        ):
            if life.escalate:  # woke up by itself: engaged enough to go to sales (a score, a reply)
                return await self._with_sales()
            if life.hold_for and not life.unsubscribed:  # an auto-reply says the lead has left
                return await self._hold(life.hold_for, "left_company")
            return await self._leave("unsubscribed while dormant")
        memory.dormant_cycles += 1
        return await self._new_cycle(
            dormancy.cadence, timedelta(0), True, f"re-engaged after {format_wait(dormancy.reengage_after)}"
        )

    async def _fresh_history(self) -> LeadNurtureResult:
        """Temporal suggests a new run (the history grew long): continue-as-new in the same cycle and step."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.life.unsubscribed:
            return await self._leave()
        if self._pending_in_this_run():
            return await self._act_on_pending()
        carry = self.memory.same_cycle()
        workflow.continue_as_new(
            self.input.model_copy(update={"carry": carry, "origin": self.clock.origin, "start_after": timedelta(0)})
        )

    async def _new_cycle(
        self, cadence: str, start_after: timedelta, reset_engagement: bool, why: str
    ) -> LeadNurtureResult:
        """Continue-as-new into the next cycle with fresh snapshots of the marketer's files."""
        lead = self.input
        loaded = await DRIP.run(
            LeadActivities.load_cycle,
            LoadCycleInput(lead_id=lead.lead_id, cadence=cadence),
            f"load cadence '{cadence}' for cycle {lead.cycle + 1}",
            retry=DATABASE_RETRY,
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.life.unsubscribed:  # checked in the same task as the continue-as-new: nothing slips between
            return await self._leave()
        if self._pending_in_this_run():  # she replied (or her out-of-office said she left) while it loaded
            return await self._act_on_pending()
        line = f"cycle {lead.cycle} ('{lead.cadence.name}'): {self.memory.cycle_sends} sent, {why}"
        now = workflow.now()
        workflow.continue_as_new(
            LeadNurtureInput(
                lead_id=lead.lead_id,
                cadence=loaded.cadence,
                timezone=loaded.timezone,
                time_scale=lead.time_scale,
                rep_time_scale=lead.rep_time_scale,
                cycle=lead.cycle + 1,
                scoring=loaded.scoring,
                profile=loaded.profile,
                recycle=loaded.recycle or lead.recycle,
                carry=self.memory.next_cycle(line, reset_engagement=reset_engagement, back_at=self._still_away(now)),
                start_after=start_after,
                sales_task_queue=lead.sales_task_queue,
                origin=now,  # the next cycle's cadence clock starts now: the carried return is on it
            )
        )

    def _pending_in_this_run(self) -> bool:
        """A hand-over (a reply, a score) or a left-company hold that handlers noted while the run was about to go on
        in a new one, which would drop it: acted on in this run. Leads that went on regardless before this change
        (no patch marker) still do; the marker is asked for only when there is something to act on."""
        life = self.life
        return bool(life.escalate or life.hold_for) and workflow.patched(PENDING_BEFORE_NEW_RUN_PATCH)

    async def _act_on_pending(self) -> LeadNurtureResult:
        life = self.life
        if life.escalate:
            return await self._with_sales()
        assert life.hold_for is not None
        return await self._hold(life.hold_for, "left_company")

    def _still_away(self, now: datetime) -> datetime | None:
        """An out-of-office's return that lies ahead, moved onto a cadence clock that starts at `now` (the next
        cycle's); None when the lead is back (or never was away)."""
        back = self.memory.back_at
        if back is None or back <= self.clock.cadence_time(now):
            return None
        return now + (back - self.clock.cadence_time(now))

    async def _leave(self, details: str = "unsubscribed") -> LeadNurtureResult:
        """The lead leaves for good: unsubscribed, or suppressed by inbound mail (too many soft bounces put the
        address on the suppression list here; hard bounces and complaints were put there when they were stored)."""
        event, why = self.life.departure()
        if event == "soft_bounced":
            await sales_queue(self.input.sales_task_queue).run(
                LeadActivities.suppress_address,
                SuppressAddressInput(lead_id=self.input.lead_id, reason="soft_bounce", detail=why),
                "suppress the address: too many soft bounces",
            )
        return await self._finish(event, why if self.life.exit else details)

    async def _finish(self, event: Event, details: str) -> LeadNurtureResult:
        stage = self.life.enter(event)
        self.publish(details)
        await workflow.wait_condition(workflow.all_handlers_finished)
        LEADS_FINISHED.add(workflow.metric_meter(), stage=stage)
        return LeadNurtureResult(stage=stage, sends=self.memory.cycle_sends, uncertain_sends=self.memory.uncertain)

    def threshold(self) -> int | None:
        escalation = self.input.cadence.escalation
        return escalation.threshold if escalation else None

    def _compute_score(self, proven: bool = False) -> Score:
        lead = self.input
        if lead.scoring is None:
            return Score()
        return compute_score(
            lead.scoring, lead.profile, self.memory.scored, workflow.now(), time_scale=lead.time_scale, proven=proven
        )

    def _escalation_score(self) -> int:
        """What the threshold is compared with: with `escalate_on: confirmed`, the score without the clicks no
        landing page confirmed (their part-points show in the score, but never hand a lead over)."""
        rules = self.input.scoring
        if rules is None or rules.escalate_on != "confirmed":
            return self.score.total
        return self._compute_score(proven=True).total

    def publish(self, details: str | None = None) -> None:
        """Keep search attributes and the UI's current details in step with the state."""
        self._view.publish(self, details)

    @workflow.signal
    def enroll(self, input: EnrollInput) -> None:
        """Every enrolment signals; a lead already on a cadence keeps it (idempotent intake)."""
        self.memory.enrolments += 1
        if self.memory.enrolments > 1:
            workflow.logger.info(
                "lead %s enrolled again (%s, from %s): keeps cadence '%s'",
                self.input.lead_id,
                input.cadence_name,
                input.source,
                self.input.cadence.name,
            )

    @workflow.signal
    def engagement(self, input: EngagementInput) -> None:
        """Events from the HTTP service, coalesced; each event id is applied once."""
        memory, life = self.memory, self.life
        rescore = proven = False
        for event in input.events:
            fresh = memory.first_seen(event)
            if fresh is None:
                continue
            if fresh.kind == "unsubscribe":
                if not life.unsubscribed:
                    UNSUBSCRIBES_APPLIED.add(workflow.metric_meter(), stage=life.stage)
                life.unsubscribed = True
                continue
            rescore = memory.count(fresh) or rescore
            proven = proven or proves_interest(fresh, self.input.scoring)
        memory.forget_old_ids()
        if rescore:
            self.score = self._compute_score()
            # only evidence a person was there hands the lead over: an unconfirmed click waits for its landing page
            if proven and escalates(life.stage, self._escalation_score(), self.threshold()):
                life.escalate = True
                life.retry = True  # a blocked send gives way to sales
        self.publish()

    @workflow.signal
    def inbound(self, input: InboundInput) -> None:
        """A reply, auto-reply, bounce or complaint read back and matched to this lead; applied once by id.
        Leads that counted such messages before they acted on them (no patch marker) go on only counting."""
        if not self.memory.first_inbound(input):
            return
        self.memory.forget_old_ids()
        if workflow.patched(INBOUND_EFFECTS_PATCH):
            INBOUND_APPLIED.add(workflow.metric_meter(), kind=input.kind)
            self._note_inbound(input)
        self.publish()

    def _note_inbound(self, message: InboundInput) -> None:
        """Note what the message asks of the run loop (`inbound_effects.effect_of` decides); leadloop never
        answers it."""
        memory, life = self.memory, self.life
        effect = effect_of(message, life.stage)
        if effect in ("hand_over", "tell_rep"):
            memory.count_reply(message)
            self.score = self._compute_score()
            self.sales.heard(ReplyShown.of(message))
            if effect == "hand_over":
                life.escalate = life.replied = True
                life.retry = True  # a blocked send gives way to sales
        elif effect == "pause":
            memory.back_at = self._back_from(message)
            life.replan = True
        elif effect == "hold":
            life.hold_for = hold_reason(message)
        elif effect == "suppress":
            life.suppress(*suppression(message))
        elif effect == "unsubscribe":
            if not life.unsubscribed:
                UNSUBSCRIBES_APPLIED.add(workflow.metric_meter(), stage=life.stage)
            life.unsubscribed = True
        elif effect == "soft_bounce":
            memory.count_soft_bounce(message.received_at)
            policy = self.input.recycle.soft_bounces if self.input.recycle else SoftBounces()
            if policy.exceeded(memory.soft_bounces, message.received_at):
                why = f"suppressed: {policy.suppress_after} soft bounces within {format_wait(policy.within)}"
                life.suppress("soft_bounced", why)

    def _back_from(self, message: InboundInput) -> datetime:
        """When an out-of-office lead is back, in cadence time (`inbound_effects.back_at`). Leads paused before
        that (no patch marker) keep the return they computed then: the date against cadence time at the signal."""
        pause, zone = self.input.cadence.auto_reply_pause, self.input.timezone
        if workflow.patched(OUT_OF_OFFICE_CADENCE_TIME_PATCH):
            return back_at(message, self.clock, zone, pause)
        return pause_until(message.return_date, self.clock.cadence_time(workflow.now()), zone, pause)

    @workflow.update
    async def accept(self, input: RepActionInput) -> RepActionResult:
        """The assigned rep takes the lead: converted, nurture stops for good."""
        return await self.sales.act("accept", input)

    @accept.validator
    def _validate_accept(self, input: RepActionInput) -> None:
        self.sales.check("accept", input)

    @workflow.update
    async def reject(self, input: RepActionInput) -> RepActionResult:
        """The assigned rep gives the lead back; the recycle policy decides by the reason."""
        return await self.sales.act("reject", input)

    @reject.validator
    def _validate_reject(self, input: RepActionInput) -> None:
        self.sales.check("reject", input)
        if input.reason not in REASONS:
            raise ValueError(f"unknown reason {input.reason!r}; one of: {', '.join(REASONS)}")

    @workflow.signal
    def pause(self, input: PauseInput) -> None:
        """An operator holds the drip; engagement is still recorded."""
        self.memory.paused = True

    @workflow.signal
    def resume(self, input: PauseInput) -> None:
        """An operator lets the drip go on, from the step it stopped at."""
        self.memory.paused = False

    @workflow.signal
    def profile_updated(self, input: ProfileUpdatedInput) -> None:
        """The lead's data was fixed; a held lead goes back to nurture."""
        self.life.profile_fixed = True

    @workflow.signal
    def reroute(self, input: RerouteInput) -> None:
        """Reps changed: a lead waiting for one tries routing again now."""
        self.life.reroute = True

    @workflow.signal
    def retry_send(self, input: RetrySendInput) -> None:
        """An operator fixed what refused the last send."""
        if self.life.stage == "send_blocked":
            self.life.retry = True

    @workflow.query
    def state(self) -> LeadState:
        return lead_state(self)
