"""`leadloop history` shows each hit's verdict: human or the machine's class, the classifier's confidence, and for
a click whether its landing page confirmed it; confirmations read as such (SQLite and PostgreSQL)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from leadloop.services.timeline import database_entries
from leadloop.services.tracking import store_hit, store_visit
from tests.leadloop.services.test_inbound import add_lead, add_send


async def test_the_history_shows_verdicts_and_confirmed_clicks(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    at = datetime.now(UTC) - timedelta(seconds=30)
    hit = {"lead_id": lead, "outbox_key": sent.key, "at": at}
    gateway = "Microsoft 365 (gateway, published ranges)"
    await store_hit(
        sessionmaker, **hit, kind="open", human=False, reason=gateway, confidence=0.95, machine_class="gateway"
    )
    for click_id, url in (("c1", "https://site.example/pricing"), ("c2", "https://site.example/demo")):
        await store_hit(
            sessionmaker, **hit, kind="click", human=True, reason="browser navigation", confidence=0.8, url=url,
            event_id=click_id,
        )  # fmt: skip
    # the landing page's beacon reports the pricing click's visitor 12 s later
    stored, confirmed = await store_visit(
        sessionmaker,
        click=(sent.key, "c1"),
        within=timedelta(seconds=120),
        lead_id=lead,
        kind="visit",
        human=True,
        reason="page view from the site beacon",
        url="https://site.example/pricing",
        at=at + timedelta(seconds=12),
    )
    assert (stored, confirmed) == (True, True)

    entries = await database_entries(sessionmaker, lead)
    assert entries is not None
    lines = [e.detail for e in entries if e.kind == "event"]
    assert f"open — machine ({gateway}) [gateway, confidence 0.95]" in lines
    assert (
        "click https://site.example/pricing — human [confidence 0.80] — confirmed by the landing page 12 s later"
    ) in lines
    assert "click https://site.example/demo — human [confidence 0.80] — not confirmed by the landing page" in lines
    assert (
        "click https://site.example/pricing — confirmation of click c1: confirmed by the landing page's beacon 12 s "
        "after the click"
    ) in lines
    [proved] = [line for line in lines if line.startswith("open — confirmation")]
    assert proved.startswith("open — confirmation of click c1, overturning the machine verdict (gateway): ")
    assert "visit https://site.example/pricing — human" in lines  # stored without a confidence: none shown
