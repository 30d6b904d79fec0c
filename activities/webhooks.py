"""CRM webhook activities: one signed attempt at a delivery, and the dead letter when its retries ran out."""

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from leadloop.domain.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_ENDPOINTS_DISABLED, WEBHOOKS_DEAD
from leadloop.domain.models import DeadLetterInput, DeadLetterResult, DeliverWebhookInput, DeliverWebhookResult
from leadloop.infra.webhook_sender import attempt_delivery, dead_letter


class WebhookActivities:
    """Holds the sessionmaker, how long one attempt waits for an answer and whether endpoints may be private."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        timeout: timedelta = timedelta(seconds=15),
        *,
        allow_private: bool = False,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.timeout = timeout
        self.allow_private = allow_private

    @activity.defn(name="deliver_webhook")
    async def deliver(self, input: DeliverWebhookInput) -> DeliverWebhookResult:
        """POST the delivery, signed now with the endpoint's current secret. 2xx: delivered; 410 Gone: dead and the
        endpoint disabled; any other answer or none raises, so Temporal retries with backoff."""
        attempt = await attempt_delivery(
            self.sessionmaker,
            input.delivery_id,
            answer_within=self.timeout.total_seconds(),
            allow_private=self.allow_private,
        )
        meter = activity.metric_meter()
        if attempt.outcome in ("delivered", "failed", "gone") and (attempt.status_code or attempt.error):
            WEBHOOK_ATTEMPTS.add(meter, result=attempt.outcome)
        if attempt.outcome == "failed":
            raise ApplicationError(f"delivery {input.delivery_id}: {attempt.describe()}", type="WebhookFailed")
        if attempt.outcome == "gone":
            WEBHOOK_ENDPOINTS_DISABLED.add(meter, reason="gone")
            WEBHOOKS_DEAD.add(meter, reason="gone")
            return DeliverWebhookResult(outcome="dead", status_code=attempt.status_code)
        if attempt.outcome == "missing":
            return DeliverWebhookResult(outcome="gone")
        return DeliverWebhookResult(outcome=attempt.outcome, status_code=attempt.status_code)

    @activity.defn(name="dead_letter_webhook")
    async def dead_letter(self, input: DeadLetterInput) -> DeadLetterResult:
        """The delivery is dead; its endpoint, having accepted nothing for the whole retry window, is disabled."""
        disabled = await dead_letter(self.sessionmaker, input.delivery_id, input.error)
        meter = activity.metric_meter()
        WEBHOOKS_DEAD.add(meter, reason="retries_ran_out")
        if disabled:
            WEBHOOK_ENDPOINTS_DISABLED.add(meter, reason="failing")
            activity.logger.warning("webhook endpoint of delivery %s disabled: it accepted nothing", input.delivery_id)
        return DeadLetterResult(endpoint_disabled=disabled)
