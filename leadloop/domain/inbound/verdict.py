"""What the classifier says about one inbound message, and why."""

from datetime import date
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

InboundKind = Literal[
    "human_reply", "auto_reply", "hard_bounce", "soft_bounce", "policy_block", "complaint", "unsubscribe_request"
]
INBOUND_KINDS: tuple[str, ...] = get_args(InboundKind)
#: high: a standard report or header says so; medium: wording or a known non-standard format; low: a guess
#: kept only because the kind list has no "unknown" (the evidence says what was missing).
Confidence = Literal["high", "medium", "low"]


class InboundVerdict(BaseModel):
    """One message's kind, what it answers, whom it names, and the evidence for each."""

    model_config = ConfigDict(frozen=True)

    kind: InboundKind
    confidence: Confidence = "high"
    #: the Message-ID (with angle brackets) of leadloop's email this message answers or bounces
    answers: str | None = None
    #: the recipient a bounce or complaint names, or the sender of a reply
    lead_email: str | None = None
    return_date: date | None = None
    left_company: bool = False
    #: whom a "has left the company" message says to contact instead (an address, else the words given)
    contact_hint: str | None = None
    challenge: bool = False
    #: a reply's own words, the quoted original and signature separator stripped
    reply_text: str = ""
    #: the enhanced status code (RFC 3463) of a bounce, e.g. "5.1.1"
    status: str | None = None
    evidence: list[str] = []
