"""Bulk actions over a segment (pause, resume, stop, move, tag, enrol): each lead on its own, paced, idempotent.

Why the SDK's listing and not Temporal's server batch operations: a batch operation signals or terminates
blindly, while each of these actions first looks at the lead (its stage, its cadence, its tags in the database)
to skip what is so already and to say why a lead was refused; stop and move are updates with validators, which
batch operations do not send; the pace is ours to set (`rate`), so a large segment does not flood the workers;
and the summary names every lead that failed, and why. The listing is Temporal's visibility, which follows
changes within moments: a lead changed a moment ago may still be listed under its old attributes, and the
action then finds it so already.

Enrol is the other way round: it acts on the segment's leads whose nurture has ended (their last run matched),
each re-enrolled as a new run of lead-<id> (`lead_changes.reenrol`, which keeps suppressed and erased leads out).
"""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError

from leadloop.domain.cadence import cadence_path, load_cadence
from leadloop.domain.crm import MAX_TAGS, CrmInputError, check_actor, normalise_tags
from leadloop.domain.models import MoveInput, StopInput
from leadloop.domain.rules import RuleFileError
from leadloop.domain.search import LEAD_TAGS
from leadloop.domain.segments import CADENCE_NAME
from leadloop.domain.text import CONTROL_RE
from leadloop.infra.db import Lead, LeadTag, insert_for
from leadloop.infra.settings import Settings
from leadloop.services.lead_changes import ChangeRefused, flow_of, reenrol
from leadloop.services.lead_client import LeadClient
from leadloop.services.operations import HOLDABLE
from leadloop.services.segments import SavedSegment

Action = Literal["pause", "resume", "stop", "move", "tag", "enrol"]
ACTIONS: tuple[Action, ...] = get_args(Action)
Result = Literal["changed", "already", "failed"]
DEFAULT_RATE = 20.0
MAX_RATE = 500.0
#: lead ids per look-up of their latest runs (a visibility query's IN list stays short)
LATEST_BATCH = 100


class BulkError(ValueError):
    """A bulk action that cannot run as asked (no cadence for move or enrol, no tags for tag...); nothing was done."""


@dataclass(frozen=True)
class BulkRequest:
    """One action for every lead of a segment, and who asks (recorded in each lead's history)."""

    action: Action
    actor: str = ""
    reason: str = ""
    cadence: str | None = None
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    rate: float = DEFAULT_RATE


def check_request(request: BulkRequest, cadence_known: Callable[[str], bool] | None = None) -> BulkRequest:
    """The request with its tags normalised; BulkError names what is wrong before any lead is touched.

    Args:
        cadence_known: whether a cadence of this name loads (move, enrol): the CLI and API pass the cadence
            folder's.
    """
    if request.action not in ACTIONS:
        raise BulkError(f"unknown action {request.action!r}; one of: {', '.join(ACTIONS)}")
    if not 0 < request.rate <= MAX_RATE:
        raise BulkError(f"rate must be above 0 and at most {MAX_RATE:g} leads a second")
    try:
        if request.actor:
            check_actor(request.actor)
        add, remove = normalise_tags(request.add), normalise_tags(request.remove)
    except CrmInputError as exc:
        raise BulkError(str(exc)) from None
    if len(request.reason) > 500:
        raise BulkError("reason: at most 500 characters")
    if CONTROL_RE.search(request.reason):  # it goes into each lead's history and lifecycle event as one line
        raise BulkError("reason: one line, without control characters")
    if request.action in ("move", "enrol"):
        if not request.cadence:
            to = "move the leads to" if request.action == "move" else "enrol the ended leads on"
            raise BulkError(f"{request.action} needs the cadence to {to} (--cadence)")
        if not CADENCE_NAME.fullmatch(request.cadence):
            raise BulkError(f"{request.cadence!r} is not a cadence name")
        if cadence_known is not None and not cadence_known(request.cadence):
            raise BulkError(f"no cadence named {request.cadence!r}")
    if request.action == "stop" and not request.reason.strip():
        raise BulkError("stop needs a reason, recorded in each lead's history (--reason)")
    if request.action == "tag":
        if not add and not remove:
            raise BulkError("tag needs tags to add or remove (--add, --remove)")
        if set(add) & set(remove):
            raise BulkError(f"tag {sorted(set(add) & set(remove))[0]!r} is both added and removed")
    return BulkRequest(
        action=request.action,
        actor=request.actor,
        reason=request.reason,
        cadence=request.cadence,
        add=tuple(add),
        remove=tuple(remove),
        rate=request.rate,
    )


