"""The lead's lifecycle without a Temporal server: which events each stage allows, and what a rep's decision does."""

from datetime import UTC, datetime, timedelta

import pytest

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import Cadence
from leadloop.domain.lifecycle import (
    ESCALATING_STAGES,
    FINAL_STAGES,
    TRANSITIONS,
    Decision,
    IllegalTransition,
    Lifecycle,
    accepted,
    escalates,
    format_wait,
    next_email,
    next_stage,
    proves_interest,
    rejected,
    send_failure,
)
from leadloop.domain.models import STAGES, Carry, EngagementCounts, EngagementEvent, LeadNurtureInput, Stage
from leadloop.domain.recycle import Dormancy, RecyclePolicy, load_recycle
from leadloop.domain.scoring import LeadProfile, ScoringConfig, compute_score, load_scoring

POLICY = load_recycle(PROJECT_ROOT / "cadences" / "recycle.yaml")
NOW = datetime(2027, 3, 26, 8, 0, tzinfo=UTC)  # Friday 10:00 in Athens
ACTIVE: list[Stage] = [s for s in STAGES if s not in FINAL_STAGES]


def reject(
    reason: str, *, recycles: int = 0, dormant_cycles: int = 0, policy: RecyclePolicy | None = POLICY
) -> Decision:
    return rejected(
        policy,
        reason,
        recycles=recycles,
        dormant_cycles=dormant_cycles,
        now=NOW,
        timezone="Europe/Athens",
        rep=7,
    )


def test_every_stage_is_either_final_or_has_its_moves() -> None:
    assert set(TRANSITIONS) | set(FINAL_STAGES) == set(STAGES)
    assert not set(TRANSITIONS) & set(FINAL_STAGES)
    for stage in FINAL_STAGES:
        with pytest.raises(IllegalTransition):
            next_stage(stage, "unsubscribed")


@pytest.mark.parametrize("stage", ACTIVE)
def test_an_unsubscribe_suppresses_the_lead_from_any_stage_it_can_be_in(stage: Stage) -> None:
    assert next_stage(stage, "unsubscribed") == "suppressed"


def test_the_drip_moves() -> None:
    assert next_stage("nurturing", "threshold_reached") == "with_sales"
    assert next_stage("nurturing", "big_bang_sent") == "big_bang"
    assert next_stage("big_bang", "big_bang_over") == "nurturing"
    assert next_stage("nurturing", "dormant") == "dormant"
    assert next_stage("nurturing", "cadence_complete") == "cadence_complete"
    assert next_stage("nurturing", "bounced") == "suppressed"
    assert next_stage("nurturing", "archived") == "archived"
    assert next_stage("dormant", "threshold_reached") == "with_sales"
    assert next_stage("dormant", "reengaged") == "nurturing"


def test_paused_and_resumed() -> None:
    assert next_stage("nurturing", "paused") == "paused"
    assert next_stage("paused", "resumed") == "nurturing"
    with pytest.raises(IllegalTransition, match="paused cannot be send refused"):
        next_stage("paused", "send_refused")
    with pytest.raises(IllegalTransition):
        next_stage("with_sales", "paused")  # a lead with sales is not on the drip


def test_a_refused_send_blocks_until_retried() -> None:
    assert next_stage("nurturing", "send_refused") == "send_blocked"
    assert next_stage("send_blocked", "send_retried") == "nurturing"
    with pytest.raises(IllegalTransition):
        next_stage("nurturing", "send_retried")
    assert send_failure("SendRefused") == send_failure("TemplateError") == send_failure("LeadMissing") == "send_refused"
    assert send_failure("HardBounce") == send_failure("Suppressed") == "bounced"
    assert send_failure("SomethingElse") is None and send_failure(None) is None


def test_a_reps_decisions_lead_out_of_with_sales_only() -> None:
    moves = {e: next_stage("with_sales", e) for e in ("converted", "recycled", "dormant", "archived", "held")}
    assert moves == {
        "converted": "converted",
        "recycled": "nurturing",
        "dormant": "dormant",
        "archived": "archived",
        "held": "held",
    }
    assert next_stage("with_sales", "re-routed") == "with_sales"
    assert next_stage("with_sales", "suppressed") == "suppressed"
    assert next_stage("held", "data_fixed") == "nurturing"
    for stage in ("nurturing", "held", "dormant", "paused"):
        with pytest.raises(IllegalTransition):
            next_stage(stage, "converted")


