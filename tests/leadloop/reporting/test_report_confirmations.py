"""The report's step numbers count hits, not the confirmations stored beside them: a click its landing page
confirmed is one click, and the open it proves makes the email read by a person (SQLite and PostgreSQL)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from leadloop.reporting.gather import gather_report
from leadloop.services.tracking import store_hit, store_visit
from tests.leadloop.services.test_inbound import add_lead, add_send


async def test_a_confirmed_click_is_one_click_and_its_email_was_read(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    at = datetime.now(UTC) - timedelta(minutes=5)
    hit = {"lead_id": lead, "outbox_key": sent.key, "at": at}
    await store_hit(
        sessionmaker, **hit, kind="open", human=False, reason="Apple Mail Privacy Protection", machine_class="mpp",
        confidence=0.95,
    )  # fmt: skip
    await store_hit(
        sessionmaker, **hit, kind="click", human=True, reason="browser navigation", confidence=0.8, event_id="c1",
        url="https://site.example/pricing",
    )  # fmt: skip
    _, confirmed = await store_visit(
        sessionmaker,
        click=(sent.key, "c1"),
        within=timedelta(seconds=120),
        lead_id=lead,
        kind="visit",
        human=True,
        reason="page view from the site beacon",
        url="https://site.example/pricing",
        at=at + timedelta(seconds=20),
    )
    assert confirmed

    data = await gather_report(sessionmaker, None, None, None, now=datetime.now(UTC))
    [step] = [s for s in data.steps if s.step == "welcome"]
    assert (step.sends, step.human_opened, step.human_clicked) == (1, 1, 1)
    # one open (the prefetch) and one click, not the confirmation rows beside them
    assert (step.open_events, step.machine_opens, step.click_events, step.machine_clicks) == (1, 1, 1, 0)
