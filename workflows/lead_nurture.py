"""LeadNurtureWorkflow: one durable workflow per lead that drips its cadence inside send windows."""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from leadloop.models import (
        EnrollInput,
        LeadNurtureInput,
        LeadNurtureResult,
        LeadState,
        RetrySendInput,
        SendEmailInput,
        SendEmailResult,
        Stage,
    )
    from leadloop.schedule import DemoClock, describe_local, next_send_time
    from leadloop.temporal import CADENCE_NAME, CADENCE_STEP, LEAD_STAGE

#: SMTP 4xx and lost connections retry with backoff, without limit: a relay that is down for an
#: hour must not lose the email. Permanent refusals are raised non-retryable by the activity.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
SEND_TIMEOUT = timedelta(seconds=30)
#: Error types on which the lead leaves nurture for good.
SUPPRESSING_ERRORS = frozenset({"HardBounce", "Suppressed"})
#: Error types the sender must fix; the workflow waits for an operator's retry.
BLOCKING_ERRORS = frozenset({"SendRefused", "TemplateError", "LeadMissing"})


def format_wait(wait: timedelta) -> str:
    """'3d', '1d12h', '90m' -> as a marketer wrote it (roughly)."""
    minutes = int(wait.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (mins, "m")) if n)
    return text or "0"


@workflow.defn
class LeadNurtureWorkflow:
    @workflow.init
    def __init__(self, input: LeadNurtureInput) -> None:
        self._input = input
        self._stage: Stage = "nurturing"
        self._step_index = 0
        self._sends = 0
        self._uncertain = 0
        self._next_send_at: datetime | None = None
        self._blocked_reason: str | None = None
        self._retry_requested = False
        self._enrolments = 0
        self._published: tuple[str, int] | None = None

    @workflow.run
    async def run(self, input: LeadNurtureInput) -> LeadNurtureResult:
        cadence = input.cadence
        clock = DemoClock(input.origin or workflow.now(), input.time_scale)
        last_planned = clock.cadence_time(workflow.now())
        self._publish()
        while self._step_index < len(cadence.steps):
            step = cadence.steps[self._step_index]
            number = self._step_index + 1
            earliest = max(last_planned + step.wait, clock.cadence_time(workflow.now()))
            planned = next_send_time(earliest, cadence.send_window, input.timezone)
            delay = clock.real_delay(workflow.now(), planned)
            self._next_send_at = workflow.now() + delay
            when = describe_local(planned, input.timezone)
            self._publish(f"step {number} of {len(cadence.steps)} '{step.id}', next email {when}")
            if delay > timedelta(0):
                await workflow.sleep(
                    delay, summary=f"wait {format_wait(step.wait)} → {when}, step {number} '{step.id}'"
                )
            try:
                result = await workflow.execute_activity(
                    "send_email",
                    SendEmailInput(
                        lead_id=input.lead_id,
                        cycle=input.cycle,
                        step_id=step.id,
                        step_number=number,
                        steps_total=len(cadence.steps),
                        template=step.template,
                        subject=step.subject,
                        cadence=cadence.name,
                        default_locale=cadence.default_locale,
                        sender=cadence.sender,
                    ),
                    result_type=SendEmailResult,
                    start_to_close_timeout=SEND_TIMEOUT,
                    retry_policy=SEND_RETRY,
                    summary=f"send step {number} '{step.id}' ({step.template})",
                )
            except ActivityError as err:
                cause = err.cause
                if not isinstance(cause, ApplicationError):
                    raise
                if cause.type in SUPPRESSING_ERRORS:
                    workflow.logger.info("lead %s suppressed: %s", input.lead_id, cause.message)
                    return await self._finish("suppressed", f"suppressed: {cause.message}")
                if cause.type in BLOCKING_ERRORS:
                    await self._blocked(step.id, f"{cause.type}: {cause.message}")
                    continue
                raise
            if result.status == "uncertain":
                self._uncertain += 1
            else:
                self._sends += 1
            last_planned = planned
            self._step_index += 1
        self._next_send_at = None
        return await self._finish("cadence_complete", f"cadence '{cadence.name}' complete")

    async def _blocked(self, step_id: str, reason: str) -> None:
        """Wait, visibly, until an operator says the cause of a refused send is fixed."""
        self._stage = "send_blocked"
        self._blocked_reason = reason
        self._next_send_at = None
        self._publish(f"sending blocked at step '{step_id}': {reason}; waiting for `leadloop retry`")
        self._retry_requested = False
        await workflow.wait_condition(lambda: self._retry_requested)
        self._stage = "nurturing"
        self._blocked_reason = None

    async def _finish(self, stage: Stage, details: str) -> LeadNurtureResult:
        self._stage = stage
        self._publish(details)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return LeadNurtureResult(stage=stage, sends=self._sends, uncertain_sends=self._uncertain)

    def _publish(self, details: str | None = None) -> None:
        """Keep search attributes and the UI's current details in step with the state."""
        current = (self._stage, min(self._step_index + 1, len(self._input.cadence.steps)))
        if current != self._published:  # each upsert is a history event: only on change
            self._published = current
            workflow.upsert_search_attributes(
                [
                    LEAD_STAGE.value_set(current[0]),
                    CADENCE_NAME.value_set(self._input.cadence.name),
                    CADENCE_STEP.value_set(current[1]),
                ]
            )
        if details:
            workflow.set_current_details(f"{self._stage}: {details}; {self._sends} sent")

    @workflow.signal
    def enroll(self, input: EnrollInput) -> None:
        """Every enrolment signals; a lead already on a cadence keeps it (idempotent intake)."""
        self._enrolments += 1
        if self._enrolments > 1:
            workflow.logger.info(
                "lead %s enrolled again (%s, from %s): keeps cadence '%s'",
                self._input.lead_id, input.cadence_name, input.source, self._input.cadence.name,
            )  # fmt: skip

    @workflow.signal
    def retry_send(self, input: RetrySendInput) -> None:
        """An operator fixed what refused the last send."""
        if self._stage == "send_blocked":
            self._retry_requested = True

    @workflow.query
    def state(self) -> LeadState:
        steps = self._input.cadence.steps
        return LeadState(
            lead_id=self._input.lead_id,
            stage=self._stage,
            cadence=self._input.cadence.name,
            cadence_version=self._input.cadence.version,
            cycle=self._input.cycle,
            step_index=self._step_index,
            steps_total=len(steps),
            current_step=steps[self._step_index].id if self._step_index < len(steps) else None,
            next_send_at=self._next_send_at,
            sends=self._sends,
            uncertain_sends=self._uncertain,
            blocked_reason=self._blocked_reason,
            enrolments=self._enrolments,
        )