@dataclass(frozen=True)
class Target:
    """A lead the segment matched: its id, and the tags its workflow shows (None: its workflow has ended; for
    enrol, a lead that runs again has its tags, and is enrolled already)."""

    lead_id: int
    tags: tuple[str, ...] | None


@dataclass(frozen=True)
class Outcome:
    lead_id: int
    result: Result
    detail: str = ""


@dataclass
class Summary:
    """What a bulk action did: changed, already so, failed (with why, lead by lead)."""

    action: Action
    matched: int = 0
    changed: int = 0
    already: int = 0
    failures: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def add(self, outcome: Outcome) -> None:
        if outcome.result == "changed":
            self.changed += 1
        elif outcome.result == "already":
            self.already += 1
        else:
            self.failures.append(outcome)

    def reasons(self) -> dict[str, int]:
        """Each failure's reason with how many leads it stopped, most first."""
        return dict(Counter(outcome.detail for outcome in self.failures).most_common())


def _lead_id(execution: WorkflowExecution) -> int | None:
    number = execution.id.removeprefix("lead-")
    return int(number) if number.isdigit() else None


async def targets(client: Client, segment: SavedSegment, action: Action) -> list[Target]:
    """The leads an action over the segment acts on, ordered by id: its running leads; for stop also the leads
    that match but ended (counted as stopped already); for enrol the leads that ended on a matching run."""
    if action == "enrol":
        return await ended_targets(client, segment)
    found: dict[int, Target] = {}
    async for execution in client.list_workflows(segment.query()):
        lead_id = _lead_id(execution)
        if lead_id is not None and execution.status == WorkflowExecutionStatus.RUNNING:
            found[lead_id] = Target(lead_id, tuple(execution.typed_search_attributes.get(LEAD_TAGS) or ()))
    if action == "stop":
        async for execution in client.list_workflows(segment.query(status="ended")):
            lead_id = _lead_id(execution)
            if lead_id is not None and lead_id not in found:
                found[lead_id] = Target(lead_id, None)
    return [found[lead_id] for lead_id in sorted(found)]


async def ended_targets(client: Client, segment: SavedSegment) -> list[Target]:
    """The segment's leads whose nurture ended, once each (a lead ended, re-enrolled and ended again has several
    ended runs), ordered by id. A lead counts by its latest run: ended on one the segment matched, it is a target;
    running again, it is a target enrolled already; ended since on a run the segment does not match, it is not."""
    matched: dict[int, set[str]] = {}
    async for execution in client.list_workflows(segment.query(status="ended")):
        lead_id = _lead_id(execution)
        if lead_id is not None:
            matched.setdefault(lead_id, set()).add(execution.run_id)
    ids = sorted(matched)
    found: list[Target] = []
    for start in range(0, len(ids), LATEST_BATCH):
        batch = ids[start : start + LATEST_BATCH]
        latest: dict[int, WorkflowExecution] = {}
        listed = ", ".join(f"'lead-{int(lead_id)}'" for lead_id in batch)
        async for execution in client.list_workflows(
            f"WorkflowType = 'LeadNurtureWorkflow' AND WorkflowId IN ({listed})"
        ):
            lead_id = _lead_id(execution)
            if lead_id is None or lead_id not in matched:
                continue
            seen = latest.get(lead_id)
            if seen is None or execution.start_time > seen.start_time:
                latest[lead_id] = execution
        for lead_id in batch:
            run = latest.get(lead_id)
            if run is None:  # every run deleted meanwhile (`forget`)
                continue
            if run.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
                found.append(Target(lead_id, tuple(run.typed_search_attributes.get(LEAD_TAGS) or ())))
            elif run.run_id in matched[lead_id]:
                found.append(Target(lead_id, None))
    return found


