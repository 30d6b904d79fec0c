"""The CRM's changes to one lead (API and CLI alike): find it, its owner, a goal, stop, re-enrol, move and tags."""

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from leadloop.domain.cadence import Cadence, cadence_path, load_cadence
from leadloop.domain.crm import CrmInputError, GoalKind, check_actor, normalise_tags
from leadloop.domain.mail import email_hash
from leadloop.domain.models import STAGES, ChangeResult, GoalInput, MoveInput, OwnerInput, Stage, StopInput
from leadloop.domain.recycle import current_recycle
from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import current_scoring
from leadloop.domain.search import LEAD_STAGE
from leadloop.infra.db import Goal, Lead, LeadTag, Rep, Suppression
from leadloop.infra.settings import Settings
from leadloop.services.enrollment import FlowOutcome, start_lead
from leadloop.services.lead_client import LeadClient

T = TypeVar("T")
Problem = Literal["unknown", "refused", "invalid", "unavailable"]
#: what a Temporal client that cannot connect raises on its first call (a lazy client connects then)
UNREACHABLE = "Temporal is unreachable; nothing changed, retry"
#: a cadence named by a CRM: a file name in the cadence directory, never a path
CADENCE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: where a lead's nurture has ended for good: a new run may start (re-enrolment)
ENDED = (
    WorkflowExecutionStatus.COMPLETED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.CANCELED,
    WorkflowExecutionStatus.TIMED_OUT,
)


class ChangeRefused(Exception):
    """A change that cannot apply; nothing was changed. `problem`: an unknown lead or cadence ("unknown", 404),
    a lead the change cannot apply to ("refused", 409), bad input ("invalid", 422), Temporal unreachable
    ("unavailable", 503)."""

    def __init__(self, message: str, problem: Problem = "refused") -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class Flow:
    """A lead's workflow as Temporal describes it: running or not, and the stage it is at (or ended at)."""

    exists: bool
    running: bool = False
    stage: str | None = None


@dataclass
class FoundLead:
    """A lead as `find` answers it: the database's facts, and its workflow's stage and score when reachable."""

    lead_id: int
    external_id: str | None
    email: str
    cadence: str | None
    owner: str | None
    tags: list[str] = field(default_factory=list)
    stage: str | None = None
    score: int | None = None
    category: str | None = None


M = TypeVar("M", bound=BaseModel)


def made(model: type[M], **fields: object) -> M:
    """The change's input, its own limits (a reason's length, a source's) a ChangeRefused naming the field."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ChangeRefused(problems, "invalid") from None


def actor_of(actor: str) -> str:
    """The actor as recorded, checked once here so a bad one is the caller's error, not the workflow's."""
    try:
        return check_actor(actor)
    except CrmInputError as exc:
        raise ChangeRefused(str(exc), "invalid") from None


def checked_cadence(cadence_dir: Path, name: str) -> Cadence:
    """The cadence a CRM names, loaded (so a broken or missing file refuses the change before anything happens)."""
    if not CADENCE_NAME_PATTERN.fullmatch(name):
        raise ChangeRefused(f"{name!r} is not a cadence name (a-z, 0-9, _ and -)", "invalid")
    try:
        return load_cadence(cadence_path(cadence_dir, name))
    except RuleFileError as exc:
        raise ChangeRefused(f"unknown cadence {name!r}: " + "; ".join(exc.lines()), "invalid") from None


async def lead_row(session: AsyncSession, lead_id: int, *, lock: bool = False) -> Lead:
    """The lead's row (locked until the transaction ends with `lock`); ChangeRefused when there is none."""
    if lock and session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks and reads take none: a write that changes nothing takes the database's write
        # lock now, so a second read-modify-write waits here until this one commits
        await session.execute(update(Lead).where(Lead.id == lead_id).values(id=Lead.id))
    lead = await session.get(Lead, lead_id, with_for_update=lock, populate_existing=lock)
    if lead is None:
        raise ChangeRefused(f"no lead {lead_id}", "unknown")
    return lead


async def kept_out(session: AsyncSession, lead: Lead) -> str | None:
    """Why the lead must never be nurtured again (erased, or its address suppressed), or None."""
    if lead.erased_at is not None:
        return f"lead {lead.id} was erased on request; it stays out of nurture"
    suppressed = await session.get(Suppression, email_hash(lead.email))
    if suppressed is not None:
        return f"lead {lead.id} is suppressed ({suppressed.reason}); it stays out of nurture"
    return None


