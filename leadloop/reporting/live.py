"""Leads by stage now, from Temporal's visibility: the report's one number that does not come from the database."""

import asyncio
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from leadloop.domain.models import STAGES
from leadloop.domain.search import visibility_query

VISIBILITY_TIMEOUT = 20.0


async def live_stage_counts(client: Client | None, cadence: str | None) -> tuple[dict[str, int] | None, str | None]:
    """Leads by stage now, counted with `leadloop list`'s visibility query; None and why when Temporal is not there."""
    missing = "the live stage counts are missing: "
    if client is None:
        return None, missing + "Temporal was not reachable. Everything else comes from leadloop's database."
    current = " AND (ExecutionStatus = 'Running' OR ExecutionStatus = 'Completed')"

    async def count(stage: str) -> int:
        # the query `leadloop list` runs, so both count alike
        query = visibility_query(stage, None, None, cadence) + current
        result = await client.count_workflows(query, rpc_timeout=timedelta(seconds=VISIBILITY_TIMEOUT / 2))
        return result.count

    try:
        counts = await asyncio.wait_for(asyncio.gather(*(count(s) for s in STAGES)), VISIBILITY_TIMEOUT)
    except (RPCError, RuntimeError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return (
            None,
            missing + f"Temporal's visibility did not answer ({reason}). Everything else comes from "
            "leadloop's database.",
        )
    return dict(zip(STAGES, counts, strict=True)), None