class Pace:
    """At most `rate` starts a second, evenly spaced (a burst would hit the workers and the server at once)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        if self.next_at > now:
            await asyncio.sleep(self.next_at - now)
        self.next_at = max(self.next_at, now) + self.interval


async def run_bulk(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    found: list[Target],
    request: BulkRequest,
    progress: Callable[[Outcome], Awaitable[None] | None] | None = None,
    settings: Settings | None = None,
) -> Summary:
    """Apply the (checked) request to each lead in turn at its pace; one lead's failure does not stop the rest.

    Args:
        settings: where enrol finds the cadences, scoring and task queues (enrol needs them).
    """
    if request.action == "enrol" and settings is None:
        raise BulkError("enrol needs leadloop's settings (cadences, scoring, task queues)")
    summary = Summary(action=request.action, matched=len(found))
    pace = Pace(request.rate)
    for target in found:
        await pace.wait()
        try:
            outcome = await apply(client, sessions, target, request, settings)
        except Exception as exc:  # reported with the lead, never the end of the run
            outcome = Outcome(target.lead_id, "failed", _why(exc))
        summary.add(outcome)
        if progress is not None:
            shown = progress(outcome)
            if shown is not None:
                await shown
    return summary


def _why(exc: BaseException) -> str:
    if isinstance(exc, WorkflowUpdateFailedError):
        cause = exc.cause
        return str(getattr(cause, "message", None) or cause)
    if isinstance(exc, RPCError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _ended(exc: RPCError) -> bool:
    """Temporal's answer to a workflow that ended between the listing and the action."""
    text = exc.message.lower()
    return "already completed" in text or "not found" in text


async def apply(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    target: Target,
    request: BulkRequest,
    settings: Settings | None = None,
) -> Outcome:
    """One lead: changed, already so, or failed with why."""
    lead_id = target.lead_id
    if request.action == "tag":
        return await _tag(client, sessions, target, request)
    if request.action == "enrol":
        assert settings is not None  # run_bulk: enrol has its settings
        return await _enrol(client, sessions, settings, target, request)
    if target.tags is None:
        return Outcome(lead_id, "already", "its workflow has ended")
    lead = LeadClient(client, lead_id)
    try:
        if request.action in ("pause", "resume"):
            return await _hold(lead, request)
        if request.action == "stop":
            done = await lead.stop(StopInput(actor=request.actor, reason=request.reason))
            return Outcome(lead_id, "changed" if done.applied else "already", done.outcome)
        assert request.cadence is not None  # check_request: move has its cadence
        state = await lead.state()
        if state.moving_to == request.cadence or (state.cadence == request.cadence and state.moving_to is None):
            return Outcome(lead_id, "already", f"on cadence '{request.cadence}' already")
        moved = await lead.move(MoveInput(actor=request.actor, reason=request.reason, cadence=request.cadence))
        return Outcome(lead_id, "changed" if moved.applied else "already", moved.outcome)
    except RPCError as exc:
        if _ended(exc):
            return Outcome(lead_id, "already", "its workflow has ended")
        raise


