"""`leadloop forget EMAIL|LEAD_ID`: erase a person on request (GDPR art. 17).

The person is found by lead id, by their address, or by any address their lead had before a change (kept
as a hash in former_addresses). First every run of the lead's workflow is deleted from Temporal, whose
histories hold the lead's profile: the running one first, which the server ends on the spot (so nothing
more is sent). Then the database forgets the person in one transaction (their hand-over to a rep, if any,
is closed, which frees the rep's capacity) and keeps only the hashes of their addresses on the suppression
list, so intake refuses them for good. On SQLite the WAL is then checkpointed and truncated; with
`secure_delete` on every connection the freed bytes are zeroes, so the files no longer hold the person. A
failure half-way leaves the lead findable, so running `forget` again finishes the job. Counts, times and
outcomes stay, without the person, so reports still add up.

The CRM hears it as `lead.suppressed` with reason `erasure`, recorded in the erasure's own transaction, after
the wipe (which empties the bodies of the lead's earlier deliveries and lets none of them go out), through the
same path as every lifecycle event (`leadloop.infra.lifecycle_events`), and without any personal data: its
body has the lead's id, a null external id and owner, and no `person`, whatever the endpoint may receive.

(Deleting the running execution directly, rather than terminating it and then deleting it, matters on the
dev server: a terminated execution is only deleted about 30 s later, once its closed visibility record is
in place; a running one is gone at once.)"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from leadloop.domain.crm_webhooks import FREE_TEXT_KEYS
from leadloop.domain.intake import PROFILE_FIELDS, normalise_email
from leadloop.domain.mail import email_hash
from leadloop.domain.models import LifecycleInput
from leadloop.infra.db import (
    OPEN,
    WAITING,
    DispositionRow,
    EngagementEvent,
    FormerAddress,
    Goal,
    Lead,
    LifecycleEventRow,
    Outbox,
    Suppression,
    WebhookAttempt,
    WebhookDelivery,
    close_assignments,
    insert_for,
)
from leadloop.infra.lifecycle_events import WebhookRoute, hand_over, record_event
from leadloop.services.enrollment import workflow_id
from leadloop.services.inbound import forget_inbound

#: what erasure blanks: every profile field
PERSONAL = PROFILE_FIELDS


class ErasureError(Exception):
    """The request cannot be carried out (bad address, unknown lead, Temporal unreachable); nothing was changed."""


@dataclass
class Erasure:
    email_hash: str | None  # of the address asked for; None when asked by lead id
    lead_id: int | None = None
    ended_workflow: bool = False
    runs_deleted: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    handovers_closed: int = 0
    already_erased: bool = False
    wal_truncated: bool | None = None  # SQLite only: whether the checkpoint emptied the WAL
    webhooks: int = 0  # the CRM's endpoints handed lead.suppressed (erasure)


def erased_address(lead_id: int) -> str:
    """What stays in the email column: unique, undeliverable, and not the person's."""
    return f"erased-{lead_id}@erased.invalid"


def parse_target(value: str) -> int | str:
    """A lead id (digits) or a normalised address; ErasureError when it is neither."""
    if value.strip().isascii() and value.strip().isdecimal():  # not "²", which isdigit() takes
        return int(value.strip())
    try:
        return normalise_email(value)
    except ValueError as exc:
        raise ErasureError(f"{exc} (give the person's address or their lead id)") from None


async def find_lead(session: AsyncSession, target: int | str) -> Lead | None:
    """The lead of an id, of a current address, or of an address it had before a change.

    None for an address no lead has or had (it can still be suppressed); ErasureError for an unknown id, and
    for a former address several leads had (which one is the person's is then for the operator to say)."""
    if isinstance(target, int):
        lead = await session.get(Lead, target)
        if lead is None:
            raise ErasureError(f"no lead {target}; nothing was changed")
        return lead
    current = (await session.execute(select(Lead).where(Lead.email == target))).scalar_one_or_none()
    if current is not None:
        return current
    former = (
        await session.execute(select(FormerAddress.lead_id).where(FormerAddress.email_hash == email_hash(target)))
    ).scalars()
    ids = sorted(set(former))
    if len(ids) > 1:
        listed = ", ".join(str(i) for i in ids)
        raise ErasureError(f"leads {listed} each had {target} before a change: forget by lead id; nothing was changed")
    return await session.get(Lead, ids[0]) if ids else None


