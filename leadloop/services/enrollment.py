"""Enrolment: validated leads into the database (one per email) and into their workflows."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from leadloop.domain.cadence import Cadence
from leadloop.domain.intake import PROFILE_FIELDS, LeadIn
from leadloop.domain.mail import email_hash
from leadloop.domain.models import EnrollInput, LeadNurtureInput, TagsInput
from leadloop.domain.recycle import RecyclePolicy
from leadloop.domain.scoring import ScoringConfig
from leadloop.domain.search import CADENCE_NAME, CADENCE_STEP, LEAD_STAGE
from leadloop.infra.db import Lead, LeadTag, Suppression, insert_for, lead_profile
from leadloop.services.roster import roster_addresses
from workflows.lead_nurture import LeadNurtureWorkflow

DbOutcome = Literal["new", "merged", "unchanged", "suppressed", "conflict"]
FlowOutcome = Literal["started", "already_running", "finished_earlier", "not_started"]


def workflow_id(lead_id: int) -> str:
    """Business key of a lead's workflow; never the email address (no PII in ids)."""
    return f"lead-{lead_id}"


@dataclass
class Enrolled:
    email: str
    lead_id: int | None
    db: DbOutcome
    workflow: FlowOutcome
    unknown_owner: str | None = None  # the owner given, not on the roster: enrolled without one
    problem: str | None = None  # why the lead was not stored (db "conflict"): its external id is another lead's


@dataclass
class EnrolmentReport:
    results: list[Enrolled] = field(default_factory=list)

    def count(self, **match: str) -> int:
        return sum(all(getattr(r, k) == v for k, v in match.items()) for r in self.results)


#: rows per statement: well under SQLite's 32,766 bound parameters at 16 columns a row
BATCH = 500


async def upsert_lead(session: AsyncSession, lead: LeadIn, cadence: str) -> tuple[Lead, DbOutcome]:
    """Insert the lead, or fill the gaps of the existing one; the unique email decides, not Python."""
    return (await upsert_leads(session, [lead], cadence))[0]


async def upsert_leads(session: AsyncSession, leads: list[LeadIn], cadence: str) -> list[tuple[Lead, DbOutcome]]:
    """`upsert_lead` for many, a few statements per BATCH rather than a few per lead (intake of a CSV).

    Leads must have distinct addresses (parse_csv merges duplicates)."""
    now = datetime.now(UTC)
    insert = insert_for(session)
    results: list[tuple[Lead, DbOutcome]] = []
    for start in range(0, len(leads), BATCH):
        chunk = leads[start : start + BATCH]
        values = [
            {
                "email": lead.email,
                "attributes": lead.attributes,
                "cadence": cadence,
                "external_id": lead.external_id,
                "created_at": now,
                "updated_at": now,
                **{f: getattr(lead, f) for f in PROFILE_FIELDS},
            }
            for lead in chunk
        ]
        inserted = await session.execute(
            insert(Lead).values(values).on_conflict_do_nothing(index_elements=["email"]).returning(Lead.email)
        )
        new = set(inserted.scalars())
        rows = {
            row.email: row
            for row in (await session.execute(select(Lead).where(Lead.email.in_([lead.email for lead in chunk]))))
            .scalars()
            .all()
        }
        for lead in chunk:
            row = rows[lead.email]
            if lead.email in new:
                results.append((row, "new"))
                continue
            changed = False
            for name in (*PROFILE_FIELDS, "external_id"):
                value = getattr(lead, name)
                if value is not None and getattr(row, name) is None:
                    setattr(row, name, value)
                    changed = True
            extra = {k: v for k, v in lead.attributes.items() if k not in (row.attributes or {})}
            if extra:
                row.attributes = {**(row.attributes or {}), **extra}
                changed = True
            results.append((row, "merged" if changed else "unchanged"))
    return results


async def match_owners(session: AsyncSession, leads: list[LeadIn]) -> tuple[list[LeadIn], dict[str, str]]:
    """The leads with each owner matched against the roster (any case; the roster's spelling is kept) and an
    unknown owner dropped, so routing decides; and lead address -> the unknown owner it gave."""
    known = await roster_addresses(session, {lead.owner for lead in leads if lead.owner})
    matched: list[LeadIn] = []
    unknown: dict[str, str] = {}
    for lead in leads:
        if lead.owner and lead.owner.lower() not in known:
            unknown[lead.email] = lead.owner
            lead = lead.model_copy(update={"owner": None})
        elif lead.owner:
            lead = lead.model_copy(update={"owner": known[lead.owner.lower()]})
        matched.append(lead)
    return matched, unknown


