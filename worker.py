"""Runs the Temporal worker: every leadloop workflow and activity, on the configured task queue."""

import asyncio
import gc
import logging
import signal
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.assignment import AssignmentActivities
from activities.email import EmailActivities, SmtpConfig
from activities.leads import LeadActivities
from leadloop.db import make_engine, make_sessionmaker
from leadloop.settings import Settings, get_settings
from leadloop.templates import EmailRenderer
from leadloop.temporal import connect, workflow_runner
from workflows.lead_nurture import LeadNurtureWorkflow

log = logging.getLogger("leadloop.worker")


class LeadloopWorker(Worker):
    """A worker that closes its database pool and its idle SMTP connections when it shuts down."""

    engine: AsyncEngine
    email: EmailActivities

    async def __aexit__(self, exc_type: Any, *args: Any) -> None:
        try:
            await super().__aexit__(exc_type, *args)
        finally:
            try:
                await self.email.smtp_pool.aclose()
            finally:
                await self.engine.dispose()


def build_worker(client: Client, settings: Settings, task_queue: str | None = None) -> LeadloopWorker:
    """The worker with its activities wired to the database, the templates and the SMTP relay."""
    engine = make_engine(settings.database_url, pool_pre_ping=True)
    email = EmailActivities(
        make_sessionmaker(engine),
        EmailRenderer(settings.template_dir),
        SmtpConfig.from_settings(settings),
        settings,
    )
    sales = AssignmentActivities(email.sessionmaker, settings.routing_file)
    leads = LeadActivities(email.sessionmaker, settings.cadence_dir, settings.scoring_file)
    worker = LeadloopWorker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[LeadNurtureWorkflow],
        activities=[
            email.send_email,
            email.notify_rep,
            sales.assign_lead,
            sales.close_assignment,
            leads.load_cycle,
            leads.record_disposition,
            leads.suppress_lead,
        ],
        workflow_runner=workflow_runner(),
        max_cached_workflows=settings.worker_cached_workflows,
        max_concurrent_activities=settings.worker_max_activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    worker.engine, worker.email = engine, email
    return worker


def metrics_runtime(settings: Settings) -> Runtime | None:
    """An SDK runtime serving Prometheus at http://<worker_metrics_address>/metrics: the SDK's client,
    worker, workflow and activity metrics and leadloop's own counters (`leadloop.metrics`).

    None (the SDK's default runtime, no metrics) when the address is empty or cannot be bound: a
    worker whose metrics port is taken still sends every email.
    """
    if not settings.worker_metrics_address:
        return None
    prometheus = PrometheusConfig(
        bind_address=settings.worker_metrics_address,
        # Prometheus's conventions, as the HTTP service's /metrics follows them
        counters_total_suffix=True,
        unit_suffix=True,
        durations_as_seconds=True,
    )
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    except ValueError as exc:  # address in use, or not an address this host has
        log.warning("worker metrics off: %s", exc)
        return None


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM when run alone), then shut down gracefully."""
    runtime = metrics_runtime(settings)
    client = await connect(settings, runtime=runtime)
    worker = build_worker(client, settings)
    stop = stop or _stop_on_signals()
    log.info("worker polling task queue %r on %s", settings.task_queue, settings.temporal_address)
    if runtime is not None:
        log.info("worker metrics at http://%s/metrics", settings.worker_metrics_address)
    async with worker:
        await stop.wait()
    log.info("worker stopped")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_worker(get_settings()))
    # an SDK runtime still held by a reference cycle is freed during interpreter shutdown, where its threads
    # abort the process ("PyGILState_Release: thread state must be current"): free it while Python runs
    gc.collect()


if __name__ == "__main__":
    main()
