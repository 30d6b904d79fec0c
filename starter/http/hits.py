"""What a hit on a link tells about its sender, and the engagement event it becomes."""

from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import Request

from leadloop.domain.classify import Verdict
from leadloop.domain.text import REQUEST_CONTROL
from leadloop.domain.tokens import Token


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def plain(text: str | None) -> str | None:
    """Header text as stored: without control characters (PostgreSQL refuses NUL)."""
    return REQUEST_CONTROL.sub("", text) if text else text


def headers_of(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def event(token: Token, kind: str, verdict: Verdict, request: Request, at: datetime, **extra: Any) -> dict[str, Any]:
    """The event's fields for EventRecorder.record."""
    return {
        "lead_id": token.lead_id,
        "kind": kind,
        "human": verdict.human,
        "reason": verdict.reason,
        "outbox_key": token.key or None,
        "user_agent": plain(request.headers.get("user-agent")),
        "client_ip": client_ip(request),
        "at": at,
        "confidence": verdict.confidence,
        "machine_class": verdict.machine_class,
        "evidence": [asdict(e) for e in verdict.evidence] or None,
        "rule": verdict.rule,
        **extra,
    }
