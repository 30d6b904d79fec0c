"""WebhookDeliveryWorkflow: one endpoint's lifecycle webhooks of one lead, delivered one at a time, in order."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.commands import DATABASE_RETRY

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookActivities
    from leadloop.domain.crm_webhooks import DELIVERY_SIGNAL, DELIVERY_WORKFLOW
    from leadloop.domain.models import (
        DeadLetterInput,
        DeliverWebhookInput,
        WebhookDeliveryInput,
        WebhookDeliveryResult,
        WebhookDeliverySignal,
        WebhookRetry,
    )

DEAD_LETTER_TIMEOUT = timedelta(seconds=30)
#: below the default (3) and the sales path (1): on a shared worker a hanging receiver's deliveries wait behind
#: send_email and the rep's hand-over, never the other way round
DELIVERY_PRIORITY = Priority(priority_key=5)


def delivery_retry(retry: WebhookRetry) -> RetryPolicy:
    """Exponential backoff from the settings' initial to maximum interval; the retry window (schedule-to-close)
    ends it. Every failure retries: 410 Gone and a disabled endpoint are answers, not failures."""
    return RetryPolicy(
        initial_interval=retry.initial_interval, backoff_coefficient=2.0, maximum_interval=retry.max_interval
    )


@workflow.defn(name=DELIVERY_WORKFLOW)
class WebhookDeliveryWorkflow:
    """A FIFO of delivery ids, fed by the lifecycle activity's signals; ends when it is empty."""

    def __init__(self) -> None:
        self.queue: list[int] = []
        self.known: set[int] = set()  # what this run was given: a re-sent signal (a retried announce) is ignored

    @workflow.run
    async def run(self, input: WebhookDeliveryInput) -> WebhookDeliveryResult:
        for delivery_id in input.pending:
            self.enqueue(WebhookDeliverySignal(delivery_id=delivery_id))
        result = WebhookDeliveryResult()
        done = 0
        while True:
            while self.queue:
                # a bounded history and set of remembered ids (WebhookDeliveryInput.per_run, 200 by default)
                if done >= input.per_run or workflow.info().is_continue_as_new_suggested():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(
                        WebhookDeliveryInput(
                            endpoint_id=input.endpoint_id,
                            lead_id=input.lead_id,
                            retry=input.retry,
                            pending=list(self.queue),
                            delivered_before=input.delivered_before + result.delivered,
                            per_run=input.per_run,
                        )
                    )
                delivery_id = self.queue[0]
                if await self.deliver(delivery_id, input.retry):
                    result.delivered += 1
                else:
                    result.dead += 1
                self.queue.pop(0)
                done += 1
            # signals that came in with the last activity's result are in the queue before the run can end
            await workflow.wait_condition(workflow.all_handlers_finished)
            if not self.queue:
                return result

    async def deliver(self, delivery_id: int, retry: WebhookRetry) -> bool:
        """Deliver one, retried by Temporal for the retry window; then dead-lettered. True when delivered."""
        try:
            outcome = await workflow.execute_activity_method(
                WebhookActivities.deliver,
                DeliverWebhookInput(delivery_id=delivery_id),
                start_to_close_timeout=retry.timeout + timedelta(seconds=10),
                schedule_to_close_timeout=retry.retry_for,
                retry_policy=delivery_retry(retry),
                summary=f"deliver webhook {delivery_id}",
                priority=DELIVERY_PRIORITY,
            )
        except ActivityError as exc:
            cause = exc.cause
            await workflow.execute_activity_method(
                WebhookActivities.dead_letter,
                DeadLetterInput(delivery_id=delivery_id, error=str(cause or exc)),
                start_to_close_timeout=DEAD_LETTER_TIMEOUT,
                retry_policy=DATABASE_RETRY,
                summary=f"dead-letter webhook {delivery_id}",
                priority=DELIVERY_PRIORITY,
            )
            return False
        return outcome.outcome == "delivered"

    @workflow.signal(name=DELIVERY_SIGNAL)
    def enqueue(self, signal: WebhookDeliverySignal) -> None:
        if signal.delivery_id not in self.known:
            self.known.add(signal.delivery_id)
            self.queue.append(signal.delivery_id)
