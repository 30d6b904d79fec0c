"""Pydantic models that cross Temporal: workflow, signal, query and activity inputs and results."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from leadloop.cadence import Cadence, Sender

Stage = Literal["nurturing", "send_blocked", "cadence_complete", "suppressed"]
STAGES: tuple[Stage, ...] = ("nurturing", "send_blocked", "cadence_complete", "suppressed")
SendStatus = Literal["sent", "already_sent", "uncertain"]


class LeadNurtureInput(BaseModel):
    """Start of a lead's workflow: the lead id and a snapshot of its cadence."""

    lead_id: int
    cadence: Cadence
    timezone: str = "UTC"
    time_scale: float = 1.0
    cycle: int = 0
    origin: datetime | None = None


class LeadNurtureResult(BaseModel):
    stage: Stage
    sends: int
    uncertain_sends: int = 0


class EnrollInput(BaseModel):
    """Signal sent with every (re-)enrolment; a running lead records it and keeps its cadence."""

    cadence_name: str
    source: str = "cli"


class RetrySendInput(BaseModel):
    """Signal from an operator: the reason a send was refused is fixed, try the step again."""

    note: str = ""


class LeadState(BaseModel):
    """What the `state` query answers."""

    lead_id: int
    stage: Stage
    cadence: str
    cadence_version: int
    cycle: int
    step_index: int = Field(description="index of the next step to send (0-based)")
    steps_total: int
    current_step: str | None
    next_send_at: datetime | None
    sends: int
    uncertain_sends: int
    blocked_reason: str | None = None
    enrolments: int = 1


class SendEmailInput(BaseModel):
    """One email of a cadence for one lead; (lead, cycle, step) is its outbox key."""

    lead_id: int
    cycle: int
    step_id: str
    step_number: int
    steps_total: int
    template: str
    subject: str | dict[str, str]
    cadence: str
    default_locale: str
    sender: Sender | None = None


class SendEmailResult(BaseModel):
    status: SendStatus
    outbox_key: str
    message_id: str
