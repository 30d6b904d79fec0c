"""`leadloop setup` registers leadloop's search attributes on a cluster that lacks them, once."""

import os

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from leadloop.domain.search import SEARCH_ATTRIBUTES
from tests.conftest import BIN, _which, client_address
from tests.e2e.test_drip_whole_stack import run


@pytest.mark.e2e
async def test_setup_registers_every_search_attribute_once() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_which("temporal"), ui=False, dev_server_log_level="error"
    )
    try:
        settings = {**os.environ, "LEADLOOP_TEMPORAL_ADDRESS": client_address(env.client), "NO_COLOR": "1"}
        code, first, err = await run(str(BIN / "leadloop"), "setup", env=settings)
        assert code == 0, err
        assert first.startswith("added:") and "UnopenedStreak" in first and "RecycleCount" in first
        listed = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=env.client.namespace)
        )
        assert {k.name for k in SEARCH_ATTRIBUTES} <= set(listed.custom_attributes)
        code, again, err = await run(str(BIN / "leadloop"), "setup", env=settings)
        assert code == 0 and "all search attributes present" in again, err
    finally:
        await env.shutdown()
    code, _, err = await run(
        str(BIN / "leadloop"), "setup", env={**os.environ, "LEADLOOP_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    )
    assert code == 1 and "cannot reach Temporal" in err
