"""An operator's hand on lead workflows: hold or resume a drip, tell leads waiting for a rep to route again."""

from typing import Literal

from temporalio.client import Client
from temporalio.service import RPCError

from leadloop.services.lead_client import LeadClient

#: The stages in which a lead has a drip an operator can pause or resume.
HOLDABLE = ("nurturing", "paused", "send_blocked", "big_bang")


class HoldRefused(Exception):
    """The lead is in a stage without a drip (with sales, dormant, ended): nothing to pause or resume."""


async def hold_drip(client: Client, lead_id: int, action: Literal["pause", "resume"], note: str = "") -> None:
    """Pause or resume the lead's drip; Temporal's `RPCError` when the lead has no workflow."""
    lead = LeadClient(client, lead_id)
    before = await lead.state()
    if before.stage not in HOLDABLE:
        raise HoldRefused(f"lead {lead_id} is {before.stage.replace('_', ' ')}: there is no drip to {action}")
    await lead.hold(action, note)


async def reroute_waiting(client: Client, lead_ids: list[int]) -> int:
    """Tell leads waiting for a rep that reps changed; a lead whose workflow is gone is skipped. Returns how
    many were told."""
    told = 0
    for lead_id in lead_ids:
        try:
            await LeadClient(client, lead_id).reroute()
            told += 1
        except RPCError:
            continue
    return told
