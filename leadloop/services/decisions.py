"""A rep's accept or reject, sent to the lead's workflow as an update; refusals become one clear message."""

from typing import Literal

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from leadloop.domain.models import RepActionInput, RepActionResult
from leadloop.services.lead_client import LeadClient


class DecisionRefused(Exception):
    """The action cannot apply: wrong rep, lead no longer with sales, unknown reason, unknown lead."""


async def decide(
    client: Client, lead_id: int, action: Literal["accept", "reject"], request: RepActionInput
) -> RepActionResult:
    lead = LeadClient(client, lead_id)
    try:
        return await lead.decide(action, request)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise DecisionRefused(getattr(cause, "message", None) or str(cause)) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND and "workflow" in exc.message.lower() and "update" not in exc.message:
            raise DecisionRefused(f"lead {lead_id} has no workflow") from None
        # an ended workflow takes no update: say what became of the lead
        try:
            state = await lead.state()
        except RPCError:
            raise DecisionRefused(f"lead {lead_id} has no workflow") from None
        stage = state.stage.replace("_", " ")
        raise DecisionRefused(f"lead {lead_id} is {stage}, not with sales: nothing to {action}") from None