async def flow_of(client: Client, lead_id: int) -> Flow:
    """The lead's current run: running or ended, and its stage (the LeadStage search attribute)."""
    try:
        description = await LeadClient(client, lead_id).handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return Flow(exists=False)
        raise ChangeRefused(f"Temporal did not answer ({exc.message}); nothing changed, retry", "unavailable") from None
    except RuntimeError:  # the lazy client's connection failed: nothing has changed yet
        raise ChangeRefused(UNREACHABLE, "unavailable") from None
    stage = description.typed_search_attributes.get(LEAD_STAGE)
    return Flow(exists=True, running=description.status == WorkflowExecutionStatus.RUNNING, stage=stage)


def ended(lead_id: int, flow: Flow) -> ChangeRefused:
    if not flow.exists:
        return ChangeRefused(f"lead {lead_id} has no workflow: enrol it first")
    stage = (flow.stage or "ended").replace("_", " ")
    return ChangeRefused(f"lead {lead_id} is {stage}: nurture has ended")


async def running_update(client: Client, lead_id: int, change: Callable[[LeadClient], Awaitable[T]]) -> T:
    """Run an update on the lead's running workflow; a refusal (its validator's words), no workflow or an ended
    one become one ChangeRefused."""
    flow = await flow_of(client, lead_id)
    if not flow.running:
        raise ended(lead_id, flow)
    try:
        return await change(LeadClient(client, lead_id))
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise ChangeRefused(getattr(cause, "message", None) or str(cause)) from None
    except RPCError:  # it ended between the look and the update
        raise ended(lead_id, await flow_of(client, lead_id)) from None


# ---------------------------------------------------------------- find


async def find_lead(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client | None,
    *,
    email: str | None = None,
    external_id: str | None = None,
) -> FoundLead:
    """The lead with this address (any case) or the CRM's id; its stage, score and category when Temporal answers."""
    if (email is None) == (external_id is None):
        raise ChangeRefused("give an email address or an external id (one of them)", "invalid")
    async with sessionmaker() as session:
        query = select(Lead)
        if email is not None:
            query = query.where(Lead.email == email.strip().lower())
        else:
            query = query.where(Lead.external_id == (external_id or "").strip())
        lead = (await session.execute(query)).scalar()
        if lead is None or lead.erased_at is not None:
            named = f"the address {email}" if email is not None else f"the external id {external_id}"
            raise ChangeRefused(f"no lead has {named}", "unknown")
        tags = await tags_of(session, lead.id)
    found = FoundLead(lead.id, lead.external_id, lead.email, lead.cadence, lead.owner, tags)
    if client is not None:
        try:
            state = await LeadClient(client, lead.id).state()
        except (RPCError, RuntimeError):  # RuntimeError: the lazy client could not connect
            return found  # no workflow, or Temporal did not answer: the database's facts stand
        found.stage, found.score, found.category = state.stage, state.score.total, state.category
        found.cadence = state.cadence
    return found


# ---------------------------------------------------------------- owner


async def set_owner(
    sessionmaker: async_sessionmaker[AsyncSession], client: Client, lead_id: int, owner: str | None, actor: str
) -> ChangeResult:
    """The lead's owner rep (a rep on the roster) or none: the database's, and its running workflow's next hand-over.

    The database is written first, then the workflow is told: its next cycle reads the profile from the database,
    and its `lead.owner_changed` webhook reads the owner there when it fans out, so both see the new owner. If the
    workflow refuses (the lead is leaving nurture) or Temporal stops answering, the owner is put back and nothing
    has changed. If the workflow has ended (before the change or between the look and the update), the owner
    stands: it is the lead's owner in the database, and its next enrolment starts with them.
    """
    actor = actor_of(actor)
    async with sessionmaker() as session:
        lead = await lead_row(session, lead_id)
        if lead.erased_at is not None:
            raise ChangeRefused(f"lead {lead_id} was erased on request; it cannot be changed")
        if owner is not None:
            rep = (await session.execute(select(Rep).where(Rep.email == owner.strip().lower()))).scalar()
            if rep is None:
                raise ChangeRefused(f"{owner} is not a rep on the roster (`leadloop reps list`)", "invalid")
            owner = rep.email
    change = made(OwnerInput, owner=owner, actor=actor)
    flow = await flow_of(client, lead_id)  # Temporal unreachable: refused here, before the database is touched
    async with sessionmaker() as session:
        lead = await lead_row(session, lead_id)
        before = lead.owner
        lead.owner = owner
        await session.commit()
    if flow.running:
        try:
            return await LeadClient(client, lead_id).change_owner(change)
        except WorkflowUpdateFailedError as exc:
            await _put_owner_back(sessionmaker, lead_id, owner, before)
            cause = exc.cause
            raise ChangeRefused(getattr(cause, "message", None) or str(cause)) from None
        except (RPCError, RuntimeError):
            try:
                flow = await flow_of(client, lead_id)
            except ChangeRefused:
                flow = Flow(exists=True, running=True)  # unknown: nothing may stand
            if flow.running:
                await _put_owner_back(sessionmaker, lead_id, owner, before)
                raise ChangeRefused("Temporal did not take the change; nothing changed, retry", "unavailable") from None
    return ChangeResult(
        stage=_stage(flow.stage),
        outcome=f"owner {owner or 'none'} (no running workflow: its next enrolment starts with them)",
        applied=before != owner,
    )


