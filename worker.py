"""Runs the Temporal worker: every leadloop workflow and activity on the configured task queue, and the sales
path's activities on the sales task queue when one is set (LEADLOOP_WORKER_ROLE picks either or both)."""

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.assignment import AssignmentActivities
from activities.email import EmailActivities, SmtpConfig
from activities.leads import LeadActivities
from activities.lifecycle import LifecycleActivities
from activities.webhooks import WebhookActivities
from leadloop.domain.templates import EmailRenderer
from leadloop.infra.db import make_engine, make_sessionmaker
from leadloop.infra.lifecycle_events import WebhookRoute
from leadloop.infra.process import run_and_exit
from leadloop.infra.settings import InsecureSettings, Settings, get_settings, setting_errors
from leadloop.infra.temporal import connect, workflow_runner
from workflows.lead_nurture import LeadNurtureWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

log = logging.getLogger("leadloop.worker")


class LeadloopWorker:
    """The worker's Temporal workers (the task queue's, the sales task queue's, or both, by
    LEADLOOP_WORKER_ROLE) as one: they share the database pool and the SMTP connections, start together
    and shut down together, and close the pool and the idle SMTP connections last."""

    def __init__(self, workers: list[Worker], engine: AsyncEngine, email: EmailActivities) -> None:
        self.workers, self.engine, self.email = workers, engine, email
        self._stack = AsyncExitStack()

    @property
    def task_queues(self) -> list[str]:
        return [worker.task_queue for worker in self.workers]

    async def __aenter__(self) -> "LeadloopWorker":
        try:
            for worker in self.workers:
                await self._stack.enter_async_context(worker)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._stack.aclose()
        finally:
            try:
                await self.email.smtp_pool.aclose()
            finally:
                await self.engine.dispose()


def build_worker(client: Client, settings: Settings, task_queue: str | None = None) -> LeadloopWorker:
    """The worker with its activities wired to the database, the templates and the SMTP relay.

    Role `nurture` polls the task queue: every workflow and every activity (leads enrolled without a sales
    task queue run their sales path there too). Role `sales` polls only LEADLOOP_SALES_TASK_QUEUE, with the
    sales path's activities, so a rep hears of a hot lead from a process the drip does not keep busy.
    Role `all` (the default) does both in one process.

    Outside the demo it refuses a signing key anyone may know or guess (InsecureSettings): every link it
    puts into an email would be forgeable, or dead once the HTTP service runs with a real key.
    """
    settings.refuse_unsafe_secrets("the worker")
    engine = make_engine(settings.database_url, pool_pre_ping=True)
    email = EmailActivities(
        make_sessionmaker(engine),
        EmailRenderer(settings.template_dir),
        SmtpConfig.from_settings(settings),
        settings,
    )
    sales = AssignmentActivities(email.sessionmaker, settings.routing_file)
    leads = LeadActivities(email.sessionmaker, settings.cadence_dir, settings.scoring_file)
    route = WebhookRoute.of(settings, task_queue)  # the same route `forget` hands its event over on
    lifecycle = LifecycleActivities(email.sessionmaker, route.retry, route.task_queue)
    webhooks = WebhookActivities(
        email.sessionmaker, settings.webhook_timeout, allow_private=settings.private_webhooks_allowed()
    )
    sales_path: list[Callable[..., Any]] = [
        lifecycle.record_goal,
        email.notify_rep,
        sales.assign_lead,
        sales.close_assignment,
        leads.record_disposition,
        leads.suppress_lead,
        leads.suppress_address,
    ]
    workers = []
    if settings.worker_role in ("all", "nurture"):
        workers.append(
            Worker(
                client,
                task_queue=task_queue or settings.task_queue,
                workflows=[LeadNurtureWorkflow, WebhookDeliveryWorkflow],
                activities=[
                    email.send_email,
                    leads.load_cycle,
                    lifecycle.announce,
                    webhooks.deliver,
                    webhooks.dead_letter,
                    *sales_path,
                ],
                workflow_runner=workflow_runner(),
                max_cached_workflows=settings.worker_cached_workflows,
                max_concurrent_activities=settings.worker_max_activities,
                graceful_shutdown_timeout=timedelta(seconds=10),
            )
        )
    if settings.worker_role in ("all", "sales") and settings.sales_task_queue:
        workers.append(
            Worker(
                client,
                task_queue=settings.sales_task_queue,
                activities=sales_path,
                max_concurrent_activities=settings.worker_max_activities,
                graceful_shutdown_timeout=timedelta(seconds=10),
            )
        )
    return LeadloopWorker(workers, engine, email)


def metrics_runtime(settings: Settings) -> Runtime | None:
    """An SDK runtime serving Prometheus at http://<worker_metrics_address>/metrics: the SDK's client,
    worker, workflow and activity metrics and leadloop's own counters (`leadloop.domain.metrics`).

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
    log.info(
        "worker (role %s) polling task queue %s on %s",
        settings.worker_role,
        " and ".join(map(repr, worker.task_queues)),
        settings.temporal_address,
    )
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
    try:
        settings = get_settings()
    except ValidationError as exc:  # one line per bad setting, no traceback
        for line in setting_errors(exc):
            print(f"worker: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    try:  # before connecting: the refusal is the one thing to say
        settings.refuse_unsafe_secrets("the worker")
    except InsecureSettings as exc:
        raise SystemExit(str(exc)) from None  # run_and_exit prints it, exit 1
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    run_and_exit(
        main
    )  # past the interpreter's teardown, where the SDK's threads can abort it (leadloop/infra/process.py)