def test_the_threshold_escalates_only_from_the_drip_stages() -> None:
    assert set(ESCALATING_STAGES) == {"nurturing", "send_blocked", "big_bang", "dormant"}
    assert escalates("nurturing", 30, 30)
    assert not escalates("nurturing", 29, 30)
    assert not escalates("nurturing", 100, None)  # a cadence without escalation never does
    for stage in ("paused", "with_sales", "held", "converted", "suppressed"):
        assert not escalates(stage, 100, 30)


def test_the_lifecycle_enters_stages_and_refuses_what_its_stage_does_not_allow() -> None:
    life = Lifecycle()
    assert life.enter("paused") == "paused" and life.stage == "paused"
    assert not life.leaving
    life.escalate = True
    assert life.leaving
    with pytest.raises(IllegalTransition):
        life.enter("threshold_reached")  # paused: the hold ends first, then the lead goes to sales
    assert life.stage == "paused"
    assert life.enter("resumed") == "nurturing"
    assert life.enter("threshold_reached") == "with_sales"


def test_accept_converts() -> None:
    decision = accepted("OPP-1")
    assert (decision.action, decision.stage, decision.outcome) == (
        "converted",
        "converted",
        "converted, opportunity OPP-1",
    )
    assert decision.result.model_dump() == {"action": "converted", "cadence": None, "stage": "converted"}
    assert accepted(None).outcome == "converted"


def test_not_ready_recycles_to_the_policys_cadence_after_its_cool_down() -> None:
    decision = reject("not_ready")
    assert decision.action == "recycled" and decision.stage == "nurturing"
    assert decision.back_after == timedelta(days=30)
    assert decision.outcome == (
        "back to nurture with 'nurture-later' after a 30d cool-down, on Sun 25 Apr 11:00 Europe/Athens"
    )
    assert decision.result.model_dump() == {"action": "recycled", "cadence": "nurture-later", "stage": "nurturing"}
    assert next_stage("with_sales", decision.action) == "nurturing"


def test_recycled_often_enough_the_lead_goes_dormant_and_then_retires() -> None:
    dormant = reject("not_ready", recycles=POLICY.max_recycles)
    assert dormant.action == "dormant" and dormant.stage == "dormant"
    assert dormant.back_after == timedelta(days=180)
    assert dormant.outcome.startswith("dormant; back with 'reengage' on ")
    assert dormant.result.cadence is None
    retired = reject("not_ready", recycles=POLICY.max_recycles, dormant_cycles=POLICY.dormant.max_cycles)
    assert (retired.action, retired.stage, retired.back_after) == ("archived", "archived", None)
    assert retired.outcome == "archived: retired after its dormant cycles"
    assert retired.disposition is not None and retired.disposition.action == "archive"


@pytest.mark.parametrize(
    ("reason", "action", "stage", "outcome"),
    [
        ("bad_fit", "archived", "archived", "archived (bad_fit)"),
        ("not_interested", "suppressed", "suppressed", "suppressed: never emailed again"),
        (
            "invalid_data",
            "held",
            "held",
            "held until the lead's data is fixed (`leadloop lead update` or PATCH /leads/{id})",
        ),
        ("wrong_route", "re-routed", "with_sales", "re-routed to another rep; rep-7 excluded"),
        ("unreachable", "dormant", "dormant", "dormant; back with 'reengage' on Wed 22 Sep 11:00 Europe/Athens"),
    ],
)
def test_each_reason_leads_where_the_policy_says(reason: str, action: str, stage: str, outcome: str) -> None:
    decision = reject(reason)
    assert (decision.action, decision.stage, decision.outcome) == (action, stage, outcome)
    assert decision.result.model_dump() == {"action": action, "cadence": None, "stage": stage}
    assert next_stage("with_sales", decision.action) == stage


def test_without_a_policy_a_reject_archives() -> None:
    decision = reject("not_ready", policy=None)
    assert (decision.action, decision.stage, decision.outcome) == ("archived", "archived", "archived (not_ready)")


def test_a_policy_without_dormant_cycles_archives_at_once() -> None:
    policy = POLICY.model_copy(update={"dormant": Dormancy(cadence="reengage", max_cycles=0)})
    assert reject("unreachable", policy=policy).action == "archived"


def test_format_wait_reads_as_a_marketer_wrote_it() -> None:
    assert format_wait(timedelta(days=3)) == "3d"
    assert format_wait(timedelta(days=1, hours=12)) == "1d12h"
    assert format_wait(timedelta(minutes=90)) == "1h30m"
    assert format_wait(timedelta(0)) == "0"


def event(id: str, kind: str = "click", human: bool = True, also: tuple[str, ...] = ()) -> EngagementEvent:
    return EngagementEvent(id=id, kind=kind, human=human, at=NOW, url="https://s.example/p", also=list(also))


