"""Intake's CRM fields on both databases and the real dev server: `external_id` stored once (another lead's is a
clear per-row error, that row not stored), `tags` (a CSV cell split on ; or |) kept in lead_tags and told to the
lead's workflow; a bad tag rejects its row."""

import asyncio
import contextlib
import random
from typing import Any

from sqlalchemy import select, text
from temporalio.service import RPCError

import worker as worker_module
from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import load_cadence
from leadloop.domain.intake import parse_csv_text
from leadloop.domain.models import LeadState
from leadloop.infra.db import Lead, LeadTag
from leadloop.services.enrollment import enroll_leads, workflow_id
from tests.conftest import with_pydantic


def test_external_id_and_tags_columns_parse_and_a_bad_tag_rejects_its_row() -> None:
    parsed = parse_csv_text(
        "email,external_id,tags\n"
        "a@example.com, HS-1 ,VIP; fair-2026|vip\n"
        "b@example.com,,\n"
        "c@example.com,HS-3,ok;not ok\n"
        "a@example.com,,partner\n"  # the same person again: tags joined, external id kept
    )
    assert [(lead.email, lead.external_id, lead.tags) for lead in parsed.leads] == [
        ("a@example.com", "HS-1", ["fair-2026", "partner", "vip"]),
        ("b@example.com", None, []),
    ]
    [error] = parsed.errors
    assert (error.row, error.field) == (4, "tags") and "'not ok' is not allowed" in error.reason


async def fresh_ids(sessionmaker: Any) -> int:
    """Leads' ids count on from a number no other test's workflow has on the shared dev server."""
    first = random.randrange(10**8, 10**9)
    async with sessionmaker() as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text(f"SELECT setval('leads_id_seq', {first})"))
        else:
            session.add(Lead(id=first, email="placeholder@example.com", attributes={}))
        await session.commit()
    return first


async def test_enrolment_keeps_external_ids_unique_per_row_and_tells_workflows_their_tags(
    make_settings: Any, database_url: str, sessionmaker: Any, smtp: Any, dev_env: Any
) -> None:
    first = await fresh_ids(sessionmaker)
    async with sessionmaker() as session:
        session.add(Lead(email="held@example.com", external_id="HS-1", attributes={}))
        await session.commit()
    settings = make_settings(database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port)
    client = with_pydantic(dev_env.client)
    parsed = parse_csv_text(
        "email,external_id,tags\n"
        "new@example.com,HS-2,vip|fair-2026\n"
        "clash@example.com,HS-1,vip\n"  # HS-1 is held@'s
        "twin@example.com,HS-2,\n"  # HS-2 went to the row above in this same file
        "held@example.com,HS-1,partner\n"  # its own id: merged, tagged
    )
    cadence = load_cadence(PROJECT_ROOT / "cadences" / "welcome.yaml")
    async with worker_module.build_worker(client, settings):
        report = await enroll_leads(
            parsed.leads,
            cadence,
            sessionmaker=sessionmaker,
            client=client,
            task_queue=settings.task_queue,
            time_scale=1.0,
        )
        try:
            outcome = {r.email: (r.db, r.workflow, r.problem) for r in report.results}
            assert outcome["new@example.com"] == ("new", "started", None)
            assert outcome["held@example.com"][:2] == ("unchanged", "started")
            assert outcome["clash@example.com"][:2] == ("conflict", "not_started")
            assert "HS-1 is already lead" in outcome["clash@example.com"][2]
            assert outcome["twin@example.com"][:2] == ("conflict", "not_started")
            assert "HS-2 is already new@example.com's" in outcome["twin@example.com"][2]
            async with sessionmaker() as session:
                stored = dict(
                    (await session.execute(select(Lead.email, Lead.external_id).where(Lead.id > first))).all()
                )
                tags = (await session.execute(select(Lead.email, LeadTag.tag).join(Lead))).all()
            assert stored == {"held@example.com": "HS-1", "new@example.com": "HS-2"}  # nothing of the clashes
            assert sorted(tags) == [
                ("held@example.com", "partner"),
                ("new@example.com", "fair-2026"),
                ("new@example.com", "vip"),
            ]
            new = next(r.lead_id for r in report.results if r.email == "new@example.com")
            handle = client.get_workflow_handle(workflow_id(new))
            for _ in range(100):
                if (await handle.query("state", result_type=LeadState)).tags == ["fair-2026", "vip"]:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the workflow never had its tags")
        finally:
            for result in report.results:
                if result.lead_id is not None:
                    with contextlib.suppress(RPCError):
                        await client.get_workflow_handle(workflow_id(result.lead_id)).terminate("test over")
