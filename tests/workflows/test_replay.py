"""Replay safety: every saved history must replay on today's workflow code without a nondeterminism error."""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from leadloop.infra.temporal import workflow_runner
from workflows.lead_nurture import LeadNurtureWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_there_are_saved_histories() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "drip-complete",
        "hard-bounce-suppressed",
        "policy-refusal-blocked-then-retried",
        "uncertain-send",
        "escalation-lapse-reassign-unsubscribe",
        "reject-not-ready-recycled",
        "big-bang-unanswered-dormant",
        "paused-then-resumed",
        "continue-as-new-suggested",
        "escalation-reminder-lapse-unsubscribe",
        "rep-clock-reject-recycled",
        # recorded after the workflow became a state machine (lifecycle rules, sales path in its own module)
        "state-machine-drip-complete",
        "state-machine-reject-recycled",
        "state-machine-accept-converted",
        "state-machine-held-then-fixed",
        # recorded after inbound mail acted on the lead (workflow.patched "inbound-effects")
        "inbound-reply-handover-accepted",
        "inbound-auto-reply-paused",
        "inbound-hard-bounce-suppressed",
        "inbound-soft-bounces-suppressed",
        # recorded after mail coming as the next cycle loads was acted on ("inbound-pending-before-new-run") and an
        # out-of-office paused in cadence time ("out-of-office-cadence-time")
        "inbound-reply-while-next-cycle-loads",
        "inbound-out-of-office-demo-speed-while-next-cycle-loads",
        "inbound-left-company-paused-fresh-history",
        # recorded after the CRM's side ("crm-lifecycle"): lifecycle events, keep in touch, goals, moves, stops
        "crm-reject-not-ready-with-recontact-date",
        "crm-keep-in-touch-back-to-rep-goal-converted",
        "crm-tags-category-owner-moved",
        "crm-moved-lead-stopped",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_saved_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=[LeadNurtureWorkflow], workflow_runner=workflow_runner(), data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


async def test_escalation_replays_after_scoring_yaml_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each workflow scores with the snapshot of scoring.yaml taken at enrolment, kept in its history's
    input: an edit of the file (here, every rule worth nothing) cannot change a past escalation."""
    import json

    from leadloop.infra.settings import get_settings

    path = Path(__file__).parent.parent / "histories" / "escalation-lapse-reassign-unsubscribe.json"
    events = json.loads(path.read_text())["events"]
    started = events[0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["data"]
    import base64

    snapshot = json.loads(base64.b64decode(started))["scoring"]
    assert snapshot["engagement"][0]["points"] == 15  # the rules that decided, inside the history
    edited = tmp_path / "scoring.yaml"
    edited.write_text("version: 2\nengagement:\n  - {name: click, kind: click, points: 0}\n")
    monkeypatch.setenv("LEADLOOP_SCORING_FILE", str(edited))
    get_settings.cache_clear()
    try:
        assert get_settings().scoring_file == edited
        history = WorkflowHistory.from_json("replay-escalation", path.read_text())
        replayer = Replayer(
            workflows=[LeadNurtureWorkflow], workflow_runner=workflow_runner(), data_converter=pydantic_data_converter
        )
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    finally:
        get_settings.cache_clear()
    assert result.replay_failure is None, result.replay_failure
    kinds = [e["eventType"] for e in events]
    # one send, then assign + notify + lapse, assign + notify, and the close on unsubscribe
    assert kinds.count("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED") == 7


async def replay(name: str) -> object:
    path = Path(__file__).parent.parent / "histories" / f"{name}.json"
    history = WorkflowHistory.from_json(f"replay-{name}", path.read_text())
    replayer = Replayer(
        workflows=[LeadNurtureWorkflow], workflow_runner=workflow_runner(), data_converter=pydantic_data_converter
    )
    return (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure


@pytest.mark.parametrize("forced", [True, False])
async def test_the_rep_reminder_is_guarded_by_its_patch_both_ways(
    forced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The halfway reminder to a rep (workflow.patched "rep-reminder-halfway") changed what the workflow does
    while a lead waits for its rep. A lead handed over before the change has no patch marker: it must take the
    old path (one wait) or its replay breaks; a lead handed over after it has the marker and must take the new
    path. Forcing the patch either way shows both histories depend on the guard."""
    from temporalio import workflow

    from workflows.sales import REP_REMINDER_PATCH

    old, new = "escalation-lapse-reassign-unsubscribe", "escalation-reminder-lapse-unsubscribe"
    assert await replay(old) is None and await replay(new) is None  # as written: both replay
    real = workflow.patched

    def patched(patch_id: str) -> bool:
        return forced if patch_id == REP_REMINDER_PATCH else real(patch_id)

    monkeypatch.setattr(workflow, "patched", patched)
    failure = await replay(old if forced else new)
    assert failure is not None and "nondetermin" in str(failure).lower(), failure


@pytest.mark.parametrize(
    "name",
    [
        "inbound-reply-handover-accepted",
        "inbound-auto-reply-paused",
        "inbound-hard-bounce-suppressed",
        "inbound-soft-bounces-suppressed",
    ],
)
async def test_inbound_effects_are_guarded_by_their_patch(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lead whose workflow only counted inbound messages (no "inbound-effects" marker in its history) must go on
    only counting when it replays; these histories have the marker, and without the guard's answer their hand-over,
    pause or suppression no longer matches what they recorded."""
    from temporalio import workflow

    from workflows.lead_nurture import INBOUND_EFFECTS_PATCH

    assert await replay(name) is None
    real = workflow.patched
    monkeypatch.setattr(
        workflow, "patched", lambda patch_id: False if patch_id == INBOUND_EFFECTS_PATCH else real(patch_id)
    )
    failure = await replay(name)
    assert failure is not None and "nondetermin" in str(failure).lower(), failure


@pytest.mark.parametrize("name", ["inbound-reply-while-next-cycle-loads", "inbound-left-company-paused-fresh-history"])
async def test_mail_pending_before_a_new_run_is_guarded_by_its_patch(name: str) -> None:
    """A lead whose run went on into a new one with a reply or a left-company hold pending (no
    "inbound-pending-before-new-run" marker) must go on continuing as new when it replays; these histories have the
    marker, and without the guard's answer their hand-over or hold no longer matches the continue-as-new the old
    code would command."""
    from temporalio import workflow

    from workflows.lead_nurture import PENDING_BEFORE_NEW_RUN_PATCH

    assert await replay(name) is None
    real = workflow.patched
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            workflow, "patched", lambda patch_id: False if patch_id == PENDING_BEFORE_NEW_RUN_PATCH else real(patch_id)
        )
        failure = await replay(name)
    assert failure is not None and "nondetermin" in str(failure).lower(), failure


@pytest.mark.parametrize(
    "name", ["crm-reject-not-ready-with-recontact-date", "crm-tags-category-owner-moved", "crm-moved-lead-stopped"]
)
async def test_lifecycle_announcements_are_guarded_by_their_patch(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leads started before the CRM's webhooks (no "crm-lifecycle" marker) announce nothing when they replay; these
    histories have the marker, and without the guard's answer their announcements no longer match."""
    from temporalio import workflow

    from workflows.lead_nurture import LIFECYCLE_PATCH

    assert await replay(name) is None
    real = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch_id: False if patch_id == LIFECYCLE_PATCH else real(patch_id))
    failure = await replay(name)
    assert failure is not None and "nondetermin" in str(failure).lower(), failure
