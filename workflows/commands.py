"""What the lead workflow asks of Temporal: activities (one options helper per task queue) and durable waits."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy

P = TypeVar("P")
R = TypeVar("R")

#: SMTP 4xx and lost connections retry with backoff, without limit: a relay that is down for an
#: hour must not lose the email. Permanent refusals are raised non-retryable by the activity.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
#: Database work (routing, a new cycle's snapshots, decisions) that retries until it succeeds.
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
#: The halfway reminder to a rep is worth a few tries, not a wait that delays the rep's decision.
REMINDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
ACTIVITY_TIMEOUT = timedelta(seconds=30)
#: The sales path (routing, the rep's notification, decisions) and unsubscribes go ahead of the drip's sends when the
#: task queue has a backlog: a rep hears of a hot lead in well under a second even while thousands of
#: nurture emails are queued. The drip keeps the default priority (3). Leads enrolled with a sales task queue
#: (LEADLOOP_SALES_TASK_QUEUE) run these activities there, on a worker of their own (`LEADLOOP_WORKER_ROLE=sales`).
SALES_PRIORITY = Priority(priority_key=1)


@dataclass(frozen=True)
class Queue:
    """A task queue's activity options: timeout, retry policy and priority (`task_queue` None: the workflow's)."""

    task_queue: str | None
    retry: RetryPolicy
    priority: Priority = Priority.default
    timeout: timedelta = ACTIVITY_TIMEOUT

    async def run(
        self,
        activity: Callable[[Any, P], Awaitable[R]],
        arg: P,
        summary: str,
        *,
        retry: RetryPolicy | None = None,
    ) -> R:
        """Run one activity method (its name on the wire is its `@activity.defn` name) and wait for its result."""
        result: R = await workflow.execute_activity_method(
            activity,
            arg,
            task_queue=self.task_queue,
            start_to_close_timeout=self.timeout,
            retry_policy=retry or self.retry,
            priority=self.priority,
            summary=summary,
        )
        return result


#: The drip's sends and a new cycle's snapshots, on the workflow's own task queue.
DRIP = Queue(task_queue=None, retry=SEND_RETRY)


def sales_queue(task_queue: str | None) -> Queue:
    """The sales path's activities: on the sales task queue if the lead has one, ahead of the drip."""
    return Queue(task_queue=task_queue, retry=DATABASE_RETRY, priority=SALES_PRIORITY)


async def wait_for(condition: Callable[[], bool], limit: timedelta, summary: str) -> bool:
    """A durable timer that `condition` cuts short; True when it did."""
    try:
        await workflow.wait_condition(condition, timeout=limit, timeout_summary=summary)
    except TimeoutError:
        return False
    return True