async def _put_owner_back(
    sessionmaker: async_sessionmaker[AsyncSession], lead_id: int, owner: str | None, before: str | None
) -> None:
    """Undo set_owner's write, unless someone has changed the owner again since."""
    async with sessionmaker() as session:
        lead = await session.get(Lead, lead_id, with_for_update=True)
        if lead is not None and lead.owner == owner:
            lead.owner = before
            await session.commit()


def _stage(stage: str | None) -> Stage:
    """The stage a ChangeResult names for a lead without a running workflow: where it ended (archived if unknown)."""
    for known in STAGES:
        if known == stage:
            return known
    return "archived"


# ---------------------------------------------------------------- goal


async def record_goal(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client,
    lead_id: int,
    kind: GoalKind,
    *,
    source: str = "api",
    reference: str | None = None,
    actor: str,
    note: str = "",
) -> ChangeResult:
    """A goal reached outside leadloop ends the lead's nurture; the same goal (same reference) again changes nothing."""
    goal = made(GoalInput, kind=kind, source=source, reference=reference, actor=actor_of(actor), reason=note)
    async with sessionmaker() as session:
        lead = await lead_row(session, lead_id)
        if reference:
            done = await session.execute(
                select(Goal.id).where(Goal.lead_id == lead_id, Goal.kind == kind, Goal.reference == reference)
            )
            if done.scalar() is not None:
                return ChangeResult(
                    stage="converted", outcome=f"goal '{kind}' ({reference}) was recorded already", applied=False
                )
        if (why := await kept_out(session, lead)) is not None:
            raise ChangeRefused(why.replace("stays out of nurture", "records no goal"))
    flow = await flow_of(client, lead_id)
    if flow.stage == "suppressed":
        raise ChangeRefused(f"lead {lead_id} is suppressed; it records no goal")
    try:
        return await running_update(client, lead_id, lambda lead: lead.goal(goal))
    except ChangeRefused as refused:
        # the same goal sent twice at once: the first ends nurture, so the workflow refuses the second; once the
        # first's goal is in the table, the second is the same goal again, not a conflict
        if refused.problem != "refused" or not reference or not await _goal_recorded(sessionmaker, lead_id, goal):
            raise
        return ChangeResult(
            stage="converted", outcome=f"goal '{kind}' ({reference}) was recorded already", applied=False
        )


#: how long a refused goal waits for the same goal, taken a moment earlier, to reach the goals table
GOAL_WAIT = 3.0


async def _goal_recorded(sessionmaker: async_sessionmaker[AsyncSession], lead_id: int, goal: GoalInput) -> bool:
    """Whether a goal of this kind and reference is in the goals table, or gets there within GOAL_WAIT."""
    query = select(Goal.id).where(Goal.lead_id == lead_id, Goal.kind == goal.kind, Goal.reference == goal.reference)
    deadline = asyncio.get_running_loop().time() + GOAL_WAIT
    while True:
        async with sessionmaker() as session:
            if (await session.execute(query)).scalar() is not None:
                return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- stop and move


async def stop_lead(client: Client, lead_id: int, reason: str, actor: str) -> ChangeResult:
    """Stop the lead's nurture for good (archived), with a reason."""
    actor = actor_of(actor)
    if not reason.strip():
        raise ChangeRefused("give a reason to stop the lead's nurture", "invalid")
    stop = made(StopInput, reason=reason, actor=actor)
    return await running_update(client, lead_id, lambda lead: lead.stop(stop))


async def move_lead(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client,
    cadence_dir: Path,
    lead_id: int,
    cadence: str,
    actor: str,
) -> ChangeResult:
    """Move a running lead to another cadence at its next step boundary; the cadence must load first."""
    actor = actor_of(actor)
    chosen = checked_cadence(cadence_dir, cadence)
    async with sessionmaker() as session:
        await lead_row(session, lead_id)
    result = await running_update(client, lead_id, lambda lead: lead.move(MoveInput(cadence=chosen.name, actor=actor)))
    async with sessionmaker() as session:
        (await lead_row(session, lead_id)).cadence = chosen.name
        await session.commit()
    return result


# ---------------------------------------------------------------- re-enrol


