"""scripts/ui_screenshot.py against a real dev server with its UI: a running lead's page rendered into a PNG."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop.domain.cadence import Cadence, Escalation
from leadloop.domain.models import EngagementEvent as Event
from leadloop.domain.models import EngagementInput, LeadState
from leadloop.domain.search import SEARCH_ATTRIBUTES
from leadloop.infra.db import Lead
from leadloop.infra.temporal import workflow_runner
from leadloop.services.enrollment import start_lead, workflow_id
from scripts.ui_screenshot import plain, png_size, take_screenshot
from tests.conftest import BIN, _which, client_address, free_port, with_pydantic
from tests.e2e.test_drip_whole_stack import run
from tests.e2e.test_operator_cli import SCORING, send_email  # the operator tests' scoring and fake send
from tests.lifecycle_log import announce_lifecycle
from workflows.lead_nurture import LeadNurtureWorkflow

SCRIPT = str(Path(__file__).parents[2] / "scripts" / "ui_screenshot.py")
CADENCE = Cadence.model_validate(
    {
        "name": "shot",
        "version": 1,
        "send_window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"},
        "steps": [
            {"id": "welcome", "wait": "0", "template": "welcome", "subject": "hi"},
            {"id": "tips", "wait": "1d", "template": "tips", "subject": "hi"},
            {"id": "case-study", "wait": "60d", "template": "case-study", "subject": "hi"},
        ],
        "escalation": Escalation(threshold=500).model_dump(),
    }
)


@pytest.fixture
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A dev server of its own, serving its UI on a free port (the shared `dev_env` has none)."""
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_which("temporal"),
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
        ui=True,
        ui_port=ui_port,
    )
    ui = f"http://127.0.0.1:{ui_port}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(100):  # the UI comes up moments after the frontend
                try:
                    if (await http.get(ui)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield env, ui
    finally:
        await env.shutdown()


def is_png_of_at_least(path: Path, width: int, height: int) -> bool:
    shot_width, shot_height = png_size(path.read_bytes())
    return shot_width >= width and shot_height >= height


@pytest.mark.e2e
async def test_screenshot_shows_a_running_leads_page_and_bad_input_writes_nothing(
    ui_env: tuple[WorkflowEnvironment, str], tmp_path: Path
) -> None:
    env, ui = ui_env
    client = with_pydantic(env.client)
    address = client_address(env.client)
    queue = f"shot-{uuid.uuid4()}"
    lead_id = 8101
    wid = workflow_id(lead_id)
    cli_env = {**os.environ, "LEADLOOP_TEMPORAL_ADDRESS": address, "LEADLOOP_TEMPORAL_NAMESPACE": client.namespace}
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LeadNurtureWorkflow],
        activities=[send_email, announce_lifecycle],
        workflow_runner=workflow_runner(),
    ):
        lead = Lead(
            id=lead_id,
            email="x@example.com",
            timezone="Europe/Athens",
            industry="software",
            company="Ακρόπολις Λογισμικό",
        )
        # a cadence day lasts a second: two emails out, then two months to the third
        await start_lead(client, lead, CADENCE, task_queue=queue, time_scale=86400, source="test", scoring=SCORING)
        handle = client.get_workflow_handle(wid)
        click = Event(id="c1", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/pricing")
        await handle.signal("engagement", EngagementInput(events=[click]))
        for _ in range(200):
            state = await handle.query("state", result_type=LeadState)
            if state.sends == 2 and state.score.total == 50:
                break
            await asyncio.sleep(0.1)
        assert (state.sends, state.score.total) == (2, 50)

        # the function, as a test or a notebook calls it
        out = tmp_path / "lead.png"
        shot = await take_screenshot(
            str(lead_id), out, ui_url=ui, namespace=client.namespace, address=address, width=1280, height=720
        )
        assert out.exists() and is_png_of_at_least(out, 1280, 720)
        assert (shot.width, shot.height) == png_size(out.read_bytes())
        assert shot.workflow_id == wid and shot.run_id == (await handle.describe()).run_id
        assert shot.warnings == []
        shown = plain(shot.text)
        assert wid in shown
        assert f"lead {lead_id} · cadence shot v1" in shown  # the static summary
        assert f"lead {lead_id} at Ακρόπολις Λογισμικό; cadence 'shot' (3 steps)" in shown  # the static details
        assert "nurturing: step 3 of 3 'case-study', next email" in shown  # the current details
        assert "score 50/500" in shown and "2 sent" in shown

        # the command, as `make screenshot` runs it: the history tab shows every timer's and send's summary
        script = (str(BIN / "python"), SCRIPT)
        history = tmp_path / "shots" / "history.png"
        code, stdout, err = await run(
            *script,
            wid,
            "--ui-url",
            ui,
            "--tab",
            "history",
            "-o",
            str(history),
            "--width",
            "1600",
            "--height",
            "600",
            "--text",
            env=cli_env,
        )
        assert code == 0, err
        assert stdout.startswith(f"{history}: {wid} (run ")
        assert history.exists() and is_png_of_at_least(history, 1600, 600)
        shown = plain(stdout)
        assert "send step 2 of 3 'tips' (tips)" in shown and "wait 1d →" in shown
        assert "Workflow Execution Started" in shown

        # bad input: one clear line, exit status 1, nothing written (the three run side by side)
        nothing = tmp_path / "none" / "x.png"
        dead_ui = f"http://127.0.0.1:{free_port()}"
        unknown, unreachable, no_browser = await asyncio.gather(
            run(*script, "999999", "--ui-url", ui, "-o", str(nothing), env=cli_env),
            run(*script, str(lead_id), "--ui-url", dead_ui, "-o", str(nothing), env=cli_env),
            run(
                *script,
                str(lead_id),
                "--ui-url",
                ui,
                "-o",
                str(nothing),
                "--chromium",
                str(tmp_path / "no-chromium"),
                env=cli_env,
            ),
        )
        code, stdout, err = unknown
        assert (code, stdout) == (1, "")
        assert err == f"ui_screenshot: error: workflow lead-999999 not found in namespace 'default' at {address}\n"
        code, _, err = unreachable
        assert code == 1 and err.count("\n") == 1
        assert err.startswith(f"ui_screenshot: error: the Temporal UI at {dead_ui} is unreachable")
        code, _, err = no_browser
        assert code == 1 and err.count("\n") == 1 and "chromium not found at" in err
        assert not nothing.parent.exists()
        await handle.terminate("test over")