async def external_id_clashes(session: AsyncSession, leads: list[LeadIn]) -> dict[str, str]:
    """Lead address -> why it cannot be stored: the external id it gives is another lead's (in the database, or an
    earlier lead of the same batch: the first one keeps it). The unique index stays the last word."""
    given = [lead.external_id for lead in leads if lead.external_id]
    holders: dict[str, tuple[str, str]] = {}  # external id -> (its lead's address, how to name that lead)
    for start in range(0, len(given), BATCH):
        found = await session.execute(
            select(Lead.external_id, Lead.email, Lead.id).where(Lead.external_id.in_(given[start : start + BATCH]))
        )
        holders |= {external_id: (email, f"lead {lead_id}") for external_id, email, lead_id in found if external_id}
    clashes: dict[str, str] = {}
    for lead in leads:
        if not lead.external_id:
            continue
        holder = holders.setdefault(lead.external_id, (lead.email, lead.email))  # the first of a batch keeps it
        if holder[0] != lead.email:
            clashes[lead.email] = f"external_id: {lead.external_id} is already {holder[1]}'s; this lead was not stored"
    return clashes


async def add_tags(session: AsyncSession, tagged: list[tuple[int, list[str]]]) -> dict[int, list[str]]:
    """Intake's tags join the ones each lead has (a set: the same tag twice is kept once); the caller commits.
    Returns each of those leads' whole set now, for its workflow."""
    wanted = {(lead_id, tag) for lead_id, tags in tagged for tag in tags}
    if not wanted:
        return {}
    ids = sorted({lead_id for lead_id, _ in wanted})
    have: set[tuple[int, str]] = set()
    for start in range(0, len(ids), BATCH):
        found = await session.execute(
            select(LeadTag.lead_id, LeadTag.tag).where(LeadTag.lead_id.in_(ids[start : start + BATCH]))
        )
        have |= {(lead_id, tag) for lead_id, tag in found}
    session.add_all(LeadTag(lead_id=lead_id, tag=tag) for lead_id, tag in sorted(wanted - have))
    whole: dict[int, list[str]] = {}
    for lead_id, tag in sorted(wanted | have):
        whole.setdefault(lead_id, []).append(tag)
    return whole


async def tell_tags(client: Client, lead_id: int, tags: list[str], flow: FlowOutcome) -> None:
    """A running lead's workflow is told its tags (a new run starts without them); an ended one keeps its own."""
    if not tags or flow not in ("started", "already_running"):
        return
    handle = client.get_workflow_handle_for(LeadNurtureWorkflow.run, workflow_id(lead_id))
    try:
        await handle.signal(LeadNurtureWorkflow.tags, TagsInput(tags=tags))
    except RPCError:  # it ended meanwhile: the database holds the tags
        return


async def suppressed_addresses(session: AsyncSession, emails: list[str]) -> set[str]:
    """The addresses among `emails` that are on the suppression list (by hash)."""
    hashes = {email_hash(e): e for e in emails}
    found: set[str] = set()
    keys = list(hashes)
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        found |= {
            hashes[h]
            for h in (
                await session.execute(select(Suppression.email_hash).where(Suppression.email_hash.in_(chunk)))
            ).scalars()
        }
    return found