async def forget(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client,
    who: str | int,
    *,
    webhooks: WebhookRoute | None = None,
) -> Erasure:
    """Erase the person `who` names: a lead id, their address, or an address their lead had before.

    Args:
        webhooks: where lead.suppressed's delivery workflows run (`WebhookRoute.of(settings)`).
    """
    target = parse_target(who) if isinstance(who, str) else who
    email = target if isinstance(target, str) else None
    result = Erasure(email_hash=email_hash(email) if email else None)
    async with sessionmaker() as session:
        lead = await find_lead(session, target)
    if lead is not None:
        result.lead_id = lead.id
        result.already_erased = lead.erased_at is not None
        if not result.already_erased:  # (again: only a hand-over an older release left open is closed)
            result.ended_workflow, result.runs_deleted = await _delete_runs(client, lead.id)
    async with sessionmaker() as session:
        told = await _erasure_event(session, lead) if lead is not None and not result.already_erased else None
        rows = await erase_in_database(session, email, lead.id if lead else None)
        if told is not None:  # after the wipe, in its transaction: both or neither, and no personal data in it
            await record_event(session, told, personal=False)
        await session.commit()
    result.handovers_closed = rows.pop("handovers_closed", 0)
    result.rows = rows
    if lead is not None:  # again too: a first run that stopped before the hand-over is finished here
        result.webhooks = await _tell_crm(sessionmaker, client, lead.id, webhooks or WebhookRoute())
    result.wal_truncated = await _truncate_wal(sessionmaker)
    return result


def erasure_key(lead_id: int) -> str:
    """The key of the lead's one lead.suppressed (erasure): a lead is erased once."""
    return f"lead-{lead_id}.erasure"


async def _erasure_event(session: AsyncSession, lead: Lead) -> LifecycleInput:
    """lead.suppressed with reason erasure, in the cycle of the lead's last event and on its cadence (neither is
    personal data): what the CRM needs to stop working the lead, and nothing of the person."""
    cycle = await session.scalar(select(func.max(LifecycleEventRow.cycle)).where(LifecycleEventRow.lead_id == lead.id))
    return LifecycleInput(
        key=erasure_key(lead.id),
        lead_id=lead.id,
        type="lead.suppressed",
        cycle=cycle or 0,
        stage="suppressed",
        cadence=lead.cadence,
        data={"reason": "erasure"},
        occurred_at=datetime.now(UTC),
    )


async def _tell_crm(
    sessionmaker: async_sessionmaker[AsyncSession], client: Client, lead_id: int, route: WebhookRoute
) -> int:
    """Hand the erasure event's pending deliveries to their delivery workflows; how many."""
    async with sessionmaker() as session:
        event_id = await session.scalar(
            select(LifecycleEventRow.id).where(LifecycleEventRow.key == erasure_key(lead_id))
        )
    if event_id is None:  # erased before erasure told the CRM (an older release): nothing to hand over
        return 0
    try:
        return await hand_over(sessionmaker, client, event_id, lead_id, route)
    except (RPCError, RuntimeError) as exc:
        raise ErasureError(
            f"lead {lead_id} is erased, but its lead.suppressed could not be handed to the CRM's webhooks ({exc}); "
            "run `forget` again"
        ) from None


