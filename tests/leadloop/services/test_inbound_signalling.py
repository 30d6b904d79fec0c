"""The inbound pipeline's signal step against a real Temporal server, on SQLite and PostgreSQL: a row that can never
be signalled is set aside with why and the rest go on; Temporal being down leaves every row pending."""

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    RetryConfig,
    SignalWorkflowInput,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from leadloop.domain.matching import Match
from leadloop.infra.db import InboundMessage
from leadloop.services.enrollment import workflow_id
from leadloop.services.inbound import store_inbound
from leadloop.services.inbound_delivery import InboundRelay, signal_pending
from tests.conftest import _which, client_address, with_pydantic
from tests.leadloop.services.test_inbound import NOW, RAW, add_lead


class Refuse(Interceptor):
    """Temporal refusing the signals to some workflows for the message itself (as it answers an oversized one)."""

    def __init__(self, workflow_ids: set[str]) -> None:
        self.workflow_ids = workflow_ids

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        refused = self.workflow_ids

        class Outbound(OutboundInterceptor):
            async def signal_workflow(self, input: SignalWorkflowInput) -> None:
                if input.id in refused:
                    raise RPCError("payload exceeds the size limit", RPCStatusCode.INVALID_ARGUMENT, b"")
                await super().signal_workflow(input)

        return Outbound(next)


def refusing(client: Client, *workflow_ids: str) -> Client:
    config = client.config()
    config["interceptors"] = [Refuse(set(workflow_ids))]
    return Client(**config)


async def running(client: Client, lead_id: int) -> WorkflowHandle[Any, Any]:
    """A running workflow under the lead's id (no worker needed: the server keeps its signals in the history)."""
    return await client.start_workflow("LeadNurtureWorkflow", id=workflow_id(lead_id), task_queue=f"q-{uuid.uuid4()}")


async def signalled(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The ids of the inbound messages the workflow's history holds, in order."""
    history = await handle.fetch_history()
    ids = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attributes = event.workflow_execution_signaled_event_attributes
            assert attributes.signal_name == "inbound"
            ids.append(str(json.loads(attributes.input.payloads[0].data)["id"]))
    return ids


async def add(sessionmaker: Any, lead_id: int, key: str, kind: str | None, **evidence: Any) -> int:
    async with sessionmaker() as session:
        stored = await store_inbound(
            session,
            source="imap",
            source_key=key,
            raw=RAW,
            received_at=NOW,
            match=Match(reason="In-Reply-To", outbox_key=None, lead_id=lead_id),
            kind=kind,
            evidence=evidence,
        )
        await session.commit()
        return stored.id


async def statuses(sessionmaker: Any) -> dict[int, tuple[str, str | None]]:
    """Each row's status, and why it was set aside."""
    async with sessionmaker() as session:
        found = (await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars()
        return {row.id: (row.status, (row.evidence or {}).get("ignored")) for row in found}


async def test_a_row_that_can_never_be_signalled_is_set_aside_and_the_rest_are_signalled(
    sessionmaker: Any, time_skipping_env: WorkflowEnvironment
) -> None:
    client = with_pydantic(time_skipping_env.client)
    anna, bob, cleo, dora = [
        await add_lead(sessionmaker, f"{name}@example.com") for name in ("anna", "bob", "cleo", "dora")
    ]
    anna_wf, cleo_wf, dora_wf = [await running(client, lead) for lead in (anna, cleo, dora)]
    unclassified = await add(sessionmaker, anna, "1", None, reply_text="unsubscribe me")
    unknown_kind = await add(sessionmaker, anna, "2", "newsletter")
    no_workflow = await add(sessionmaker, bob, "3", "human_reply", reply_text="yes")
    refused = await add(sessionmaker, cleo, "4", "human_reply", reply_text="yes, call me")
    reply = await add(sessionmaker, anna, "5", "auto_reply")
    bounce = await add(sessionmaker, dora, "6", "hard_bounce")

    assert await signal_pending(sessionmaker, refusing(client, workflow_id(cleo))) == 2

    found = await statuses(sessionmaker)
    assert found[unclassified] == ("ignored", "cannot be signalled: it was never classified: no kind to signal")
    assert found[unknown_kind][0] == "ignored" and "kind" in (found[unknown_kind][1] or "")
    assert "newsletter" not in (found[unknown_kind][1] or "")  # the reason names the field, not what was in it
    assert found[no_workflow] == ("ignored", "the lead has no running workflow")
    assert found[refused] == (
        "ignored",
        "Temporal refused its signal (INVALID_ARGUMENT: payload exceeds the size limit)",
    )
    assert found[reply][0] == found[bounce][0] == "signalled"
    # nothing unclassified reached anna as a human reply: only her auto-reply did
    assert await signalled(anna_wf) == [f"inbound-{reply}"]
    assert await signalled(cleo_wf) == []
    assert await signalled(dora_wf) == [f"inbound-{bounce}"]
    # the set-aside rows are not tried again
    assert await signal_pending(sessionmaker, client) == 0
    assert await signalled(cleo_wf) == []


async def test_temporal_down_stops_the_pass_and_every_row_stays_pending(
    sessionmaker: Any, time_skipping_env: WorkflowEnvironment
) -> None:
    client = with_pydantic(time_skipping_env.client)
    anna = await add_lead(sessionmaker, "anna@example.com")
    handle = await running(client, anna)
    ids = [await add(sessionmaker, anna, str(n), "human_reply", reply_text=f"reply {n}") for n in range(3)]
    gone = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=_which("temporal-test-server"))
    down = await Client.connect(
        client_address(gone.client),
        retry_config=RetryConfig(initial_interval_millis=10, max_interval_millis=20, max_retries=1),
        data_converter=client.data_converter,
    )
    await gone.shutdown()  # a client that was connected, and a server that went away

    with pytest.raises(RPCError) as raised:
        await signal_pending(sessionmaker, down)
    assert raised.value.status == RPCStatusCode.UNAVAILABLE

    async def unreachable() -> Client:
        return down

    assert await InboundRelay(sessionmaker, unreachable).signal() == 0  # logged; the relay goes on later
    assert await statuses(sessionmaker) == {row: ("pending", None) for row in ids}

    assert await signal_pending(sessionmaker, client) == 3  # Temporal is back: all of them, in order
    assert await signalled(handle) == [f"inbound-{row}" for row in ids]