async def start_lead(
    client: Client,
    lead: Lead,
    cadence: Cadence,
    *,
    task_queue: str,
    time_scale: float,
    source: str,
    scoring: ScoringConfig | None = None,
    recycle: RecyclePolicy | None = None,
    sales_task_queue: str | None = None,
    rep_time_scale: float | None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
) -> FlowOutcome:
    """Signal-with-start the lead's workflow: a running lead only records the enrolment.

    `id_reuse_policy`: ALLOW_DUPLICATE only for a re-enrolment, after its caller checked that the lead's last run
    has ended and that the lead may be nurtured again (lead_changes.reenrol); intake never restarts a lead.

    "started" relies on the server saying so in its reply (Temporal Server does; the
    time-skipping test server does not, and reads as "already_running").
    """
    try:
        handle = await client.start_workflow(
            LeadNurtureWorkflow.run,
            LeadNurtureInput(
                lead_id=lead.id,
                cadence=cadence,
                timezone=lead.timezone or cadence.default_timezone,
                time_scale=time_scale,
                rep_time_scale=rep_time_scale,
                scoring=scoring,
                profile=lead_profile(lead),
                recycle=recycle,
                sales_task_queue=sales_task_queue or None,
            ),
            id=workflow_id(lead.id),
            task_queue=task_queue,
            start_signal="enroll",
            start_signal_args=[EnrollInput(cadence_name=cadence.name, source=source)],
            id_reuse_policy=id_reuse_policy,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(LEAD_STAGE, "nurturing"),
                    SearchAttributePair(CADENCE_NAME, cadence.name),
                    SearchAttributePair(CADENCE_STEP, cadence.steps[0].id),
                ]
            ),
            static_summary=f"lead {lead.id} · cadence {cadence.name} v{cadence.version}",
            static_details=f"lead {lead.id} at {lead.company or 'unknown company'}; cadence '{cadence.name}' "
            f"({len(cadence.steps)} steps); time zone {lead.timezone or cadence.default_timezone}",
        )
    except WorkflowAlreadyStartedError:
        return "finished_earlier"
    # the server's reply says whether this call started the run; the SDK keeps it on the handle only
    response = getattr(handle, "_start_workflow_response", None)
    return "started" if getattr(response, "started", False) else "already_running"


async def enroll_leads(
    leads: list[LeadIn],
    cadence: Cadence,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client,
    task_queue: str,
    time_scale: float,
    source: str = "cli",
    scoring: ScoringConfig | None = None,
    recycle: RecyclePolicy | None = None,
    sales_task_queue: str | None = None,
    rep_time_scale: float | None = None,
    concurrency: int = 32,
    progress: Callable[[Enrolled], None] | None = None,
) -> EnrolmentReport:
    """Write every lead (and its tags), then start (or signal) its workflow; suppressed addresses are skipped, and
    so is a lead whose external id is another lead's (db "conflict", with the reason)."""
    report = EnrolmentReport()
    stored: list[tuple[LeadIn, Lead | None, DbOutcome]] = []
    async with sessionmaker() as session:
        suppressed = await suppressed_addresses(session, [lead.email for lead in leads])
        clashes = await external_id_clashes(session, [lead for lead in leads if lead.email not in suppressed])
        left_out = suppressed | set(clashes)
        allowed, unknown_owners = await match_owners(session, [lead for lead in leads if lead.email not in left_out])
        rows = await upsert_leads(session, allowed, cadence.name)
        upserted = dict(zip((lead.email for lead in allowed), rows, strict=True))
        tags = await add_tags(session, [(upserted[lead.email][0].id, lead.tags) for lead in allowed if lead.tags])
        for lead in leads:
            if lead.email in suppressed:
                stored.append((lead, None, "suppressed"))
            elif lead.email in clashes:
                stored.append((lead, None, "conflict"))
            else:
                row, outcome = upserted[lead.email]
                stored.append((lead, row, outcome))
        await session.commit()

    gate = asyncio.Semaphore(concurrency)

    async def one(lead: LeadIn, row: Lead | None, outcome: DbOutcome) -> Enrolled:
        if row is None:
            done = Enrolled(lead.email, None, outcome, "not_started", problem=clashes.get(lead.email))
        else:
            async with gate:
                flow = await start_lead(
                    client,
                    row,
                    cadence,
                    task_queue=task_queue,
                    time_scale=time_scale,
                    source=source,
                    scoring=scoring,
                    recycle=recycle,
                    sales_task_queue=sales_task_queue,
                    rep_time_scale=rep_time_scale,
                )
                await tell_tags(client, row.id, tags.get(row.id, []), flow)
            done = Enrolled(lead.email, row.id, outcome, flow, unknown_owners.get(lead.email))
        if progress:
            progress(done)
        return done

    report.results = list(await asyncio.gather(*(one(*item) for item in stored)))
    return report