async def _enrol(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    target: Target,
    request: BulkRequest,
) -> Outcome:
    """A new run of lead-<id> on the cadence; a lead running again is enrolled already, a suppressed or erased one
    stays out (reenrol says why)."""
    lead_id = target.lead_id
    if target.tags is not None:
        return Outcome(lead_id, "already", "running again already")
    assert request.cadence is not None  # check_request: enrol has its cadence
    try:
        flow = await reenrol(sessions, client, settings, lead_id, request.cadence, request.actor or "bulk")
    except ChangeRefused as exc:
        # started since the listing (by another run of this action, or by hand): enrolled already
        if (await flow_of(client, lead_id)).running:
            return Outcome(lead_id, "already", "running again already")
        # without the lead's id, so the summary groups the leads refused for the same reason
        return Outcome(lead_id, "failed", str(exc).removeprefix(f"lead {lead_id} "))
    if flow == "already_running":
        return Outcome(lead_id, "already", "running again already")
    if flow != "started":
        return Outcome(lead_id, "failed", f"not started ({flow.replace('_', ' ')})")
    return Outcome(lead_id, "changed", f"re-enrolled on '{request.cadence}'")


async def _hold(lead: LeadClient, request: BulkRequest) -> Outcome:
    """Pause or resume: a paused lead is not paused again, a lead that is not paused is not resumed."""
    stage = (await lead.state()).stage
    if stage not in HOLDABLE:
        return Outcome(lead.lead_id, "failed", f"{stage.replace('_', ' ')}: no drip to {request.action}")
    if (stage == "paused") == (request.action == "pause"):
        return Outcome(lead.lead_id, "already", "paused already" if stage == "paused" else "not paused")
    action: Literal["pause", "resume"] = "pause" if request.action == "pause" else "resume"
    await lead.hold(action, request.reason)
    return Outcome(lead.lead_id, "changed", f"{action}d")


async def _tag(
    client: Client, sessions: async_sessionmaker[AsyncSession], target: Target, request: BulkRequest
) -> Outcome:
    """The lead's tags as a set in the database (added, removed), then its workflow told the whole set."""
    lead_id = target.lead_id
    async with sessions() as session:
        if await session.get(Lead, lead_id) is None:
            return Outcome(lead_id, "failed", "not in leadloop's database")
        before = set(await session.scalars(select(LeadTag.tag).where(LeadTag.lead_id == lead_id)))
        after = (before | set(request.add)) - set(request.remove)
        if len(after) > MAX_TAGS:
            return Outcome(lead_id, "failed", f"a lead has at most {MAX_TAGS} tags ({len(after)} with these)")
        if after != before:
            await _write_tags(session, lead_id, after - before, before - after)
            await session.commit()
    tags = sorted(after)
    # the workflow shows the set it was last told: told again when the database moved (or a run cut short left
    # the workflow behind it); an ended workflow keeps the tags it ended with, the database has the new ones
    if target.tags is not None and (after != before or list(target.tags) != tags):
        try:
            await LeadClient(client, lead_id).tags(tags, actor=request.actor)
        except RPCError as exc:
            if not _ended(exc):
                raise
    if after == before:
        return Outcome(lead_id, "already", "has these tags already")
    return Outcome(lead_id, "changed", "tags " + (", ".join(tags) or "none"))


async def _write_tags(session: AsyncSession, lead_id: int, added: set[str], removed: set[str]) -> None:
    if removed:
        await session.execute(delete(LeadTag).where(LeadTag.lead_id == lead_id, LeadTag.tag.in_(removed)))
    if added:
        rows = [{"lead_id": lead_id, "tag": tag} for tag in sorted(added)]
        # another writer may have added one of them a moment ago: the set is what matters, not who wrote it
        await session.execute(insert_for(session)(LeadTag).values(rows).on_conflict_do_nothing())


def cadence_loads(cadence_dir: Path) -> Callable[[str], bool]:
    """Whether a cadence of that name is in the folder and loads (what `move` and `enrol` may put leads on)."""

    def known(name: str) -> bool:
        try:
            load_cadence(cadence_path(cadence_dir, name))
        except RuleFileError:
            return False
        return True

    return known