async def erase_in_database(session: AsyncSession, email: str | None, lead_id: int | None) -> dict[str, int]:
    """Suppress the address and every address the lead has or had, by hash, close the lead's hand-overs and
    strip its personal data (the caller commits). Rows changed per table, and "handovers_closed"."""
    # the row lock orders this against an assign_lead call still in flight (it reads the lead under the same lock)
    lead = await session.get(Lead, lead_id, with_for_update=True) if lead_id is not None else None
    hashes = {email_hash(email)} if email else set()
    if lead is not None:
        if lead.erased_at is None:
            hashes.add(email_hash(lead.email))
        former = await session.execute(
            delete(FormerAddress).where(FormerAddress.lead_id == lead.id).returning(FormerAddress.email_hash)
        )
        hashes |= set(former.scalars())
    for digest in sorted(hashes):
        await session.execute(
            insert_for(session)(Suppression)
            .values(email_hash=digest, reason="erased", detail="erased on request", created_at=datetime.now(UTC))
            .on_conflict_do_update(index_elements=["email_hash"], set_={"reason": "erased"})
        )
    # replies and bounces: the lead's, and any from the person's addresses, matched or not
    plain = {email} if email else set()
    if lead is not None and lead.erased_at is None:
        plain.add(lead.email)
    inbound = await forget_inbound(session, lead.id if lead is not None else None, hashes, plain)
    if lead is None:
        return inbound
    # the rep's open count (their capacity) is the hand-overs in OPEN; the workflow that would close them is gone
    closed = await close_assignments(session, "closed", lead_id=lead.id, states=(OPEN, WAITING))
    if lead.erased_at is not None:
        return {"handovers_closed": closed} | inbound
    for name in PERSONAL:
        setattr(lead, name, None)
    lead.email, lead.attributes, lead.erased_at = erased_address(lead.id), {}, datetime.now(UTC)
    rows = {"leads": 1}
    # subjects were rendered with the name; errors may quote the address; events carry IP, browser and URLs
    done = await session.execute(
        update(Outbox).where(Outbox.lead_id == lead_id).values(subject=None, error=None).returning(Outbox.key)
    )
    rows["outbox"] = len(done.all())
    done = await session.execute(
        update(EngagementEvent)
        .where(EngagementEvent.lead_id == lead_id)
        .values(url=None, title=None, user_agent=None, client_ip=None)
        .returning(EngagementEvent.id)
    )
    rows["engagement_events"] = len(done.all())
    done = await session.execute(
        update(DispositionRow).where(DispositionRow.lead_id == lead_id).values(note=None).returning(DispositionRow.key)
    )
    rows["dispositions"] = len(done.all())
    # the lifecycle events keep the rep's note and the reasons in words, and a goal its note: kept as events, without
    # the free text (an endpoint allowed `notes` gets none of it after this)
    events = (await session.scalars(select(LifecycleEventRow).where(LifecycleEventRow.lead_id == lead_id))).all()
    for event in events:
        data = event.payload.get("data")
        if isinstance(data, dict) and FREE_TEXT_KEYS & data.keys():
            event.payload = {**event.payload, "data": {k: v for k, v in data.items() if k not in FREE_TEXT_KEYS}}
            rows["lifecycle_events"] = rows.get("lifecycle_events", 0) + 1
    done = await session.execute(
        update(Goal).where(Goal.lead_id == lead_id, Goal.note.is_not(None)).values(note=None).returning(Goal.id)
    )
    if goals := len(done.all()):
        rows["goals"] = goals
    # a CRM webhook's body may hold the personal data its endpoint receives, and a receiver's answer may echo it;
    # a delivery not yet sent is dead rather than sent without its body
    done = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.lead_id == lead_id)
        .values(body=None, last_answer=None)
        .returning(WebhookDelivery.id)
    )
    delivery_ids = list(done.scalars())
    if delivery_ids:
        rows["webhook_deliveries"] = len(delivery_ids)
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.lead_id == lead_id, WebhookDelivery.status == "pending")
            .values(status="dead", last_error="not sent: its body was erased (`leadloop forget`)")
        )
        await session.execute(
            update(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids)).values(answer=None)
        )
    rows |= inbound
    rows["handovers_closed"] = closed
    return rows


async def _truncate_wal(sessionmaker: async_sessionmaker[AsyncSession]) -> bool | None:
    """SQLite: copy the WAL into the database file and empty it, so the old pages that held the person go;
    None on other databases, False when a reader kept the WAL from being emptied."""
    async with sessionmaker() as session:
        if session.get_bind().dialect.name != "sqlite":
            return None
        busy, _, _ = (await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))).one()
        return not busy


async def _delete_runs(client: Client, lead_id: int) -> tuple[bool, int]:
    """Delete every run (continue-as-new and recycles keep the id), the running one first; whether one was
    running, and how many runs were deleted."""
    wid = workflow_id(lead_id)
    try:
        runs = [r async for r in client.list_workflows(f"WorkflowId = '{wid}'")]
        runs.sort(key=lambda r: r.status != WorkflowExecutionStatus.RUNNING)
        for run in runs:
            await client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=wid, run_id=run.run_id)
                )
            )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # deleted meanwhile (a second `forget`)
            return False, 0
        raise ErasureError(f"could not delete the lead's workflow ({exc.message}); run `forget` again") from None
    except RuntimeError as exc:
        raise ErasureError(f"cannot reach Temporal ({exc}); nothing was changed") from None
    return any(r.status == WorkflowExecutionStatus.RUNNING for r in runs), len(runs)
