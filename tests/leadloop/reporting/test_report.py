"""The report's numbers on a seeded dataset, checked against figures worked out by hand; the HTML."""

import asyncio
import re
import struct
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from leadloop import PROJECT_ROOT
from leadloop.domain.mail import email_hash
from leadloop.domain.outcomes import outcome_from_text
from leadloop.domain.search import CADENCE_NAME, LEAD_STAGE
from leadloop.infra.db import Assignment, DispositionRow, EngagementEvent, Lead, Outbox, Rep, Suppression, Team
from leadloop.reporting.gather import cadence_steps_from, gather_report
from leadloop.reporting.html import render_html
from leadloop.reporting.models import ReportData, ReportError
from leadloop.reporting.planner import with_plan

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SINCE = date(2026, 11, 1)
Maker = async_sessionmaker[AsyncSession]


def at(day: int, hour: int = 10, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


BACK = "back to nurture with 'nurture-later' after a 90d cool-down, on Thu 04 Feb 2027 09:00 Europe/Athens"


async def seed(sessionmaker: Maker) -> None:
    """Eleven leads: L1 from October, L2..L11 new in November (L10, L11 on the influencer cadence).

    L1  old; its tips email clicked by a human on 3 Nov (and prefetched by a machine); rejected as bad_fit.
    L2  welcome opened twice and clicked by a human; escalated to Νίκος, accepted after 2 h: converted.
    L3  welcome opened; lapsed with Νίκος (6 h), rejected by Marta after 1 h (no_budget): recycled.
    L4  welcome opened by a machine only (privacy prefetch): not engaged.
    L5  welcome opened by a human, its link clicked by a scanner; rejected by Marta after 3 h (not_ready):
        recycled; in cycle 1 its nurture-later check-in was opened, Νίκος accepted it after 4 h: converted.
    L6  welcome clicked by a human (images blocked: no open); Sam rejected it after 1 h (unreachable): dormant.
    L7  welcome unanswered, its big bang opened by a human: engaged, not dormant.
    L8  welcome, tips, case study (uncertain) and big bang, never opened: dormant.
    L9  unsubscribed through welcome: suppressed.
    L10 influencer intro opened; waited for a rep for 2 h, then with Sam, still open.
    L11 influencer intro bounced: suppressed.
    """
    async with sessionmaker() as session:
        session.add_all(
            [
                Team(name="south-east", strategy="round_robin", sla_seconds=4 * 3600, hours={}),
                Team(name="emea", strategy="round_robin", sla_seconds=8 * 3600, hours={}),
            ]
        )
        await session.flush()
        session.add_all(
            [
                Rep(
                    id=1,
                    email="nikos@s.example",
                    name="Νίκος Αλεξίου",
                    team="south-east",
                    timezone="Europe/Athens",
                    capacity=25,
                ),
                Rep(
                    id=2,
                    email="marta@s.example",
                    name="Marta López",
                    team="south-east",
                    timezone="Europe/Madrid",
                    capacity=25,
                ),
                Rep(id=3, email="sam@s.example", name="Sam Taylor", team="emea", timezone="Europe/London", capacity=40),
            ]
        )
        created = {
            1: at(20, month=10),
            2: at(2, 9),
            3: at(2, 9),
            4: at(3, 9),
            5: at(3, 9),
            6: at(4, 9),
            7: at(3, 9),
            8: at(2, 9),
            9: at(5, 9),
            10: at(9, 9),
            11: at(10, 9),
        }
        for lead_id, when in created.items():
            cadence = "influencer" if lead_id in (10, 11) else "welcome"
            session.add(
                Lead(id=lead_id, email=f"l{lead_id}@leads.example", cadence=cadence, attributes={}, created_at=when)
            )
        await session.flush()

        def email(
            lead: int, step: str, when: datetime, status: str = "sent", cadence: str = "welcome", cycle: int = 0
        ) -> str:
            key = f"lead-{lead}.c{cycle}.{step}"
            session.add(
                Outbox(
                    key=key,
                    lead_id=lead,
                    cycle=cycle,
                    step_id=step,
                    cadence=cadence,
                    status=status,
                    message_id=f"<{key}@x>",
                    created_at=when,
                    sent_at=when if status == "sent" else None,
                )
            )
            return key

        keys = {
            "1w": email(1, "welcome", at(20, month=10)),  # before the period
            "1t": email(1, "tips", at(3, 9)),
            **{f"{n}w": email(n, "welcome", created[n]) for n in (2, 3, 4, 5, 6, 7, 8, 9)},
            "7b": email(7, "big-bang", at(9)),
            "8t": email(8, "tips", at(4)),
            "8c": email(8, "case-study", at(6), status="uncertain"),
            "8b": email(8, "big-bang", at(8)),
            "10i": email(10, "intro", at(9, 9), cadence="influencer"),
            "11i": email(11, "intro", at(10, 9), status="bounced", cadence="influencer"),
            "5n": email(5, "checkin", at(14), cadence="nurture-later", cycle=1),
        }
        email(2, "notify-a1", at(5), cadence="_sales")  # a rep notification: never a cadence step
        await session.flush()

        def event(lead: int, kind: str, human: bool, key: str | None, when: datetime) -> None:
            session.add(
                EngagementEvent(
                    id=uuid.uuid4().hex,
                    lead_id=lead,
                    kind=kind,
                    human=human,
                    reason="test",
                    outbox_key=keys[key] if key else None,
                    occurred_at=when,
                    status="signalled",
                )
            )

        event(1, "open", False, "1t", at(3, 9, 1))
        event(1, "click", True, "1t", at(3, 10))
        event(2, "open", True, "2w", at(2, 10))
        event(2, "click", True, "2w", at(2, 10, 1))
        event(2, "open", True, "2w", at(3, 8))
        event(3, "open", True, "3w", at(2, 11))
        event(3, "visit", True, None, at(2, 11, 5))
        event(4, "open", False, "4w", at(3, 9, 1))
        event(5, "open", True, "5w", at(3, 12))
        event(5, "click", False, "5w", at(3, 9, 1))
        event(6, "click", True, "6w", at(4, 12))
        event(7, "open", True, "7b", at(10))
        event(9, "unsubscribe", True, "9w", at(5, 12))
        event(10, "open", True, "10i", at(9, 10))
        event(5, "open", True, "5n", at(14, 12))

        def handover(
            lead: int,
            n: int,
            rep: int | None,
            team: str,
            status: str,
            start: datetime,
            end: datetime | None,
            cycle: int = 0,
        ) -> str:
            key = f"lead-{lead}.c{cycle}.a{n}"
            session.add(
                Assignment(
                    key=key,
                    lead_id=lead,
                    cycle=cycle,
                    rep_id=rep,
                    team=team,
                    rule="test",
                    status=status,
                    assigned_at=start,
                    closed_at=end,
                )
            )
            return key

        def decision(
            key: str,
            lead: int,
            rep: int,
            action: str,
            when: datetime,
            reason: str | None = None,
            outcome: str = "",
            cycle: int = 0,
        ) -> None:
            result = outcome_from_text(action, outcome)  # what the workflow's words say it did, as data
            session.add(
                DispositionRow(
                    key=key,
                    lead_id=lead,
                    cycle=cycle,
                    rep_id=rep,
                    action=action,
                    reason=reason,
                    outcome=outcome,
                    outcome_action=result.action,
                    outcome_cadence=result.cadence,
                    outcome_stage=result.stage,
                    source="api",
                    created_at=when,
                )
            )

        k = handover(1, 1, 1, "south-east", "rejected", at(4, 9), at(4, 10, 30))
        decision(k, 1, 1, "reject", at(4, 10, 30), "bad_fit", "archived (bad_fit)")
        k = handover(2, 1, 1, "south-east", "accepted", at(5, 10), at(5, 12))
        decision(k, 2, 1, "accept", at(5, 12), outcome="converted")
        handover(3, 1, 1, "south-east", "lapsed", at(6, 9), at(6, 15))
        k = handover(3, 2, 2, "south-east", "rejected", at(6, 15), at(6, 16))
        decision(k, 3, 2, "reject", at(6, 16), "no_budget", BACK)
        k = handover(5, 1, 2, "south-east", "rejected", at(7, 10), at(7, 13))
        decision(k, 5, 2, "reject", at(7, 13), "not_ready", BACK.replace("90d", "30d"))
        k = handover(5, 1, 1, "south-east", "accepted", at(15, 10), at(15, 14), cycle=1)
        decision(k, 5, 1, "accept", at(15, 14), outcome="converted, opportunity OPP-7", cycle=1)
        k = handover(6, 1, 3, "emea", "rejected", at(8, 10), at(8, 11))
        decision(k, 6, 3, "reject", at(8, 11), "unreachable", "dormant; back with 'reengage' on Wed 06 May 2027")
        handover(10, 1, None, "emea", "closed", at(9, 8), at(9, 10))  # waited for a rep
        handover(10, 2, 3, "emea", "assigned", at(9, 10), None)

        session.add_all(
            [
                Suppression(email_hash=email_hash("l9@leads.example"), reason="unsubscribe", created_at=at(5, 12)),
                Suppression(email_hash=email_hash("l11@leads.example"), reason="hard_bounce", created_at=at(10, 9)),
                Suppression(email_hash="0" * 64, reason="erased", created_at=at(12)),  # a person forgotten on request
                Suppression(email_hash="f" * 64, reason="unsubscribe", created_at=at(1, month=10)),  # before the period
            ]
        )
        await session.commit()


async def test_the_report_numbers_match_the_hand_computed_ones(sessionmaker: Maker) -> None:
    await seed(sessionmaker)
    data = await gather_report(sessionmaker, None, SINCE, None, now=NOW)

    assert data.since == datetime(2026, 11, 1, tzinfo=UTC) and data.generated_at == NOW
    assert data.live_stages is None and data.live_note and "Temporal was not reachable" in data.live_note

    # the cohort: L2..L11 were created in November (10); L1 (October) is not in it
    funnel = {s.stage: (s.leads, s.rate, s.of_top) for s in data.funnel}
    assert funnel["enrolled"] == (10, None, 1.0)
    # engaged: L2 (open, click), L3 (open), L5 (open), L6 (click), L7 (open of the big bang), L10 (open) = 6;
    # L4 (machine open), L8 (nothing), L9 (unsubscribe only), L11 (bounced) are not: 6/10
    assert funnel["engaged"] == (6, 0.6, 0.6)
    # escalated: L2, L3, L5, L6, L10 = 5 -> 5/6 of engaged, 5/10 of enrolled
    assert funnel["escalated"] == (5, pytest.approx(5 / 6), 0.5)
    # converted: L2, L5 = 2 -> 2/5 = 0.4 of escalated, 2/10 = 0.2 of enrolled
    assert funnel["converted"] == (2, 0.4, 0.2)
    # rejected L3, L5, L6; recycled L3, L5; dormant L6 (rep) + L8 (big bang unanswered; L7 answered);
    # suppressed L9 (unsubscribe) + L11 (bounce)
    assert data.outcomes == {"rejected": 3, "recycled": 2, "dormant": 2, "suppressed": 2}
    # every lead, by what happened in November: emailed = L1 (tips) + L2..L10 (L11 only bounced) = 10;
    # engaged = the cohort's 6 + L1's click = 7; escalated = L1, L2, L3, L5, L6, L10 = 6; rejected + L1 = 4
    assert data.activity == {
        "enrolled": 10,
        "emailed": 10,
        "engaged": 7,
        "escalated": 6,
        "converted": 2,
        "rejected": 4,
        "recycled": 2,
        "dormant": 2,
        "suppressed": 2,
    }

    steps = {(s.cadence, s.step): s for s in data.steps}
    # the busiest cadence first (welcome: 13 emails; influencer: 2, nurture-later: 1), each step in the order of its
    # first email; L1's October welcome and the rep notification are not there
    assert list(steps) == [
        ("welcome", "welcome"),
        ("welcome", "tips"),
        ("welcome", "case-study"),
        ("welcome", "big-bang"),
        ("influencer", "intro"),
        ("nurture-later", "checkin"),
    ]
    welcome = steps["welcome", "welcome"]
    # sends: L2..L9 = 8; a human open or click: L2, L3, L5, L6 = 4 -> 4/8; human clicks: L2, L6 = 2 -> 2/8
    assert (welcome.sends, welcome.human_opened, welcome.open_rate) == (8, 4, 0.5)
    assert (welcome.human_clicked, welcome.click_rate) == (2, 0.25)
    # opens: L2 x2, L3, L5 human, L4 machine = 5 events, 1 machine -> 1/5; clicks: L2, L6 human, L5 machine -> 1/3
    assert (welcome.open_events, welcome.machine_opens, welcome.machine_open_share) == (5, 1, 0.2)
    assert (welcome.click_events, welcome.machine_clicks) == (3, 1)
    assert welcome.machine_click_share == pytest.approx(1 / 3)
    # L9 unsubscribed through it: 1/8; nothing bounced
    assert (welcome.unsubscribes, welcome.unsubscribe_rate, welcome.bounces, welcome.bounce_rate) == (1, 0.125, 0, 0)
    tips = steps["welcome", "tips"]
    # L1 (3 Nov) and L8: 2 sends; L1 clicked (1/2); L1's one open was a machine's (1/1), its click a human's (0/1)
    assert (tips.sends, tips.open_rate, tips.click_rate, tips.machine_open_share, tips.machine_click_share) == (
        2,
        0.5,
        0.5,
        1.0,
        0.0,
    )
    case_study = steps["welcome", "case-study"]
    assert (case_study.sends, case_study.open_rate, case_study.machine_open_share) == (1, 0.0, None)  # uncertain
    big_bang = steps["welcome", "big-bang"]
    assert (big_bang.sends, big_bang.open_rate, big_bang.click_rate) == (2, 0.5, 0.0)  # L7 opened, L8 did not
    intro = steps["influencer", "intro"]
    # L10 sent and opened; L11 bounced: not a send, 1 bounce of 1 + 1 attempts
    assert (intro.sends, intro.open_rate, intro.bounces, intro.bounce_rate) == (1, 1.0, 1, 0.5)

    sales = data.sales
    reps = {r.rep: r for r in sales.reps}
    assert [r.rep for r in sales.reps] == ["Νίκος Αλεξίου", "Marta López", "Sam Taylor"]  # by hand-overs
    nikos = reps["Νίκος Αλεξίου"]
    # L1 rejected (1.5 h), L2 accepted (2 h), L3 lapsed, L5 cycle 1 accepted (4 h): median 2, mean 7.5/3 = 2.5
    assert (nikos.handovers, nikos.accepted, nikos.rejected, nikos.lapsed, nikos.open) == (4, 2, 1, 1, 0)
    assert (nikos.median_hours_to_decide, nikos.mean_hours_to_decide) == (2.0, 2.5)
    assert (nikos.team, nikos.sla_hours) == ("south-east", 4.0)
    marta = reps["Marta López"]
    # L3 rejected after 1 h, L5 after 3 h: median and mean 2
    assert (marta.handovers, marta.rejected, marta.median_hours_to_decide, marta.mean_hours_to_decide) == (
        2,
        2,
        2.0,
        2.0,
    )
    sam = reps["Sam Taylor"]
    assert (sam.handovers, sam.rejected, sam.open, sam.median_hours_to_decide, sam.sla_hours) == (2, 1, 1, 1.0, 8.0)
    # 4 + 2 + 2 = 8 hand-overs; L10's wait for a rep apart; 2 accepted, 4 rejected, 1 lapsed -> 1/7
    assert (sales.handovers, sales.waited, sales.accepted, sales.rejected, sales.lapsed) == (8, 1, 2, 4, 1)
    assert sales.lapse_rate == pytest.approx(1 / 7)
    # to accept: 2 h, 4 h -> median 3; to reject: 1.5, 1, 3, 1 -> sorted 1, 1, 1.5, 3 -> median 1.25
    assert (sales.median_hours_to_accept, sales.median_hours_to_reject) == (3.0, 1.25)
    assert [(r.reason, r.rejections, r.outcomes) for r in sales.reasons] == [
        ("bad_fit", 1, {"archived": 1}),
        ("no_budget", 1, {"recycled": 1}),
        ("not_ready", 1, {"recycled": 1}),
        ("unreachable", 1, {"dormant": 1}),
    ]
    assert sales.reasons[1].label == "No budget"
    # recycled in November: L3, L5; L5 was accepted afterwards: 1 of 2
    assert (sales.recycled, sales.recycled_converted, sales.recycled_converted_rate) == (2, 1, 0.5)
    # in November: L9's unsubscribe, L11's bounce, one erasure; the October unsubscribe is outside
    assert data.suppressions == {"erased": 1, "hard_bounce": 1, "unsubscribe": 1}


async def test_without_a_period_and_for_one_cadence(sessionmaker: Maker) -> None:
    await seed(sessionmaker)
    everything = await gather_report(sessionmaker, None, None, None, now=NOW)
    # all 11 leads: L1 adds itself to enrolled, and to engaged (its click) and escalated (its rejection)
    assert [(s.stage, s.leads) for s in everything.funnel] == [
        ("enrolled", 11),
        ("engaged", 7),
        ("escalated", 6),
        ("converted", 2),
    ]
    assert everything.outcomes["rejected"] == 4
    welcome_all = next(s for s in everything.steps if (s.cadence, s.step) == ("welcome", "welcome"))
    assert welcome_all.sends == 9  # L1's October welcome too
    assert everything.suppressions == {"unsubscribe": 2, "erased": 1, "hard_bounce": 1}

    welcome = await gather_report(sessionmaker, None, SINCE, "welcome", now=NOW)
    # scope: L1..L9 (enrolled into welcome); cohort L2..L9 = 8; engaged L2, L3, L5, L6, L7 = 5;
    # escalated L2, L3, L5, L6 = 4; converted L2, L5 = 2
    assert [(s.stage, s.leads) for s in welcome.funnel] == [
        ("enrolled", 8),
        ("engaged", 5),
        ("escalated", 4),
        ("converted", 2),
    ]
    assert [s.step for s in welcome.steps] == ["welcome", "tips", "case-study", "big-bang"]
    assert {s.cadence for s in welcome.steps} == {"welcome"}
    assert welcome.outcomes == {"rejected": 3, "recycled": 2, "dormant": 2, "suppressed": 1}  # L11 is influencer's
    assert welcome.suppressions == {"unsubscribe": 1}
    # Sam's hand-over of L10 belongs to the influencer cadence: only L6's is left
    assert {r.rep: r.handovers for r in welcome.sales.reps} == {"Νίκος Αλεξίου": 4, "Marta López": 2, "Sam Taylor": 1}
    assert welcome.sales.waited == 0

    # the cadence files give the step order; the big bang goes last
    ordered = await gather_report(
        sessionmaker, None, SINCE, "welcome", now=NOW, cadence_steps=cadence_steps_from(PROJECT_ROOT / "cadences")
    )
    assert [s.step for s in ordered.steps] == ["welcome", "tips", "case-study", "big-bang"]
    # nurture-later is known from the database (L5's check-in) though no lead was enrolled into it
    later = await gather_report(sessionmaker, None, SINCE, "nurture-later", now=NOW)
    assert [(s.cadence, s.step, s.sends) for s in later.steps] == [("nurture-later", "checkin", 1)]


async def test_unknown_cadence_and_a_future_period_are_refused(sessionmaker: Maker) -> None:
    await seed(sessionmaker)
    with pytest.raises(
        ReportError,
        match=r"unknown cadence 'nope'; known cadences: influencer, nurture-later, "
        r"welcome",
    ):
        await gather_report(sessionmaker, None, SINCE, "nope", now=NOW)
    with pytest.raises(ReportError, match="after the report's time"):
        await gather_report(sessionmaker, None, date(2026, 12, 1), None, now=NOW)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def cell(page: str, attr: str, key: str) -> list[str]:
    """The cells of the table row `<tr attr="key">`, as text."""
    row = re.search(rf'<tr {attr}="{re.escape(key)}">(.*?)</tr>', page)
    assert row, f"no row {attr}={key}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


async def test_the_html_is_self_contained_and_shows_the_numbers(sessionmaker: Maker, tmp_path: Path) -> None:
    await seed(sessionmaker)
    data = with_plan(await gather_report(sessionmaker, None, SINCE, None, now=NOW), target_conversions=4)
    png_dir = tmp_path / "report_files"
    (png_dir).mkdir()
    (png_dir / "stages_now.png").write_bytes(b"stale")  # from an earlier report that reached Temporal
    page = render_html(data, png_dir)

    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)  # only inline images and in-page anchors
    assert "default-src 'none'" in page
    assert "Temporal was not reachable" in page and 'id="note-live"' in page
    assert cell(page, "data-stage", "engaged") == ["engaged", "6", "60.0%", "60.0%"]
    assert cell(page, "data-stage", "escalated") == ["escalated", "5", "83.3%", "50.0%"]
    assert cell(page, "data-stage", "converted") == ["converted", "2", "40.0%", "20.0%"]
    assert cell(page, "data-outcome", "dormant") == ["dormant", "2", "20.0%"]
    assert cell(page, "data-activity", "engaged") == ["engaged", "7"]
    assert cell(page, "data-step", "welcome/welcome") == [
        "welcome",
        "welcome",
        "8",
        "50.0% (4)",
        "25.0% (2)",
        "20.0% (1 of 5)",
        "33.3% (1 of 3)",
        "1 (12.5%)",
        "0 (0.0%)",
    ]
    assert cell(page, "data-step", "influencer/intro")[-1] == "1 (50.0%)"
    assert cell(page, "data-rep", "1") == [
        "Νίκος Αλεξίου",
        "south-east",
        "4.0 h",
        "4",
        "2",
        "1",
        "1",
        "0",
        "0",
        "2.0 h",
        "2.5 h",
    ]
    assert cell(page, "data-sales", "lapse_rate") == ["lapse rate", "14.3%"]
    assert cell(page, "data-sales", "recycled_converted") == ["… of them converted later", "1 of 2 (50.0%)"]
    assert cell(page, "data-reason", "no_budget") == ["No budget", "1", "0", "0", "1"]  # archived, dormant, recycled
    assert cell(page, "data-plan", "enrolled") == ["enrolled", "–", "20", "10", "10"]
    assert cell(page, "data-plan", "escalated") == ["escalated", "83.3%", "10", "5", "5"]
    assert "engaged = leads" not in page  # the definitions are written out, not left as shorthand
    assert "cohort leads with at least one human open or human click" in page

    charts = {p.name: p.read_bytes() for p in png_dir.iterdir()}
    # the stale one is gone
    assert set(charts) == {"funnel.png", "steps.png", "inbound.png", "reps.png", "reasons.png", "planner.png"}
    for name, png in charts.items():
        width, height = png_size(png)
        assert width >= 400 and height >= 200 and len(png) > 10_000, name
        assert png in _inline_images(page)
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # no pyplot figure left open


