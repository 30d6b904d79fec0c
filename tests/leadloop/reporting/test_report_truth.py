"""How much of a step's raw click rate was real: people, clicks the landing page confirmed, machines by class."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.infra.db import EngagementEvent, Lead, Outbox
from leadloop.reporting.gather import gather_report
from leadloop.reporting.html import render_html
from leadloop.reporting.planner import with_plan
from tests.leadloop.reporting.test_report import NOW, SINCE, cell

Maker = async_sessionmaker[AsyncSession]
SENT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
CADENCE = "b2b"


async def seed_truth(sessionmaker: Maker, first_lead: int = 1) -> None:
    """Cadence b2b, leads enrolled in October (outside November's cohort), the intros sent on 10 Nov, the follow-ups
    on 13 Nov.

    intro, 10 sends (E1..E10):
      E1  a security gateway opened it and followed its link 20 s after delivery: nothing else.
      E2  Apple's MPP prefetch, then the reader opened it and clicked; the landing page confirmed the click (its
          time written on the click, a confirmation row, and the open the click proves).
      E3  a cloud scanner clicked, then the reader did: unconfirmed.
      E4  the classifier called the click a scanner's; the landing page confirmed it (a confirmation row keeping the
          overturned class, and the open it proves; nothing written on the click): no open event of a person.
      E5  Gmail's image prefetch only.
      E6  a machine open and a machine click stored before verdicts named a class.
      E7  a human click stored before clicks were confirmed.
      E8  opened by the reader, nothing clicked.
      E9  a click from a gateway's range that the landing page confirmed (its time written on the click only).
      E10 nothing.
    follow-up, 2 sends: F1 clicked by a security gateway only; F2 nothing.
    """
    async with sessionmaker() as session:
        keys: dict[str, str] = {}
        names = [f"E{n}" for n in range(1, 11)] + ["F1", "F2"]
        for offset, name in enumerate(names):
            lead = first_lead + offset
            step = "intro" if name.startswith("E") else "follow-up"
            session.add(
                Lead(
                    id=lead,
                    email=f"truth{lead}@corp.example",
                    cadence=CADENCE,
                    attributes={},
                    created_at=datetime(2026, 10, 20, tzinfo=UTC),
                )
            )
            keys[name] = f"lead-{lead}.c0.{step}"
        await session.flush()
        for key in keys.values():
            lead = int(key.split(".")[0].removeprefix("lead-"))
            step = key.rsplit(".", 1)[1]
            sent = SENT if step == "intro" else SENT + timedelta(days=3)
            session.add(
                Outbox(
                    key=key,
                    lead_id=lead,
                    cycle=0,
                    step_id=step,
                    cadence=CADENCE,
                    status="sent",
                    message_id=f"<{key}@x>",
                    created_at=sent,
                    sent_at=sent,
                )
            )
        await session.flush()
        count = 0

        def event(
            name: str,
            kind: str,
            human: bool,
            machine_class: str | None = None,
            *,
            confirms: str | None = None,
            confirmed: bool = False,
            legacy: bool = False,
        ) -> str:
            nonlocal count
            count += 1
            event_id = f"truth-{first_lead}-{count}"
            key = keys[name]
            session.add(
                EngagementEvent(
                    id=event_id,
                    lead_id=int(key.split(".")[0].removeprefix("lead-")),
                    kind=kind,
                    human=human,
                    reason="test",
                    outbox_key=key,
                    occurred_at=SENT + timedelta(minutes=count),
                    status="signalled",
                    confidence=None if legacy else 0.9,
                    machine_class=machine_class,
                    confirmed_at=SENT + timedelta(minutes=count, seconds=5) if confirmed else None,
                    confirms=confirms,
                )
            )
            return event_id

        event("E1", "open", False, "gateway")
        event("E1", "click", False, "gateway")
        event("E2", "open", False, "mpp")
        event("E2", "open", True)
        click = event("E2", "click", True, confirmed=True)
        event("E2", "click", True, confirms=click)
        event("E2", "open", True, confirms=click)
        event("E3", "click", False, "cloud")
        event("E3", "click", True)
        overturned = event("E4", "click", False, "scanner")
        event("E4", "click", True, "scanner", confirms=overturned)
        event("E4", "open", True, confirms=overturned)
        event("E5", "open", False, "prefetch")
        event("E6", "open", False, legacy=True)
        event("E6", "click", False, legacy=True)
        event("E7", "click", True, legacy=True)
        event("E8", "open", True)
        event("E9", "click", False, "gateway", confirmed=True)
        event("F1", "click", False, "gateway")
        await session.commit()


async def test_each_step_shows_raw_human_and_confirmed_clicks_and_machines_by_class(sessionmaker: Maker) -> None:
    await seed_truth(sessionmaker)
    data = await gather_report(sessionmaker, None, SINCE, None, now=NOW)
    steps = {s.step: s for s in data.steps}
    intro = steps["intro"]

    # clicked by anything: E1, E2, E3, E4, E6, E7, E9 = 7 of 10; by a person: E2, E3, E4, E7, E9 = 5 (E4's scanner
    # and E9's gateway verdicts overturned by the landing page); confirmed: E2, E4, E9 = 3
    assert (intro.sends, intro.clicked, intro.human_clicked, intro.confirmed_clicked) == (10, 7, 5, 3)
    assert (intro.raw_click_rate, intro.click_rate, intro.confirmed_click_rate) == (0.7, 0.5, 0.3)
    # 8 click events, the two confirmation rows are no clicks of their own: E2, E4, E9 confirmed; E3's and E7's
    # (stored before confirmations) unconfirmed; E1 gateway, E3 cloud, E6 unclassified
    assert (intro.click_events, intro.confirmed_clicks, intro.unconfirmed_clicks, intro.machine_clicks) == (8, 3, 2, 3)
    assert intro.machine_clicks_by_class == {"gateway": 1, "cloud": 1, "unclassified": 1}
    assert intro.machine_click_share == 3 / 8

    # opened by anything: all but E10 = 9; by a person: E2, E3 (its click), E4 (its confirmed click and the open it
    # proves), E7, E8, E9 = 6. Open events: E1 gateway, E2 MPP and the reader, E5 prefetch, E6 unclassified, E8 the
    # reader = 6; the opens the confirmed clicks prove are no extra events
    assert (intro.opened, intro.raw_open_rate, intro.human_opened, intro.open_rate) == (9, 0.9, 6, 0.6)
    assert (intro.open_events, intro.human_opens, intro.machine_opens) == (6, 2, 4)
    assert intro.machine_opens_by_class == {"gateway": 1, "mpp": 1, "prefetch": 1, "unclassified": 1}

    follow_up = steps["follow-up"]
    # a raw click rate of 50% that no person made
    assert (follow_up.raw_click_rate, follow_up.click_rate, follow_up.confirmed_click_rate) == (0.5, 0.0, 0.0)
    assert (follow_up.click_events, follow_up.machine_clicks_by_class, follow_up.machine_opens_by_class) == (
        1,
        {"gateway": 1},
        {},
    )
    assert follow_up.opened == 1 and follow_up.human_opened == 0

    # the cadence's totals of what came back count the same sends
    assert data.inbound.total.sends == 12

    # the leads a person engaged with in the period: E2, E3, E4, E7, E8 and E9 (its click confirmed by the landing
    # page though its verdict said gateway)
    b2b = await gather_report(sessionmaker, None, SINCE, CADENCE, now=NOW)
    assert b2b.activity["engaged"] == 6 and b2b.activity["emailed"] == 12


def rows(page: str, attr: str) -> dict[str, list[str]]:
    return {key: cell(page, attr, key) for key in re.findall(rf'<tr {attr}="([^"]+)">', page)}


async def test_the_page_shows_the_raw_click_rate_beside_the_real_ones(sessionmaker: Maker, tmp_path: Path) -> None:
    await seed_truth(sessionmaker)
    data = with_plan(await gather_report(sessionmaker, None, SINCE, None, now=NOW))
    page = render_html(data, tmp_path / "files")

    heads = re.search(r'<h3 id="truth">.*?<thead>(.*?)</thead>', page, re.S)
    assert heads
    assert re.findall(r"<th[^>]*>(.*?)</th>", heads.group(1)) == [
        "",
        "emails clicked ÷ sends",
        "click events: all, by people",
        "machine click events, by class",
        "cadence",
        "step",
        "sends",
        "raw click rate",
        "human click rate",
        "confirmed click rate",
        "all",
        "confirmed",
        "unconfirmed",
        "gateway",
        "cloud",
        "prefetch",
        "MPP",
        "scanner",
        "unclassified",
    ]
    clicks = rows(page, "data-clicks")
    # raw, human and confirmed click rates; click events, confirmed, unconfirmed; gateway, cloud, prefetch, MPP,
    # scanner, unclassified
    intro = ["10", "70.0% (7)", "50.0% (5)", "30.0% (3)", "8", "3", "2", "1", "1", "0", "0", "0", "1"]
    assert clicks["b2b/intro"] == ["b2b", "intro", *intro]
    assert clicks["b2b/follow-up"][3:9] == ["50.0% (1)", "0.0% (0)", "0.0% (0)", "1", "0", "0"]
    opens = rows(page, "data-opens")
    # raw and human open rates; open events, by people; gateway, cloud, prefetch, MPP, scanner, unclassified
    intro = ["10", "90.0% (9)", "60.0% (6)", "6", "2", "1", "0", "1", "1", "0", "1"]
    assert opens["b2b/intro"] == ["b2b", "intro", *intro]
    # every figure is explained in words beside the tables
    for term in ("raw click rate", "confirmed click rate", "confirmed, unconfirmed clicks", "unclassified", "MPP"):
        assert f"<dt>{term}</dt>" in page, term
    assert "stored before the classifier named classes" in page


async def test_without_legacy_machine_events_no_unclassified_column(sessionmaker: Maker, tmp_path: Path) -> None:
    """A database whose every machine event names its class shows the five classes and no column for the rest."""
    await seed_truth(sessionmaker)
    async with sessionmaker() as session:
        legacy = (EngagementEvent.human.is_(False), EngagementEvent.machine_class.is_(None))
        await session.execute(delete(EngagementEvent).where(*legacy))
        await session.commit()
    data = await gather_report(sessionmaker, None, SINCE, None, now=NOW)
    page = render_html(with_plan(data), tmp_path / "files")
    assert '<th class="num">unclassified</th>' not in page
    assert rows(page, "data-clicks")["b2b/intro"][9:] == ["1", "1", "0", "0", "0"]


async def test_a_class_the_report_does_not_know_is_shown_under_its_own_name(
    sessionmaker: Maker, tmp_path: Path
) -> None:
    """A newer classifier's class is neither lost nor folded into another: its own column, after the five."""
    await seed_truth(sessionmaker)
    async with sessionmaker() as session:
        session.add(
            EngagementEvent(
                id="truth-proxy",
                lead_id=10,
                kind="click",
                human=False,
                reason="test",
                outbox_key="lead-10.c0.intro",
                occurred_at=SENT + timedelta(hours=1),
                status="signalled",
                confidence=0.8,
                machine_class="proxy",
            )
        )
        await session.commit()
    data = await gather_report(sessionmaker, None, SINCE, None, now=NOW)
    intro = next(s for s in data.steps if s.step == "intro")
    assert intro.machine_clicks_by_class == {"gateway": 1, "cloud": 1, "unclassified": 1, "proxy": 1}
    assert (intro.clicked, intro.raw_click_rate, intro.human_clicked, intro.machine_clicks) == (8, 0.8, 5, 4)
    page = render_html(with_plan(data), tmp_path / "files")
    heads = re.search(r'<h3 id="truth">.*?<thead>(.*?)</thead>', page, re.S)
    assert heads and re.findall(r"<th[^>]*>(.*?)</th>", heads.group(1))[-3:] == ["scanner", "proxy", "unclassified"]
    assert rows(page, "data-clicks")["b2b/intro"][-3:] == ["0", "1", "1"]
