"""The worker's /metrics: a real worker on the time-skipping server, real activities, SQLite, a real SMTP server."""

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

import worker as worker_module
from leadloop.domain.cadence import Cadence, Sender, SendWindow, Step
from leadloop.domain.models import EngagementEvent, EngagementInput, LeadNurtureResult, LeadState
from leadloop.infra.db import Lead, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.temporal import connect, workflow_runner
from leadloop.services.enrollment import start_lead, workflow_id
from tests.conftest import SmtpServer, client_address, free_port
from workflows.lead_nurture import LeadNurtureWorkflow

ALWAYS = SendWindow(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="23:59")  # type: ignore[arg-type]
SENDER = Sender(name="Demo", address="demo@leadloop.example")
ONE_STEP = Cadence(
    name="once",
    version=1,
    send_window=ALWAYS,
    sender=SENDER,
    steps=[Step(id="hello", wait="0", template="welcome", subject="hello")],
)  # type: ignore[arg-type]
TWO_STEPS = Cadence(
    name="twice",
    version=1,
    send_window=ALWAYS,
    sender=SENDER,
    steps=[
        Step(id="hello", wait="0", template="welcome", subject="hello"),
        Step(id="later", wait="30d", template="tips", subject="later"),
    ],
)  # type: ignore[arg-type]


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples named `name` whose labels include `labels`."""
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


@pytest.fixture
def free_runtimes() -> Iterator[None]:
    """A custom SDK runtime left for interpreter shutdown to free aborts the process: free it after each test."""
    yield
    gc.collect()


@pytest.fixture
async def metrics_worker(
    time_skipping_env: WorkflowEnvironment, smtp: SmtpServer, make_settings: Any, free_runtimes: None
) -> AsyncIterator[tuple[Client, Any, str, str]]:
    address = f"127.0.0.1:{free_port()}"
    settings = make_settings(
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        temporal_address=client_address(time_skipping_env.client),
        worker_metrics_address=address,
    )
    await upgrade_database(settings.database_url)
    runtime = worker_module.metrics_runtime(settings)
    assert runtime is not None
    client = await connect(settings, runtime=runtime)
    engine = make_engine(settings.database_url)
    async with worker_module.build_worker(client, settings):
        yield client, make_sessionmaker(engine), settings.task_queue, address
    await engine.dispose()


async def add_lead(sessionmaker: Any) -> Lead:
    async with sessionmaker() as session:
        lead = Lead(
            email=f"{uuid.uuid4().hex[:8]}@example.com", first_name="Μαρία", timezone="Europe/Athens", attributes={}
        )
        session.add(lead)
        await session.commit()
        return lead


async def scrape(address: str) -> str:
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"http://{address}/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return reply.text


async def test_worker_serves_sdk_metrics_and_leadloops_counters(metrics_worker: Any) -> None:
    client, sessionmaker, task_queue, address = metrics_worker
    done, unsubscribing = await add_lead(sessionmaker), await add_lead(sessionmaker)
    await start_lead(client, done, ONE_STEP, task_queue=task_queue, time_scale=1000, source="test")
    await start_lead(client, unsubscribing, TWO_STEPS, task_queue=task_queue, time_scale=1000, source="test")
    finished = client.get_workflow_handle(workflow_id(done.id), result_type=LeadNurtureResult)
    assert (await asyncio.wait_for(finished.result(), 60)).stage == "cadence_complete"
    handle = client.get_workflow_handle(workflow_id(unsubscribing.id), result_type=LeadNurtureResult)
    for _ in range(200):
        if (await handle.query("state", result_type=LeadState)).sends == 1:
            break
        await asyncio.sleep(0.05)
    event = EngagementEvent(id="u1", kind="unsubscribe", human=True, at=datetime.now(UTC))
    await handle.signal("engagement", EngagementInput(events=[event]))
    assert (await asyncio.wait_for(handle.result(), 60)).stage == "suppressed"

    text = await scrape(address)
    assert samples(text, "leadloop_emails_sent_total", cadence="once", step="hello", status="sent") == [1]
    assert samples(text, "leadloop_emails_sent_total", cadence="twice", step="hello", status="sent") == [1]
    assert samples(text, "leadloop_emails_sent_total", step="later") == []  # unsubscribed before it
    assert samples(text, "leadloop_leads_finished_total", stage="cadence_complete") == [1]
    assert samples(text, "leadloop_leads_finished_total", stage="suppressed") == [1]
    assert samples(text, "leadloop_unsubscribes_applied_total", stage="nurturing") == [1]
    # the SDK's own: the worker, its workflows and activities, its client's requests
    assert samples(text, "temporal_workflow_completed_total", workflow_type="LeadNurtureWorkflow") == [2]
    assert {"temporal_activity_execution_latency_seconds", "temporal_request", "temporal_workflow_completed"} <= (
        families(text)
    )
    # no lead ids and no addresses in any label
    assert done.email not in text and f"lead-{done.id}" not in text


async def test_worker_process_serves_metrics_and_exits_cleanly(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """`python worker.py`: /metrics while it runs; on SIGTERM a clean exit (the runtime is freed in time)."""
    import os
    import signal
    import sys

    from leadloop import PROJECT_ROOT

    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(time_skipping_env.client),
        "LEADLOOP_TASK_QUEUE": f"tq-{uuid.uuid4()}",
        "LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}",
        "LEADLOOP_WORKER_METRICS_ADDRESS": address,
        "LEADLOOP_SECRET_KEY": "a-worker-test-secret-of-32-bytes+",  # outside the demo the default is refused
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", env=env, cwd=PROJECT_ROOT, stderr=asyncio.subprocess.PIPE
    )
    try:
        text = ""
        for _ in range(200):  # until the worker has started polling
            try:
                text = await scrape(address)
            except httpx.TransportError:
                pass
            if "temporal_worker_start_total" in text:
                break
            await asyncio.sleep(0.1)
        assert "temporal_worker_start_total" in text
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()[-2000:]
    assert b"Fatal Python error" not in err and b"worker metrics at http://" in err


async def test_a_taken_metrics_port_leaves_the_worker_without_metrics_not_stopped(
    make_settings: Any, free_runtimes: None
) -> None:
    address = f"127.0.0.1:{free_port()}"
    first = worker_module.metrics_runtime(make_settings(worker_metrics_address=address))
    assert first is not None
    assert worker_module.metrics_runtime(make_settings(worker_metrics_address=address)) is None
    assert worker_module.metrics_runtime(make_settings(worker_metrics_address="")) is None
    del first


def test_metrics_address_must_be_host_and_port(make_settings: Any) -> None:
    from pydantic import ValidationError

    for bad in ("9464", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ":9464"):
        with pytest.raises(ValidationError, match="host:port"):
            make_settings(worker_metrics_address=bad)


async def test_replaying_a_history_counts_nothing_again(free_runtimes: None) -> None:
    """The workflow's counters go through the replay-safe meter: a replayed run adds nothing."""
    from temporalio.client import WorkflowHistory
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig

    buffer = MetricBuffer(10_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    histories = Path(__file__).parent / "histories"
    replayer = Replayer(
        workflows=[LeadNurtureWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    for name in ("drip-complete", "reject-not-ready-recycled", "escalation-lapse-reassign-unsubscribe"):
        history = WorkflowHistory.from_json(name, (histories / f"{name}.json").read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None
    counted = {update.metric.name for update in buffer.retrieve_updates()}
    assert not {name for name in counted if name.startswith("leadloop_")}