def _inline_images(page: str) -> list[bytes]:
    import base64

    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


async def test_a_report_of_an_empty_database_renders(sessionmaker: Maker, tmp_path: Path) -> None:
    data = with_plan(await gather_report(sessionmaker, None, None, None, now=NOW))
    assert [s.leads for s in data.funnel] == [0, 0, 0, 0] and data.steps == [] and data.sales.reps == []
    assert data.plan is None and data.plan_note and "no plan" in data.plan_note
    page = render_html(data, tmp_path / "files")
    assert "No cadence emails in the period." in page and 'id="note-plan"' in page
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [
        "funnel.png",
        "inbound.png",
        "reasons.png",
        "reps.png",
        "steps.png",
    ]


@pytest.mark.e2e
async def test_leads_by_stage_now_come_from_visibility(
    dev_env: WorkflowEnvironment, sessionmaker: Maker, tmp_path: Path
) -> None:
    """Runs nobody works on, started with leadloop's search attributes: the counts `leadloop list` would see."""
    client: Client = dev_env.client
    cadence = f"r{uuid.uuid4().hex[:10]}"  # this test's leads only
    queue = f"report-{uuid.uuid4()}"
    started = []
    for n, stage in enumerate(("nurturing", "nurturing", "with_sales", "dormant")):
        started.append(
            await client.start_workflow(
                "LeadNurtureWorkflow",
                id=f"report-{cadence}-{n}",
                task_queue=queue,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(LEAD_STAGE, stage), SearchAttributePair(CADENCE_NAME, cadence)]
                ),
            )
        )
    await seed(sessionmaker)
    async with sessionmaker() as session:
        session.add(Lead(id=99, email="l99@leads.example", cadence=cadence, attributes={}, created_at=at(2)))
        await session.commit()
    try:
        expected = {"nurturing": 2, "with_sales": 1, "dormant": 1}
        for _ in range(100):  # visibility follows within moments
            data = await gather_report(sessionmaker, client, SINCE, cadence, now=NOW)
            if data.live_stages and {k: v for k, v in data.live_stages.items() if v} == expected:
                break
            await asyncio.sleep(0.1)
        assert data.live_note is None and data.live_stages is not None
        assert {k: v for k, v in data.live_stages.items() if v} == expected
        assert sum(data.live_stages.values()) == 4
        page = render_html(data, tmp_path / "files")
        assert cell(page, "data-live", "nurturing") == ["nurturing", "2"]
        assert cell(page, "data-live", "total") == ["total", "4"]
        assert (tmp_path / "files" / "stages_now.png").exists()
    finally:
        for handle in started:
            await handle.terminate("test over")


