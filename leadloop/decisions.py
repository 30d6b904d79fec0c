"""A rep's accept or reject, sent to the lead's workflow as an update; refusals become one clear message."""

from typing import Literal

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from leadloop.enrollment import workflow_id
from leadloop.models import LeadState, RepActionInput, RepActionResult


class DecisionRefused(Exception):
    """The action cannot apply: wrong rep, lead no longer with sales, unknown reason, unknown lead."""


async def decide(
    client: Client, lead_id: int, action: Literal["accept", "reject"], request: RepActionInput
) -> RepActionResult:
    handle = client.get_workflow_handle(workflow_id(lead_id))
    try:
        result: RepActionResult = await handle.execute_update(action, request, result_type=RepActionResult)
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise DecisionRefused(getattr(cause, "message", None) or str(cause)) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND and "workflow" in exc.message.lower() and "update" not in exc.message:
            raise DecisionRefused(f"lead {lead_id} has no workflow") from None
        # an ended workflow takes no update: say what became of the lead
        try:
            state: LeadState = await handle.query("state", result_type=LeadState)
        except RPCError:
            raise DecisionRefused(f"lead {lead_id} has no workflow") from None
        stage = state.stage.replace("_", " ")
        raise DecisionRefused(f"lead {lead_id} is {stage}, not with sales: nothing to {action}") from None
