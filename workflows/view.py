"""What a lead's workflow shows of itself: search attributes and the UI's details in step, the state query's answer."""

from datetime import datetime
from typing import Any, Protocol

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

from workflows.sales import Sales

with workflow.unsafe.imports_passed_through():
    from leadloop.domain.lifecycle import Lifecycle
    from leadloop.domain.models import Carry, LeadNurtureInput, LeadState
    from leadloop.domain.scoring import Score, category_of
    from leadloop.domain.search import (
        ASSIGNED_REP,
        CADENCE_NAME,
        CADENCE_STEP,
        LAST_ENGAGED_AT,
        LEAD_CATEGORY,
        LEAD_SCORE,
        LEAD_STAGE,
        LEAD_TAGS,
        RECYCLE_COUNT,
        UNOPENED_STREAK,
    )


class Shown(Protocol):
    """What the view reads from the lead's workflow."""

    input: LeadNurtureInput
    life: Lifecycle
    memory: Carry
    score: Score
    sales: Sales
    waiting_for: str
    next_send_at: datetime | None
    blocked_reason: str | None

    def threshold(self) -> int | None: ...


class View:
    """Publishes only on change: each search-attribute upsert is a history event."""

    def __init__(self) -> None:
        self._published: tuple[object, ...] | None = None
        self._details = ""

    def publish(self, lead: Shown, details: str | None = None) -> None:
        """Keep search attributes and the UI's current details in step with the state."""
        memory, stage, total = lead.memory, lead.life.stage, lead.score.total
        steps = lead.input.cadence.steps
        step = steps[min(memory.step_index, len(steps) - 1)].id
        assignment = lead.sales.assignment
        rep = f"rep-{assignment.rep_id}" if assignment and assignment.rep_id else ""
        tags, category = tuple(memory.tags), category_of(lead.input.scoring, lead.score)
        current: tuple[object, ...] = (stage, step, total, rep, memory.last_engaged_at, memory.streak, memory.recycles)
        # leads that never had them publish exactly what they always did; once shown (this run or an earlier one,
        # whose attributes continue-as-new carries over), a later upsert unsets what is gone
        if tags or category or memory.crm_shown:
            current = (*current, tags, category)
        if current != self._published:
            self._published = current
            updates: list[SearchAttributeUpdate[Any]] = [
                LEAD_STAGE.value_set(stage),
                CADENCE_NAME.value_set(lead.input.cadence.name),
                CADENCE_STEP.value_set(step),
                LEAD_SCORE.value_set(total),
                ASSIGNED_REP.value_set(rep) if rep else ASSIGNED_REP.value_unset(),
                UNOPENED_STREAK.value_set(memory.streak),
                RECYCLE_COUNT.value_set(memory.recycles),
            ]
            if memory.last_engaged_at:
                updates.append(LAST_ENGAGED_AT.value_set(memory.last_engaged_at))
            if tags or category or memory.crm_shown:
                memory.crm_shown = True
                updates.append(LEAD_TAGS.value_set(list(tags)) if tags else LEAD_TAGS.value_unset())
                updates.append(LEAD_CATEGORY.value_set(category) if category else LEAD_CATEGORY.value_unset())
            workflow.upsert_search_attributes(updates)
        threshold = lead.threshold()
        score = f"score {total}/{threshold}" if threshold else f"score {total}"
        if details:
            self._details = details
        streak = f"; streak {memory.streak}" if memory.streak else ""
        workflow.set_current_details(f"{stage}: {self._details}; {score}{streak}; {memory.cycle_sends} sent")


def lead_state(lead: Shown) -> LeadState:
    """What the `state` query answers."""
    memory, sales, steps = lead.memory, lead.sales, lead.input.cadence.steps
    assignment = sales.assignment
    return LeadState(
        lead_id=lead.input.lead_id,
        stage=lead.life.stage,
        cadence=lead.input.cadence.name,
        cadence_version=lead.input.cadence.version,
        cycle=lead.input.cycle,
        step_index=memory.step_index,
        steps_total=len(steps),
        current_step=steps[memory.step_index].id if memory.step_index < len(steps) else None,
        next_send_at=lead.next_send_at,
        sends=memory.cycle_sends,
        uncertain_sends=memory.uncertain,
        blocked_reason=lead.blocked_reason,
        enrolments=memory.enrolments,
        score=lead.score,
        threshold=lead.threshold(),
        engagement=memory.counts,
        inbound=memory.inbound,
        back_at=memory.back_at,
        last_engaged_at=memory.last_engaged_at,
        assigned_rep=assignment.rep_name if assignment else None,
        assigned_rep_id=assignment.rep_id if assignment else None,
        team=assignment.team if assignment else None,
        assignment_key=assignment.key if assignment else None,
        response_due=sales.response_due,
        lapsed_rep_ids=list(sales.lapsed),
        waiting_for=lead.waiting_for,
        recycles=memory.recycles,
        dormant_cycles=memory.dormant_cycles,
        unopened_streak=memory.streak,
        big_bang_sent=memory.big_bang_sent,
        last_disposition=sales.last_disposition,
        opportunity_id=sales.opportunity_id,
        history=list(memory.history),
        tags=list(memory.tags),
        category=category_of(lead.input.scoring, lead.score),
        owner=lead.input.profile.owner,
        recontact_on=memory.recontact.day if memory.recontact else None,
        recontact_rep_id=memory.recontact.rep_id if memory.recontact else None,
        moving_to=lead.life.move_to,
    )
