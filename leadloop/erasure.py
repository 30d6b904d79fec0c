"""`leadloop forget EMAIL`: erase a person on request (GDPR art. 17).

First every run of the lead's workflow is deleted from Temporal, whose histories hold the lead's profile:
the running one first, which the server ends on the spot (so nothing more is sent). Then the database
forgets the person in one transaction and keeps only the address's hash on the suppression list, so intake
refuses them for good. A failure half-way leaves the address findable, so running `forget` again finishes
the job. Counts, times and outcomes stay, without the person, so reports still add up.

(Deleting the running execution directly, rather than terminating it and then deleting it, matters on the
dev server: a terminated execution is only deleted about 30 s later, once its closed visibility record is
in place; a running one is gone at once.)"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from leadloop.db import DispositionRow, EngagementEvent, Lead, Outbox, Suppression, insert_for
from leadloop.enrollment import workflow_id
from leadloop.intake import normalise_email
from leadloop.mail import email_hash

PERSONAL = ("first_name", "last_name", "company", "title", "industry", "company_size", "country", "region",
            "timezone", "locale", "product_interest", "owner")  # fmt: skip


class ErasureError(Exception):
    """The request cannot be carried out (bad address, Temporal unreachable); nothing was changed."""


@dataclass
class Erasure:
    email_hash: str
    lead_id: int | None = None
    ended_workflow: bool = False
    runs_deleted: int = 0
    rows: dict[str, int] = field(default_factory=dict)


def erased_address(lead_id: int) -> str:
    """What stays in the email column: unique, undeliverable, and not the person's."""
    return f"erased-{lead_id}@erased.invalid"


async def forget(sessionmaker: async_sessionmaker[AsyncSession], client: Client, address: str) -> Erasure:
    try:
        email = normalise_email(address)
    except ValueError as exc:
        raise ErasureError(str(exc)) from None
    result = Erasure(email_hash=email_hash(email))
    async with sessionmaker() as session:
        lead = (await session.execute(select(Lead).where(Lead.email == email))).scalar_one_or_none()
    if lead is not None:
        result.lead_id = lead.id
        result.ended_workflow, result.runs_deleted = await _delete_runs(client, lead.id)
    async with sessionmaker() as session:
        result.rows = await erase_in_database(session, email, lead.id if lead else None)
        await session.commit()
    return result


async def erase_in_database(session: AsyncSession, email: str, lead_id: int | None) -> dict[str, int]:
    """Suppress the address by its hash and strip the lead's personal data (the caller commits)."""
    await session.execute(
        insert_for(session)(Suppression)
        .values(email_hash=email_hash(email), reason="erased", detail="erased on request", created_at=datetime.now(UTC))
        .on_conflict_do_update(index_elements=["email_hash"], set_={"reason": "erased"})
    )
    lead = await session.get(Lead, lead_id) if lead_id is not None else None
    if lead is None:
        return {}
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
        .values(url=None, user_agent=None, client_ip=None)
        .returning(EngagementEvent.id)
    )
    rows["engagement_events"] = len(done.all())
    done = await session.execute(
        update(DispositionRow).where(DispositionRow.lead_id == lead_id).values(note=None).returning(DispositionRow.key)
    )
    rows["dispositions"] = len(done.all())
    return rows


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
