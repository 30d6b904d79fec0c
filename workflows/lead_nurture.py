"""LeadNurtureWorkflow: one durable workflow per lead that drips its cadence inside send windows."""

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.commands import DATABASE_RETRY, DRIP, sales_queue, wait_for
from workflows.sales import Sales
from workflows.view import View, lead_state

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.leads import LeadActivities
    from activities.lifecycle import LifecycleActivities
    from leadloop.domain.cadence import BigBang
    from leadloop.domain.crm import CrmInputError, check_actor, normalise_tags
    from leadloop.domain.inbound_effects import back_at, effect_of, hold_reason, pause_until, suppression
    from leadloop.domain.lifecycle import (
        ESCALATING_STAGES,
        FINAL_STAGES,
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
        ChangeInput,
        ChangeResult,
        EngagementInput,
        EnrollInput,
        GoalInput,
        InboundInput,
        LeadNurtureInput,
        LeadNurtureResult,
        LeadState,
        LifecycleInput,
        LoadCycleInput,
        MoveInput,
        OwnerInput,
        PauseInput,
        ProfileUpdatedInput,
        Recontact,
        RecordGoalInput,
        RepActionInput,
        RepActionResult,
        ReplyShown,
        RerouteInput,
        RetrySendInput,
        Stage,
        StopInput,
        SuppressAddressInput,
        TagsInput,
    )
    from leadloop.domain.recycle import REASONS, SoftBounces
    from leadloop.domain.schedule import DemoClock, describe_local, local_date, next_send_time
    from leadloop.domain.scoring import Score, compute_score

