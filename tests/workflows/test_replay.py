"""Replay safety: every saved history must replay on today's workflow code without a nondeterminism error."""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from leadloop.temporal import workflow_runner
from workflows.lead_nurture import LeadNurtureWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_there_are_saved_histories() -> None:
    names = {p.stem for p in HISTORIES}
    assert {"drip-complete", "hard-bounce-suppressed", "policy-refusal-blocked-then-retried", "uncertain-send"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_saved_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=[LeadNurtureWorkflow], workflow_runner=workflow_runner(), data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"
