"""What mail read back from a lead does to its workflow, without a server: the effect of each kind in each stage,
the out-of-office pause, soft-bounce counting, and the settings that tune them (bad values refused, named)."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import Cadence, CadenceError, load_cadence
from leadloop.domain.inbound_effects import back_at, effect_of, hold_reason, pause_until, suppression
from leadloop.domain.lifecycle import FINAL_STAGES
from leadloop.domain.models import Carry, InboundInput, Stage
from leadloop.domain.recycle import RecyclePolicy, SoftBounces, load_recycle
from leadloop.domain.rules import RuleFileError
from leadloop.domain.schedule import DemoClock
from leadloop.domain.scoring import DEFAULT_REPLY_POINTS, Engagement, LeadProfile, ScoringConfig, compute_score

NOW = datetime(2027, 3, 26, 8, 0, tzinfo=UTC)  # Friday 10:00 in Athens


def message(kind: str, **fields: object) -> InboundInput:
    return InboundInput(id=f"inbound-{kind}", kind=kind, received_at=NOW, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "stage", "effect"),
    [
        ("human_reply", "nurturing", "hand_over"),
        ("human_reply", "big_bang", "hand_over"),
        ("human_reply", "dormant", "hand_over"),
        ("human_reply", "send_blocked", "hand_over"),
        ("human_reply", "paused", "hand_over"),
        ("human_reply", "with_sales", "tell_rep"),
        ("human_reply", "held", "count"),
        ("auto_reply", "nurturing", "pause"),
        ("auto_reply", "with_sales", "pause"),
        ("hard_bounce", "with_sales", "suppress"),
        ("complaint", "dormant", "suppress"),
        ("unsubscribe_request", "nurturing", "unsubscribe"),
        ("soft_bounce", "nurturing", "soft_bounce"),
        ("policy_block", "nurturing", "count"),
    ],
)
def test_each_kind_has_its_effect_in_each_stage(kind: str, stage: Stage, effect: str) -> None:
    assert effect_of(message(kind), stage) == effect


@pytest.mark.parametrize("stage", FINAL_STAGES)
@pytest.mark.parametrize("kind", ["human_reply", "hard_bounce", "auto_reply"])
def test_a_lead_that_has_ended_ignores_mail(kind: str, stage: Stage) -> None:
    assert effect_of(message(kind), stage) == "ignore"


def test_a_challenge_is_ignored_and_left_the_company_holds_except_with_sales() -> None:
    assert effect_of(message("auto_reply", challenge=True), "nurturing") == "ignore"
    left = message("auto_reply", left_company=True, contact_hint="anna@acme.example")
    assert effect_of(left, "nurturing") == "hold" and effect_of(left, "with_sales") == "count"
    assert hold_reason(left) == "an auto-reply says the lead has left the company; it says to contact anna@acme.example"
    assert "contact" not in hold_reason(message("auto_reply", left_company=True))


def test_suppression_names_the_bounce_code_or_the_complaint() -> None:
    assert suppression(message("hard_bounce", status="5.1.1")) == (
        "hard_bounced",
        "suppressed: hard bounce 5.1.1, the address is dead",
    )
    assert suppression(message("complaint"))[0] == "complained"


def test_out_of_office_pauses_until_the_first_business_day_after_the_return_date_in_the_leads_zone() -> None:
    week = timedelta(days=7)
    # back Monday 29 March: the drip may go on from Tuesday 00:00 in Athens (Monday 21:00 UTC, summer time)
    assert pause_until(date(2027, 3, 29), NOW, "Europe/Athens", week) == datetime(2027, 3, 29, 21, 0, tzinfo=UTC)
    # back Friday 2 April: Monday 5 April 00:00 in New York
    assert pause_until(date(2027, 4, 2), NOW, "America/New_York", week) == datetime(2027, 4, 5, 4, 0, tzinfo=UTC)
    # no date: the cadence's default pause; a far-off date is capped at 90 days
    assert pause_until(None, NOW, "Europe/Athens", week) == NOW + week
    assert pause_until(date(2031, 1, 1), NOW, "Europe/Athens", week) == NOW + timedelta(days=90)
    # a date already past: no pause worth the name (the drip goes on at once)
    assert pause_until(date(2027, 3, 1), NOW, "Europe/Athens", week) < NOW


def test_at_real_speed_an_out_of_office_lead_is_back_on_the_real_date() -> None:
    week = timedelta(days=7)
    real = DemoClock(NOW - timedelta(days=40), 1.0)
    ooo = message("auto_reply", return_date=date(2027, 3, 29))
    assert back_at(ooo, real, "Europe/Athens", week) == datetime(2027, 3, 29, 21, 0, tzinfo=UTC)
    assert back_at(message("auto_reply"), real, "Europe/Athens", week) == NOW + week


def test_at_demo_speed_the_time_away_passes_on_the_cadences_clock_from_when_the_message_came() -> None:
    week = timedelta(days=7)
    # a day a second, the lead enrolled 20 s (20 cadence days) before her out-of-office came
    demo = DemoClock(NOW - timedelta(seconds=20), 86400)
    came = demo.cadence_time(NOW)
    assert came == NOW - timedelta(seconds=20) + timedelta(days=20)
    ooo = message("auto_reply", return_date=date(2027, 3, 29))  # back Monday: Tuesday 00:00 Athens, 3 d 13 h away
    back = back_at(ooo, demo, "Europe/Athens", week)
    assert back == came + timedelta(days=3, hours=13)
    # the real date would already lie 20 cadence days in the past: no pause at all
    assert pause_until(ooo.return_date, came, "Europe/Athens", week) < came
    assert back_at(message("auto_reply"), demo, "Europe/Athens", week) == came + week  # no date: the default
    # received 5 s (5 cadence days) before another: its time away starts 5 cadence days earlier
    earlier = ooo.model_copy(update={"received_at": NOW - timedelta(seconds=5)})
    sooner = came - timedelta(days=5) + timedelta(days=3, hours=13, seconds=5)  # (and 5 real seconds longer away)
    assert back_at(earlier, demo, "Europe/Athens", week) == sooner


def test_a_received_time_without_a_zone_is_read_as_utc() -> None:
    naive = message("auto_reply", return_date=date(2027, 3, 29)).model_copy(
        update={"received_at": NOW.replace(tzinfo=None)}
    )
    clock = DemoClock(NOW, 1.0)
    assert back_at(naive, clock, "Europe/Athens", timedelta(days=7)) == datetime(2027, 3, 29, 21, 0, tzinfo=UTC)


def test_an_out_of_office_return_ahead_is_carried_into_the_next_cycle_and_nothing_else_is() -> None:
    memory = Carry(back_at=NOW, step_index=2)
    assert Carry.begin(memory.next_cycle("cycle 0", reset_engagement=True)).back_at is None  # back: not carried
    ahead = Carry.begin(memory.next_cycle("cycle 0", reset_engagement=True, back_at=NOW + timedelta(days=3)))
    assert ahead.back_at == NOW + timedelta(days=3) and ahead.step_index == 0
    assert Carry.begin(memory.same_cycle()).back_at == NOW  # a fresh history of the same cycle keeps it as it is
    assert Carry.model_validate({"recycles": 1}).back_at is None  # a carry from before the field


def test_soft_bounces_suppress_after_n_within_the_window() -> None:
    policy = SoftBounces(suppress_after=3, within=timedelta(days=30))
    days = [NOW - timedelta(days=d) for d in (40, 20, 1)]
    assert not policy.exceeded(days, NOW)  # the one 40 days ago is outside the window
    assert policy.exceeded([*days, NOW], NOW)
    memory = Carry()
    for i in range(150):
        memory.count_soft_bounce(NOW + timedelta(minutes=i))
    assert len(memory.soft_bounces) == 100  # bounded


def test_a_reply_scores_by_the_files_reply_rule_or_the_default_and_shows_in_the_breakdown() -> None:
    reply = [Engagement(kind="reply", at=NOW)]
    bare = ScoringConfig.model_validate({"version": 1})  # a snapshot older than replies: the default points
    score = compute_score(bare, LeadProfile(), reply, NOW)
    assert score.total == score.engagement == DEFAULT_REPLY_POINTS
    assert [(i.rule, i.points) for i in score.items] == [("reply", DEFAULT_REPLY_POINTS)]
    priced = ScoringConfig.model_validate(
        {"version": 1, "engagement": [{"name": "reply", "kind": "reply", "points": 50}]}
    )
    assert [(i.rule, i.points) for i in compute_score(priced, LeadProfile(), reply, NOW).items] == [("reply reply", 50)]
    memory = Carry(streak=2)
    memory.count_reply(message("human_reply", reply_text="yes, call me"))
    assert memory.streak == 0 and memory.last_engaged_at == NOW and memory.scored[-1].kind == "reply"


def test_the_sample_files_carry_the_new_settings() -> None:
    policy = load_recycle(PROJECT_ROOT / "cadences" / "recycle.yaml")
    assert policy.soft_bounces == SoftBounces(suppress_after=3, within=timedelta(days=30))
    assert load_cadence(PROJECT_ROOT / "cadences" / "welcome.yaml").auto_reply_pause == timedelta(days=7)


RECYCLE_HEAD = (PROJECT_ROOT / "cadences" / "recycle.yaml").read_text().split("soft_bounces:")[0]
REASONS = "reasons:" + (PROJECT_ROOT / "cadences" / "recycle.yaml").read_text().split("reasons:")[1]


@pytest.mark.parametrize(
    ("block", "complaint"),
    [
        ("soft_bounces: {suppress_after: 0, within: 30d}", "soft_bounces.suppress_after"),
        ("soft_bounces: {suppress_after: 3, within: 10m}", "at least 1h"),
        ("soft_bounces: {suppress_after: 3, within: soon}", "is not a duration"),
        ("soft_bounces: {suppress_after: 3, per: 30d}", "soft_bounces.per"),
    ],
)
def test_bad_soft_bounce_settings_are_refused_naming_the_field(tmp_path: Path, block: str, complaint: str) -> None:
    path = tmp_path / "recycle.yaml"
    path.write_text(f"{RECYCLE_HEAD}{block}\n{REASONS}")
    with pytest.raises(RuleFileError) as refused:
        load_recycle(path)
    text = "\n".join(refused.value.lines())
    assert "recycle.yaml" in text and complaint in text, text


def test_a_recycle_snapshot_without_soft_bounce_settings_gets_the_defaults() -> None:
    old = load_recycle(PROJECT_ROOT / "cadences" / "recycle.yaml").model_dump(mode="json", exclude={"soft_bounces"})
    assert RecyclePolicy.model_validate(old).soft_bounces == SoftBounces()


def test_auto_reply_pause_is_validated() -> None:
    base = {"name": "c", "version": 1, "steps": [{"id": "a", "wait": "0", "template": "t", "subject": "s"}]}
    assert Cadence.model_validate(base).auto_reply_pause == timedelta(days=7)
    assert Cadence.model_validate({**base, "auto_reply_pause": "2d"}).auto_reply_pause == timedelta(days=2)
    for bad, why in (("91d", "at most 90d"), ("-1d", "negative"), ("often", "not a duration")):
        with pytest.raises(ValidationError, match=why):
            Cadence.model_validate({**base, "auto_reply_pause": bad})
    assert CadenceError  # the loader wraps these with file and line, as for every cadence field