#: workflow.patched id: inbound messages act (hand over, pause, hold, suppress); before it they were only counted
INBOUND_EFFECTS_PATCH = "inbound-effects"
#: workflow.patched id: a reply's hand-over or a left-company hold noted as the run was about to go on in a new one
#: (the next cycle loading, a fresh history) is acted on; before it the new run dropped it
PENDING_BEFORE_NEW_RUN_PATCH = "inbound-pending-before-new-run"
#: workflow.patched id: an out-of-office pauses for its span on the cadence's clock, from when the message came;
#: before it the return date was compared with cadence time as it was (at demo speed long past) at the signal
OUT_OF_OFFICE_CADENCE_TIME_PATCH = "out-of-office-cadence-time"
#: workflow.patched id: the lead announces its lifecycle events (for the CRM's webhooks); before it, none
LIFECYCLE_PATCH = "crm-lifecycle"
#: Stages from which the CRM may move a lead to another cadence (with sales: the rep decides first; held: the
#: data is fixed first).
MOVABLE_STAGES = ("nurturing", "paused", "send_blocked", "big_bang", "dormant")
#: What a lead that leaves for good tells the CRM, by the event it leaves on.
_SUPPRESSED_BY: dict[str, str] = {
    "unsubscribed": "unsubscribe",
    "bounced": "bounce",
    "hard_bounced": "bounce",
    "soft_bounced": "bounce",
    "complained": "complaint",
    "suppressed": "not_interested",
}


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
        self._outbox: list[LifecycleInput] = []  # lifecycle events not yet announced, in order
        self._announcing = False
        self._move_actor = ""
        self._suppressed_reason: str | None = None  # a send refused: the address bounced, or it was on the list
        self._goal: GoalInput | None = None  # the goal this run applied (the same one again is not applied twice)
        self._watched: Recontact | None = None  # the call-back day a timer of this run waits for
        self._tasks: list[asyncio.Task[None]] = []  # the announcer and the keep-in-touch timer, kept referenced

    @workflow.run
    async def run(self, input: LeadNurtureInput) -> LeadNurtureResult:
        self.publish()
        if input.cycle == 0 and input.carry is None:
            self.announce("lead.enrolled")
        self._watch_recontact()
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
            if life.move_to:
                return await self._move()
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
            lambda: self.life.leaving or self.life.move_to is not None,
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
            self._suppressed_reason = "bounce" if cause.type == "HardBounce" else "suppression_list"
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
            lambda: life.leaving or self.memory.streak == 0 or life.move_to is not None,
            self.clock.real_delay(workflow.now(), until),
            f"big bang response window → {when}",
        )
        life.enter("big_bang_over")
        if life.unsubscribed:
            return await self._leave()
        if life.escalate:
            return await self._with_sales()
        if engaged or life.move_to:
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
            lambda: (
                not memory.paused
                or life.leaving
                or life.move_to is not None
                or workflow.info().is_continue_as_new_suggested()
            )
        )
        life.enter("resumed")
        return memory.paused and not life.leaving and life.move_to is None

    async def _blocked(self, step_id: str, reason: str) -> None:
        """Wait, visibly, until an operator says the cause of a refused send is fixed."""
        life = self.life
        life.enter("send_refused")
        self.blocked_reason = reason
        self.next_send_at = None
        self.publish(f"sending blocked at step '{step_id}': {reason}; waiting for `leadloop retry`")
        life.retry = False
        await workflow.wait_condition(lambda: life.retry or life.unsubscribed or life.move_to is not None)
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
        back = workflow.now() + disposition.cool_down / self.input.time_scale
        self.announce("lead.recycled", cadence=disposition.cadence, back_at=back.isoformat(), why=decision.outcome)
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
        self._watch_recontact()  # a not_ready with a call-back day that sent the lead to sleep
        self.next_send_at = None
        wake = self.clock.cadence_time(workflow.now()) + dormancy.reengage_after
        when = describe_local(wake, self.input.timezone)
        real_wake = workflow.now() + self.clock.real_delay(workflow.now(), wake)
        self.announce("lead.dormant", why=why, wakes_at=real_wake.isoformat(), cadence=dormancy.cadence)
        self.waiting_for = f"re-engagement with '{dormancy.cadence}' on {when}"
        self.publish(f"dormant ({why}); {self.waiting_for}")
        if await wait_for(
            lambda: life.leaving or life.hold_for is not None or life.move_to is not None,
            self.clock.real_delay(workflow.now(), wake),
            f"dormant until {when}",
        ):
            if life.move_to and not life.leaving:
                return await self._move()
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
        await self._settled()
        if self.life.unsubscribed:
            return await self._leave()
        if self._pending_in_this_run():
            return await self._act_on_pending()
        if self.life.move_to:  # a move asked for as the run was about to go on: it goes on with that cadence
            return await self._move()
        carry = self.memory.same_cycle()
        workflow.continue_as_new(
            self.input.model_copy(update={"carry": carry, "origin": self.clock.origin, "start_after": timedelta(0)})
        )

    async def _new_cycle(
        self, cadence: str, start_after: timedelta, reset_engagement: bool, why: str, *, keep_paused: bool = False
    ) -> LeadNurtureResult:
        """Continue-as-new into the next cycle with fresh snapshots of the marketer's files (`keep_paused`: a
        paused lead moved to another cadence stays paused)."""
        lead = self.input
        loaded = await DRIP.run(
            LeadActivities.load_cycle,
            LoadCycleInput(lead_id=lead.lead_id, cadence=cadence),
            f"load cadence '{cadence}' for cycle {lead.cycle + 1}",
            retry=DATABASE_RETRY,
        )
        await self._settled()
        if self.life.unsubscribed:  # checked in the same task as the continue-as-new: nothing slips between
            return await self._leave()
        if self._pending_in_this_run():  # she replied (or her out-of-office said she left) while it loaded
            return await self._act_on_pending()
        if self.life.move_to and self.life.move_to != cadence:  # a move asked for while the next cycle loaded
            return await self._move()
        self.life.move_to = None
        line = f"cycle {lead.cycle} ('{lead.cadence.name}'): {self.memory.cycle_sends} sent, {why}"
        now = workflow.now()
        carry = self.memory.next_cycle(line, reset_engagement=reset_engagement, back_at=self._still_away(now))
        carry.paused = keep_paused and self.memory.paused
        if carry.recontact is not None:  # the call-back day, on the next run's cadence clock as a return is
            carry.recontact = carry.recontact.model_copy(update={"at": self._rebased(carry.recontact.at, now)})
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
                carry=carry,
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
        return self._rebased(back, now)

    def _rebased(self, moment: datetime, now: datetime) -> datetime:
        """A moment of this run's cadence clock on the clock of a run that starts at `now` (the same at real speed)."""
        return now + (moment - self.clock.cadence_time(now))

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
        if stage == "archived":
            self.announce("lead.stopped" if event == "stopped" else "lead.archived", why=details)
        elif stage == "suppressed":
            reason = self._suppressed_reason or _SUPPRESSED_BY.get(event, event)
            self.announce("lead.suppressed", reason=reason, why=details)
        await self._settled()
        if self.life.move_to and not self.life.unsubscribed:  # moved as its cadence came to an end: it goes on
            return await self._move()
        LEADS_FINISHED.add(workflow.metric_meter(), stage=stage)
        return LeadNurtureResult(stage=stage, sends=self.memory.cycle_sends, uncertain_sends=self.memory.uncertain)

    async def _move(self) -> LeadNurtureResult:
        """The CRM moved the lead: the cadence it asked for starts now, at this step boundary, from its first step."""
        cadence, actor = self.life.move_to, self._move_actor
        assert cadence is not None
        self.life.move_to = None
        why = f"moved to '{cadence}'" + (f" by {actor}" if actor else "")
        return await self._new_cycle(cadence, timedelta(0), False, why, keep_paused=True)

    def announce(
        self,
        type: str,
        *,
        actor: str = "",
        rep_id: int | None = None,
        stage: Stage | None = None,
        **data: str | int | None,
    ) -> None:
        """Note a lifecycle event for the CRM's webhooks; `_send_announcements` records them in order (`stage`: the
        stage the event takes the lead to, when the run loop has yet to enter it). Leads started before the webhooks
        (no patch marker) announce nothing."""
        if not workflow.patched(LIFECYCLE_PATCH):
            return
        memory, lead = self.memory, self.input
        memory.announced += 1
        assignment = self.sales.assignment
        self._outbox.append(
            LifecycleInput(
                key=f"lead-{lead.lead_id}.{workflow.info().first_execution_run_id}.c{lead.cycle}.{memory.announced}",
                lead_id=lead.lead_id,
                type=type,
                cycle=lead.cycle,
                stage=stage or self.life.stage,
                score=self.score,
                cadence=lead.cadence.name,
                rep_id=rep_id if rep_id is not None else (assignment.rep_id if assignment else None),
                actor=actor,
                data={key: value for key, value in data.items() if value is not None},
                occurred_at=workflow.now(),
            )
        )
        if not self._announcing:
            self._announcing = True
            self._tasks.append(asyncio.create_task(self._send_announcements()))

    async def _send_announcements(self) -> None:
        """One at a time, in the order they happened: a receiver sees a lead's events in order."""
        try:
            while self._outbox:
                event = self._outbox[0]
                # on the lead's own task queue at the drip's priority: nothing waits for it but the end of the run
                try:
                    await DRIP.run(LifecycleActivities.announce, event, f"announce {event.type}", retry=DATABASE_RETRY)
                except ActivityError as err:  # refused for good (it retries until the database answers): told, not
                    # kept, so the run can still end or go on in a new one
                    workflow.logger.warning("lead %s: %s not announced: %s", self.input.lead_id, event.type, err.cause)
                self._outbox.pop(0)
        finally:
            self._announcing = False

    async def _settled(self) -> None:
        """Before the run ends or goes on in a new one: every handler has finished and every lifecycle event noted
        (by the run or by a handler) is recorded."""
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._outbox)

    def _watch_recontact(self) -> None:
        """A call-back day a rep asked for: a timer of this run waits for it (once per day asked)."""
        recontact = self.memory.recontact
        if recontact is not None and recontact is not self._watched:
            self._watched = recontact
            self._tasks.append(asyncio.create_task(self._keep_in_touch(recontact)))

    async def _keep_in_touch(self, recontact: Recontact) -> None:
        """A rep asked to call the lead back on a day: on it, the lead goes straight back to that rep (once it is
        in a stage sales takes leads from); a later decision that replaced the day ends this wait's say."""
        delay = self.clock.real_delay(workflow.now(), recontact.at)
        if delay > timedelta(0):
            await wait_for(lambda: False, delay, f"keep in touch: back to rep-{recontact.rep_id} on {recontact.day}")
        await workflow.wait_condition(
            lambda: (
                self.memory.recontact is not recontact
                or (self.life.stage in ESCALATING_STAGES and not self.life.leaving)
            )
        )
        if self.memory.recontact is recontact:
            self.life.recontact_due = True
            self.life.escalate = True
            self.life.retry = True  # a blocked send gives way to sales

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
            counted = memory.count(fresh)
            rescore = counted or rescore
            proven = proven or proves_interest(fresh, self.input.scoring)
            if counted and fresh.human and memory.engaged_cycle != self.input.cycle:
                if workflow.patched(LIFECYCLE_PATCH):
                    memory.engaged_cycle = self.input.cycle
                    self.score = self._compute_score()
                    self.announce("lead.engaged", kind=fresh.kind)
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
            self.announce("lead.replied", handed_over=int(effect == "hand_over"))
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
        if input.recontact_on is not None:
            if input.reason != "not_ready":
                raise ValueError("a re-contact date goes with the reason not_ready (the lead is not ready yet)")
            today = local_date(self.clock.cadence_time(workflow.now()), self.input.timezone)
            if input.recontact_on <= today:
                raise ValueError(
                    f"the re-contact date {input.recontact_on} is not in the future (today is {today} for the lead)"
                )

    @workflow.update
    async def goal(self, input: GoalInput) -> ChangeResult:
        """The CRM says the lead reached a goal (converted, meeting booked, opportunity created): nurture ends the
        way an accept ends it, and the goal is recorded for the report."""
        before = self.life.stage
        source = input.source + (f" {input.reference}" if input.reference else "")
        why = f"goal '{input.kind}' reached ({source}" + (f"; by {input.actor})" if input.actor else ")")
        if self._same_goal(input):  # the CRM sent it again (a retry): applied once
            return ChangeResult(stage="converted", outcome=why, applied=False)
        self._not_while_deciding()
        self._goal = input
        self.life.end("goal_reached", why)
        recorded = await sales_queue(self.input.sales_task_queue).run(
            LifecycleActivities.record_goal,
            RecordGoalInput(
                lead_id=self.input.lead_id,
                kind=input.kind,
                source=input.source,
                reference=input.reference,
                actor=input.actor,
                note=input.reason,
                stage_before=before,
            ),
            f"record goal '{input.kind}' from {input.source}",
        )
        if not recorded:  # recorded before (the same reference in an earlier run): not told to the CRM again
            return ChangeResult(stage="converted", outcome=why, applied=False)
        self.announce(
            "lead.goal",
            actor=input.actor,
            stage="converted",
            kind=input.kind,
            source=input.source,
            reference=input.reference,
        )
        return ChangeResult(stage="converted", outcome=why)

    @goal.validator
    def _validate_goal(self, input: GoalInput) -> None:
        if self._same_goal(input):
            return  # answered as already applied
        self._check_change(input, "record a goal for")

    def _same_goal(self, input: GoalInput) -> bool:
        goal = self._goal
        return (
            goal is not None
            and input.reference is not None
            and (goal.kind, goal.reference)
            == (
                input.kind,
                input.reference,
            )
        )

    @workflow.update
    def stop(self, input: StopInput) -> ChangeResult:
        """Stop the lead's nurture for good, with a reason; it ends archived (and may be re-enrolled later)."""
        why = f"stopped by {input.actor or 'an operator'}: {input.reason}"
        self._not_while_deciding()
        self.life.end("stopped", why)
        return ChangeResult(stage="archived", outcome=why)

    @stop.validator
    def _validate_stop(self, input: StopInput) -> None:
        self._check_change(input, "stop")
        if not input.reason.strip():
            raise ValueError("give a reason to stop the lead's nurture")

    @workflow.update
    def change_owner(self, input: OwnerInput) -> ChangeResult:
        """The lead's owner rep (relationship selling): its next hand-over goes to them."""
        lead = self.input
        owner = (input.owner or "").strip().lower() or None
        if (lead.profile.owner or None) == owner:
            return ChangeResult(stage=self.life.stage, outcome=f"the owner is {owner or 'none'} already", applied=False)
        self.input = lead.model_copy(update={"profile": lead.profile.model_copy(update={"owner": owner})})
        self.announce("lead.owner_changed", actor=input.actor, owner=owner)
        return ChangeResult(
            stage=self.life.stage,
            outcome=f"owner {owner or 'none'}: the next hand-over goes to " + ("them" if owner else "routing"),
        )

    @change_owner.validator
    def _validate_owner(self, input: OwnerInput) -> None:
        self._check_change(input, "change the owner of")

    @workflow.update
    def move(self, input: MoveInput) -> ChangeResult:
        """Go on with another cadence, from its first step, at the next step boundary (a send under way finishes)."""
        life = self.life
        if life.move_to == input.cadence:
            return ChangeResult(stage=life.stage, outcome=f"moving to '{input.cadence}' already", applied=False)
        life.move_to, self._move_actor = input.cadence, input.actor
        life.replan = True  # the drip's timer is cut: the move happens now, between steps
        self.announce("lead.moved", actor=input.actor, cadence=input.cadence, moved_from=self.input.cadence.name)
        return ChangeResult(stage=life.stage, outcome=f"moves to '{input.cadence}' at its next step boundary")

    @move.validator
    def _validate_move(self, input: MoveInput) -> None:
        self._check_change(input, "move")
        stage = self.life.stage
        if stage not in MOVABLE_STAGES:
            raise ValueError(
                f"lead {self.input.lead_id} is {stage.replace('_', ' ')}: only a lead in "
                f"{', '.join(s.replace('_', ' ') for s in MOVABLE_STAGES)} can move to another cadence"
            )
        if input.cadence == self.input.cadence.name and self.life.move_to is None:
            raise ValueError(f"lead {self.input.lead_id} is on cadence '{input.cadence}' already")

    def _not_while_deciding(self) -> None:
        """A rep's accept or reject validated in the same moment came first: it stands, this change does not."""
        if self.sales.deciding:
            raise ApplicationError(
                f"a rep's decision on lead {self.input.lead_id} is being applied; ask again to see where it stands",
                type="DecisionUnderWay",
            )

    def _check_change(self, input: ChangeInput, what: str) -> None:
        """A change from outside: refused once the lead is leaving nurture; the actor must be a name."""
        if input.actor:
            try:
                check_actor(input.actor)
            except CrmInputError as err:
                raise ValueError(str(err)) from None
        lead, life = self.input.lead_id, self.life
        if life.stage in FINAL_STAGES or life.unsubscribed:
            why = life.exit[1] if life.exit else life.stage.replace("_", " ")
            raise ValueError(f"lead {lead} is leaving nurture ({why}): nothing to {what}")

    @workflow.signal
    def tags(self, input: TagsInput) -> None:
        """The lead's tags as the database now holds them (shown as LeadTags); the same set twice changes nothing."""
        try:
            self.memory.tags = normalise_tags(input.tags)
        except CrmInputError as err:
            workflow.logger.warning("lead %s: tags refused: %s", self.input.lead_id, err)
            return
        self.publish()

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
