"""The typed way to reach a lead's workflow: every signal, update and query by the workflow's own method."""

from typing import Literal

from temporalio.client import Client, WorkflowHandle

from leadloop.domain.models import (
    ChangeResult,
    EngagementEvent,
    EngagementInput,
    GoalInput,
    InboundInput,
    LeadNurtureResult,
    LeadState,
    MoveInput,
    OwnerInput,
    PauseInput,
    ProfileUpdatedInput,
    RepActionInput,
    RepActionResult,
    RerouteInput,
    RetrySendInput,
    StopInput,
    TagsInput,
)
from leadloop.services.enrollment import workflow_id
from workflows.lead_nurture import LeadNurtureWorkflow

LeadHandle = WorkflowHandle[LeadNurtureWorkflow, LeadNurtureResult]


class LeadClient:
    """One lead's workflow, reached through a Temporal client; a renamed handler is a type error here.

    Errors are Temporal's own (`RPCError` NOT_FOUND when the lead has no workflow, `WorkflowUpdateFailedError`
    when an update's validator refuses): each caller says what they mean to its user.
    """

    def __init__(self, client: Client, lead_id: int) -> None:
        self.lead_id = lead_id
        self.handle: LeadHandle = client.get_workflow_handle_for(LeadNurtureWorkflow.run, workflow_id(lead_id))

    async def state(self) -> LeadState:
        return await self.handle.query(LeadNurtureWorkflow.state)

    async def engagement(self, events: list[EngagementEvent]) -> None:
        await self.handle.signal(LeadNurtureWorkflow.engagement, EngagementInput(events=events))

    async def inbound(self, message: InboundInput) -> None:
        """A stored inbound message matched to this lead (reply, auto-reply, bounce, complaint)."""
        await self.handle.signal(LeadNurtureWorkflow.inbound, message)

    async def profile_updated(self, fields: list[str]) -> None:
        await self.handle.signal(LeadNurtureWorkflow.profile_updated, ProfileUpdatedInput(fields=fields))

    async def reroute(self) -> None:
        await self.handle.signal(LeadNurtureWorkflow.reroute, RerouteInput())

    async def retry_send(self, note: str = "") -> None:
        await self.handle.signal(LeadNurtureWorkflow.retry_send, RetrySendInput(note=note))

    async def hold(self, action: Literal["pause", "resume"], note: str = "") -> None:
        """An operator's pause or resume of the drip."""
        handler = LeadNurtureWorkflow.pause if action == "pause" else LeadNurtureWorkflow.resume
        await self.handle.signal(handler, PauseInput(note=note))

    async def decide(self, action: Literal["accept", "reject"], request: RepActionInput) -> RepActionResult:
        """A rep's accept or reject, as the workflow's update (its validator refuses what cannot apply)."""
        update = LeadNurtureWorkflow.accept if action == "accept" else LeadNurtureWorkflow.reject
        return await self.handle.execute_update(update, request)

    async def goal(self, request: GoalInput) -> ChangeResult:
        """A goal reached outside leadloop: nurture ends as an accept ends it."""
        return await self.handle.execute_update(LeadNurtureWorkflow.goal, request)

    async def stop(self, request: StopInput) -> ChangeResult:
        """Stop the lead's nurture for good, with a reason."""
        return await self.handle.execute_update(LeadNurtureWorkflow.stop, request)

    async def change_owner(self, request: OwnerInput) -> ChangeResult:
        return await self.handle.execute_update(LeadNurtureWorkflow.change_owner, request)

    async def move(self, request: MoveInput) -> ChangeResult:
        """Another cadence from its first step, at the next step boundary."""
        return await self.handle.execute_update(LeadNurtureWorkflow.move, request)

    async def tags(self, tags: list[str], actor: str = "") -> None:
        """The lead's tags as the database now holds them."""
        await self.handle.signal(LeadNurtureWorkflow.tags, TagsInput(tags=tags, actor=actor))
