# ruff: noqa: F811 (each test takes the imported `stack` fixture by its name)
"""Keep in touch from a CRM and from the CLI: a `not_ready` reject with a re-contact date (time-skipping server, real
worker); a date in the past, with another reason, or on an accept is refused with the validator's words and changes
nothing."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from leadloop.domain.schedule import local_date
from leadloop.infra.db import DispositionRow, Rep
from starter.api import create_app
from tests.conftest import client_address
from tests.starter.test_cli import leadloop
from tests.workflows.test_escalation import (
    Stack,
    stack,  # noqa: F401 (the fixture the tests take)
    with_rep,
)

KEY = {"x-api-key": "crm-key"}


async def rep_email(stack: Stack, rep_id: int) -> str:
    async with stack.sessionmaker() as session:
        return (await session.get(Rep, rep_id)).email


async def dispositions(stack: Stack, lead_id: int) -> list[DispositionRow]:
    async with stack.sessionmaker() as session:
        query = select(DispositionRow).where(DispositionRow.lead_id == lead_id)
        return list((await session.execute(query)).scalars())


async def test_a_crm_gives_a_recontact_date_with_not_ready_and_bad_ones_are_refused(
    stack: Stack, make_settings: Any
) -> None:
    lead, handle, state = await with_rep(stack)
    rep = await rep_email(stack, state.assigned_rep_id)
    today = local_date(await stack.env.get_current_time(), "Europe/Athens")
    settings = make_settings(api_keys=["crm-key"])
    app = create_app(settings, sessionmaker=stack.sessionmaker, client=stack.client)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            url = f"/leads/{lead.id}"
            past = {"rep": rep, "reason": "not_ready", "recontact_on": str(today - timedelta(days=1))}
            refused = await http.post(f"{url}/reject", json=past, headers=KEY)
            assert refused.status_code == 409 and "is not in the future" in refused.json()["detail"], refused.text
            other = {"rep": rep, "reason": "no_budget", "recontact_on": str(today + timedelta(days=30))}
            refused = await http.post(f"{url}/reject", json=other, headers=KEY)
            assert refused.status_code == 409 and "goes with the reason not_ready" in refused.json()["detail"]
            on_accept = await http.post(f"{url}/accept", json={"rep": rep, "recontact_on": str(today)}, headers=KEY)
            assert on_accept.status_code == 422
            not_a_date = {"rep": rep, "reason": "not_ready", "recontact_on": "in six months"}
            assert (await http.post(f"{url}/reject", json=not_a_date, headers=KEY)).status_code == 422
            assert (await stack.state(handle)).stage == "with_sales" and await dispositions(stack, lead.id) == []
            day = today + timedelta(days=180)
            good = {"rep": rep, "reason": "not_ready", "recontact_on": str(day), "note": "call back in six months"}
            done = await http.post(f"{url}/reject", json=good, headers=KEY)
            assert done.status_code == 200, done.text
    state = await stack.until(handle, lambda s: s.recontact_on == day and s.cycle == 1)
    assert state.recontact_rep_id is not None and state.stage == "nurturing"
    [row] = await dispositions(stack, lead.id)
    assert (row.reason, row.recontact_on) == ("not_ready", day)


async def test_leadloop_reject_takes_recontact_on_and_says_why_a_past_date_is_refused(stack: Stack, tmp_path) -> None:
    lead, handle, state = await with_rep(stack)
    today = local_date(await stack.env.get_current_time(), "Europe/Athens")
    env = {
        "LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}",
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(stack.client),
    }

    def reject(*extra: str) -> Any:
        return asyncio.to_thread(leadloop, "reject", str(lead.id), "--reason", "not_ready", *extra, env=env)

    past = await reject("--recontact-on", str(today - timedelta(days=3)))
    assert past.returncode == 1 and "is not in the future" in past.stderr, past.stderr
    garbled = await reject("--recontact-on", "01/02/2027")
    assert garbled.returncode == 2 and "--recontact-on" in garbled.stderr
    assert (await stack.state(handle)).stage == "with_sales"
    day = today + timedelta(days=60)
    done = await reject("--recontact-on", str(day))
    assert done.returncode == 0, done.stderr
    state = await stack.until(handle, lambda s: s.recontact_on == day)
    assert state.recontact_rep_id is not None


async def test_the_reps_reject_page_offers_a_day_to_call_back(stack: Stack, make_settings: Any) -> None:
    import re

    lead, handle, state = await with_rep(stack)
    [note] = await stack.mail_to(f"rep{state.assigned_rep_id}@sales.example")
    token = re.search(r"Reject: (\S+)", note.get_body(("plain",)).get_content()).group(1).rsplit("/", 1)[1]
    today = local_date(await stack.env.get_current_time(), "Europe/Athens")
    app = create_app(make_settings(public_url="http://t.test"), sessionmaker=stack.sessionmaker, client=stack.client)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            page = await http.get(f"/r/{token}")
            assert 'type="date" name="recontact_on"' in page.text and "The day to call back" in page.text
            garbled = await http.post(f"/r/{token}", data={"reason": "not_ready", "recontact_on": "soon"})
            assert garbled.status_code == 422 and "must be a date" in garbled.text
            past = str(today - timedelta(days=2))
            refused = await http.post(f"/r/{token}", data={"reason": "not_ready", "recontact_on": past})
            assert refused.status_code == 409 and "is not in the future" in refused.text
            assert await dispositions(stack, lead.id) == []
            day = today + timedelta(days=90)
            done = await http.post(f"/r/{token}", data={"reason": "not_ready", "recontact_on": str(day)})
            assert done.status_code == 200 and "Lead given back" in done.text, done.text
    state = await stack.until(handle, lambda s: s.recontact_on == day and s.cycle == 1)
    assert state.recontact_rep_id is not None