async def reenrol(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client,
    settings: Settings,
    lead_id: int,
    cadence: str,
    actor: str,
) -> FlowOutcome:
    """A new run of `lead-<id>` on `cadence` for a lead whose nurture has ended (never a suppressed or erased one)."""
    actor = actor_of(actor)
    chosen = checked_cadence(settings.cadence_dir, cadence)
    try:
        scoring, recycle = current_scoring(settings.scoring_file), current_recycle(settings.cadence_dir)
    except RuleFileError as exc:
        raise ChangeRefused("; ".join(exc.lines()), "invalid") from None
    async with sessionmaker() as session:
        lead = await lead_row(session, lead_id)
        if (why := await kept_out(session, lead)) is not None:
            raise ChangeRefused(why)
    flow = await flow_of(client, lead_id)
    if flow.running:
        raise ChangeRefused(
            f"lead {lead_id} is still running ({(flow.stage or 'nurturing').replace('_', ' ')}); use move"
        )
    if flow.stage == "suppressed":
        raise ChangeRefused(f"lead {lead_id} is suppressed; it stays out of nurture")
    async with sessionmaker() as session:
        lead = await lead_row(session, lead_id)
        lead.cadence = chosen.name
        await session.commit()
    outcome = await start_lead(
        client,
        lead,
        chosen,
        task_queue=settings.task_queue,
        sales_task_queue=settings.sales_task_queue,
        time_scale=settings.time_scale,
        rep_time_scale=settings.rep_time_scale,
        source=f"re-enrolled by {actor}",
        scoring=scoring,
        recycle=recycle,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    async with sessionmaker() as session:
        tags = await tags_of(session, lead_id)
    if tags:  # the new run starts without them: the database's set, as any tag change tells it
        await LeadClient(client, lead_id).tags(tags, actor)
    return outcome


# ---------------------------------------------------------------- tags


async def tags_of(session: AsyncSession, lead_id: int) -> list[str]:
    rows = await session.execute(select(LeadTag.tag).where(LeadTag.lead_id == lead_id).order_by(LeadTag.tag))
    return list(rows.scalars())


async def lead_tags(sessionmaker: async_sessionmaker[AsyncSession], lead_id: int) -> list[str]:
    async with sessionmaker() as session:
        await lead_row(session, lead_id)
        return await tags_of(session, lead_id)


async def write_tags(session: AsyncSession, lead_id: int, tags: list[str]) -> None:
    """The lead's tags become exactly `tags` (already normalised) in the session; the caller commits."""
    current = set(await tags_of(session, lead_id))
    gone, new = current - set(tags), set(tags) - current
    if gone:
        await session.execute(delete(LeadTag).where(LeadTag.lead_id == lead_id, LeadTag.tag.in_(gone)))
    session.add_all(LeadTag(lead_id=lead_id, tag=tag) for tag in sorted(new))


@dataclass(frozen=True)
class Tagged:
    tags: list[str]
    changed: bool
    workflow_told: bool


async def change_tags(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client | None,
    lead_id: int,
    *,
    replace: list[str] | None = None,
    add: list[str] | None = None,
    remove: list[str] | None = None,
    actor: str,
) -> Tagged:
    """Replace the lead's tags, or add and remove some; the database is the truth and the running workflow is told
    the whole set. A bad tag refuses the lot."""
    actor = actor_of(actor)
    try:
        given = normalise_tags(replace) if replace is not None else None
        adding, removing = normalise_tags(add or []), set(normalise_tags(remove or []))
    except CrmInputError as exc:
        raise ChangeRefused(str(exc), "invalid") from None
    async with sessionmaker() as session:
        # the lead's row locked for the read-modify-write: two changes at once both land (a no-op on SQLite, whose
        # writes are serialised anyway)
        lead = await lead_row(session, lead_id, lock=True)
        if lead.erased_at is not None:
            raise ChangeRefused(f"lead {lead_id} was erased on request; it cannot be changed")
        current = await tags_of(session, lead_id)
        base = given if given is not None else current
        try:
            wanted = normalise_tags([tag for tag in [*base, *adding] if tag not in removing])
        except CrmInputError as exc:
            raise ChangeRefused(str(exc), "invalid") from None
        changed = wanted != current
        if changed:
            await write_tags(session, lead_id, wanted)
        await session.commit()
    told = False
    if client is not None:
        async with sessionmaker() as session:
            # the set as committed now, read and told under the row's lock: of two changes at once, the workflow
            # hears last the set that holds both
            await lead_row(session, lead_id, lock=True)
            wanted = await tags_of(session, lead_id)
            try:
                await LeadClient(client, lead_id).tags(wanted, actor)
                told = True
            except (RPCError, RuntimeError):
                told = False  # no running workflow, or Temporal unreachable: the database holds the tags
            await session.commit()
    return Tagged(wanted, changed, told)