async def test_report_data_is_plain_numbers(sessionmaker: Maker) -> None:
    await seed(sessionmaker)
    data = with_plan(await gather_report(sessionmaker, None, SINCE, None, now=NOW), growth_pct=50)
    assert ReportData.model_validate_json(data.model_dump_json()) == data
    assert data.plan is not None and [s.needed for s in data.plan.stages] == [17, 10, 8, 3]  # as worked out above


async def test_what_a_rejection_led_to_is_counted_from_the_recorded_outcome_not_its_words(sessionmaker: Maker) -> None:
    await seed(sessionmaker)
    async with sessionmaker() as session:
        # L3's words say "back to nurture", its outcome says archived; L6's words say nothing known, its outcome dormant
        await session.execute(
            update(DispositionRow).where(DispositionRow.key == "lead-3.c0.a2").values(outcome_action="archived")
        )
        await session.execute(
            update(DispositionRow).where(DispositionRow.key == "lead-6.c0.a1").values(outcome="the rep shrugged")
        )
        await session.commit()
    data = await gather_report(sessionmaker, None, SINCE, None, now=NOW)
    # recycled: L5 only (was L3 and L5); dormant: L6 (by its outcome) and L8 (its big bang), as before
    assert data.outcomes == {"rejected": 3, "recycled": 1, "dormant": 2, "suppressed": 2}
    assert data.activity["recycled"] == 1 and data.activity["dormant"] == 2
    reasons = {r.reason: r.outcomes for r in data.sales.reasons}
    assert reasons["no_budget"] == {"archived": 1} and reasons["unreachable"] == {"dormant": 1}
    # L5, recycled and accepted afterwards: 1 of 1
    assert (data.sales.recycled, data.sales.recycled_converted) == (1, 1)
