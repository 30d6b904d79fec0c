"""What a hit on a link tells about its sender, and the engagement event it becomes."""

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import Request

from leadloop.domain.classify import Verdict
from leadloop.domain.text import REQUEST_CONTROL
from leadloop.domain.tokens import Token

log = logging.getLogger("leadloop.api")
_warned: set[str] = set()


def warn_untrusted_proxy(request: Request, verdict: Verdict) -> None:
    """Say once per process when hits judged by a cloud's or a gateway's range came with an X-Forwarded-For that
    was not applied: behind a CDN or load balancer not in LEADLOOP_TRUSTED_PROXIES every reader looks like a cloud
    scanner (the proxy's address), and no lead would ever escalate."""
    peer = client_ip(request)
    if verdict.machine_class not in ("cloud", "gateway") or "x-forwarded-for" not in request.headers or not peer:
        return
    if peer in _warned or len(_warned) > 100:
        return
    _warned.add(peer)
    log.warning(
        "hits from %s (%s) carry X-Forwarded-For that was not used: if it is your proxy or load balancer, add it to "
        "LEADLOOP_TRUSTED_PROXIES, or every reader behind it is judged by its address",
        peer,
        verdict.machine_class,
    )


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def plain(text: str | None) -> str | None:
    """Header text as stored: without control characters (PostgreSQL refuses NUL)."""
    return REQUEST_CONTROL.sub("", text) if text else text


def headers_of(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def event(token: Token, kind: str, verdict: Verdict, request: Request, at: datetime, **extra: Any) -> dict[str, Any]:
    """The event's fields for EventRecorder.record."""
    warn_untrusted_proxy(request, verdict)
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