def test_the_memory_applies_each_event_once_and_counts_only_what_is_new() -> None:
    memory = Carry(streak=2)
    assert memory.first_seen(event("a")) is not None
    assert memory.first_seen(event("a")) is None
    partly = memory.first_seen(event("b", also=("a", "c")))
    assert partly is not None and partly.count == 2  # "a" was applied before
    assert memory.count(event("m", kind="open", human=False)) is False
    assert memory.count(event("d")) is True
    assert memory.counts == EngagementCounts(human_clicks=1, machine_opens=1)
    assert memory.streak == 0 and memory.last_engaged_at == NOW and len(memory.scored) == 1


def test_an_unconfirmed_click_scores_in_part_until_its_landing_page_confirms_it() -> None:
    rules = load_scoring(PROJECT_ROOT / "cadences" / "scoring.yaml")  # says nothing: 0.3, confirmed, 0.9
    memory = Carry(streak=2)
    click = event("c1").model_copy(update={"confidence": 0.75, "confirmed": False, "url": "https://s.example/demo"})
    assert memory.count(click) is True and not proves_interest(click, rules)
    assert memory.counts == EngagementCounts(human_clicks=1, unconfirmed_clicks=1)
    assert memory.streak == 0  # a click from a browser still says the email was seen

    def engagement() -> int:
        return compute_score(rules, LeadProfile(), memory.scored, NOW).engagement

    assert engagement() == 8  # demo-click's 25 points at 0.3
    confirmation = EngagementEvent(
        id="confirmed-c1",
        kind="click",
        human=True,
        at=NOW,
        url=click.url,
        confidence=1.0,
        confirmed=True,
        confirms="c1",
        was_human=True,
    )
    assert memory.count(confirmation) is True and proves_interest(confirmation, rules)
    assert engagement() == 25
    assert memory.counts == EngagementCounts(human_clicks=1, confirmed_clicks=1)
    # a click judged machine (a cloud desktop's address) that its landing page confirms becomes a person's click
    memory.count(event("m1", human=False).model_copy(update={"confidence": 0.95, "machine_class": "cloud"}))
    overturned = confirmation.model_copy(update={"id": "confirmed-m1", "confirms": "m1", "was_human": False})
    assert memory.count(overturned) is True
    assert memory.counts == EngagementCounts(human_clicks=2, confirmed_clicks=2)
    assert [(s.id, s.confirmed) for s in memory.scored] == [("c1", True), ("m1", True)]
    # the open a confirmed click proves stands for the machine-looking open (an MPP prefetch) the email had
    memory.count(event("p", kind="open", human=False).model_copy(update={"machine_class": "mpp"}))
    proven_open = event("opened-x", kind="open").model_copy(update={"confidence": 1.0, "confirms": "c1"})
    assert memory.count(proven_open) is True
    assert (memory.counts.human_opens, memory.counts.machine_opens) == (1, 0)


def test_only_evidence_a_person_was_there_may_hand_the_lead_to_sales() -> None:
    rules = load_scoring(PROJECT_ROOT / "cadences" / "scoring.yaml")
    click = event("c").model_copy(update={"confidence": 0.75, "confirmed": False})
    sure_open = event("o", kind="open").model_copy(update={"confidence": 0.92})
    unsure_open = event("o", kind="open").model_copy(update={"confidence": 0.6})
    machine = event("m", human=False).model_copy(update={"confidence": 0.99, "machine_class": "gateway"})
    assert [proves_interest(e, rules) for e in (click, sure_open, unsure_open, machine)] == [False, True, False, False]
    # a very sure click needs no landing page; the marketer may lower the bar or let any human hit escalate
    assert proves_interest(click.model_copy(update={"confidence": 0.95}), rules)
    assert proves_interest(click, rules.model_copy(update={"escalation_confidence": 0.7}))
    assert proves_interest(click, rules.model_copy(update={"escalate_on": "any"}))
    # events stored before verdicts had a confidence, and snapshots older than the rule, escalate as before
    assert proves_interest(event("old"), rules)
    old = ScoringConfig.model_validate({"version": 1, "engagement": [{"name": "c", "kind": "click", "points": 5}]})
    assert old.escalate_on is None and proves_interest(click, old) and proves_interest(click, None)


def test_the_next_cycle_keeps_the_leads_memory_and_drops_the_cycles_counters() -> None:
    memory = Carry.begin(None)
    memory.first_seen(event("a"))
    memory.count(event("a"))
    memory.recycles, memory.step_index, memory.cycle_sends, memory.paused, memory.streak = 1, 2, 2, True, 1
    memory.last_planned = NOW
    same = Carry.begin(memory.same_cycle())
    assert (same.step_index, same.cycle_sends, same.paused, same.last_planned, same.recycles) == (2, 2, True, NOW, 1)
    assert same.first_seen(event("a")) is None  # what was applied stays applied in a fresh history
    following = memory.next_cycle("cycle 0: done", reset_engagement=True)
    assert following.history == ["cycle 0: done"] and following.scored == [] and following.recycles == 1
    begun = Carry.begin(following)
    assert (begun.step_index, begun.cycle_sends, begun.paused, begun.streak, begun.last_planned) == (
        0,
        0,
        False,
        0,
        None,
    )
    assert begun.first_seen(event("a")) is None
    kept = memory.next_cycle("cycle 0: done", reset_engagement=False)
    assert len(kept.scored) == 1


CADENCE = Cadence.model_validate(
    {
        "name": "drip",
        "version": 1,
        "steps": [
            {"id": "one", "wait": "0", "template": "welcome", "subject": "One"},
            {"id": "two", "wait": "2d", "template": "tips", "subject": "Two"},
        ],
        "big_bang": {"after_unopened": 2, "wait": "3d", "template": "big-bang", "subject": "Last one"},
    }
)


def test_the_drip_sends_its_steps_then_the_big_bang_once_then_is_complete() -> None:
    lead = LeadNurtureInput(lead_id=3, cadence=CADENCE, cycle=1)
    memory = Carry(step_index=1, streak=1)
    upcoming = next_email(lead, memory)
    assert upcoming is not None and upcoming.big_bang is None
    assert (upcoming.email.step_id, upcoming.email.step_number, upcoming.email.steps_total) == ("two", 2, 2)
    assert (upcoming.wait, upcoming.label, upcoming.email.cycle) == (timedelta(days=2), "step 2 of 2 'two'", 1)
    memory.step_index, memory.streak = 2, 2  # both unopened
    bang = next_email(lead, memory)
    assert bang is not None and bang.big_bang is not None
    assert (bang.email.step_id, bang.email.template, bang.wait) == ("big-bang", "big-bang", timedelta(days=3))
    assert bang.label == "the big bang (2 unopened)" and bang.email.step_number == 2
    memory.big_bang_sent = True
    assert next_email(lead, memory) is None
    memory.streak = 0  # opened: no big bang either
    memory.big_bang_sent = False
    assert next_email(lead, memory) is None


# ---------------------------------------------------------------- inbound mail (issue 18)


@pytest.mark.parametrize("event", ["hard_bounced", "complained", "soft_bounced"])
@pytest.mark.parametrize("stage", ACTIVE)
def test_a_bounce_or_complaint_suppresses_the_lead_from_any_stage_it_can_be_in(event: str, stage: Stage) -> None:
    assert next_stage(stage, event) == "suppressed"  # type: ignore[arg-type]


def test_a_reply_hands_over_from_wherever_the_score_could_and_never_from_a_final_stage() -> None:
    assert {s for s, moves in TRANSITIONS.items() if "replied" in moves} == set(ESCALATING_STAGES)
    assert all(TRANSITIONS[s]["replied"] == "with_sales" for s in ESCALATING_STAGES)
    for stage in (*FINAL_STAGES, "with_sales", "held"):
        with pytest.raises(IllegalTransition, match="cannot be replied"):
            next_stage(stage, "replied")


def test_left_the_company_holds_the_lead_but_not_one_with_sales() -> None:
    for stage in ("nurturing", "big_bang", "paused", "send_blocked", "dormant"):
        assert next_stage(stage, "left_company") == "held"  # type: ignore[arg-type]
    with pytest.raises(IllegalTransition, match="with sales cannot be left company"):
        next_stage("with_sales", "left_company")


def test_inbound_suppression_ends_waits_as_an_unsubscribe_does_and_keeps_its_reason() -> None:
    life = Lifecycle()
    assert life.departure() == ("unsubscribed", "unsubscribed") and not life.leaving
    life.suppress("hard_bounced", "suppressed: hard bounce 5.1.1")
    assert life.leaving and life.unsubscribed
    life.suppress("complained", "later news")  # the first reason stands
    assert life.departure() == ("hard_bounced", "suppressed: hard bounce 5.1.1")
    assert life.enter(life.departure()[0]) == "suppressed"
    unsubscribed = Lifecycle(unsubscribed=True)
    unsubscribed.suppress("complained", "spam")  # an unsubscribe came first: it stays the reason
    assert unsubscribed.departure() == ("unsubscribed", "unsubscribed")


def test_the_hand_over_names_a_reply_or_the_score() -> None:
    life = Lifecycle()
    assert life.handover == "threshold_reached"
    life.replied = True
    assert life.handover == "replied" and life.enter("replied") == "with_sales"
