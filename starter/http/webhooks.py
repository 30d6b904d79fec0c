"""Mail providers' webhooks: POST /webhooks/ses, /webhooks/sendgrid, /webhooks/mailgun, /webhooks/postmark.

Each request is verified as its provider documents before anything of it is stored, then its bounces, blocks
and complaints go into the one inbound pipeline (stored, suppressed at once, then signalled to the lead's
workflow; `InboundRelay` signals again what Temporal could not take). What each status means:

- 200: verified and taken; a replayed event is stored once (`stored` counts only new ones);
- 400: the body is not JSON, a header the provider always sends is missing, or a verified body cannot be read;
- 401: Postmark's Basic credentials are missing or wrong (with a `WWW-Authenticate` challenge, as Basic asks);
- 403: the signature does not hold, is stale, its Mailgun token was used before (by any replica, before a
  restart too), or the message is not from an allowed SNS topic or host;
- 413: the body is larger than a provider sends (4 MiB);
- 503: the provider's secret is not set (LEADLOOP_SES_TOPIC_ARNS, _SENDGRID_WEBHOOK_PUBLIC_KEY,
  _MAILGUN_SIGNING_KEY, _POSTMARK_WEBHOOK_USER/_PASSWORD), or SNS's certificate could not be fetched: every
  provider retries a 5xx, so the events arrive once the operator sets it; a 404 would look like a wrong URL.

Nothing is stored on any answer but 200.
"""

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from leadloop.domain.metrics import WEBHOOK_EVENTS, WEBHOOKS_REFUSED
from leadloop.domain.webhooks import ProviderName
from leadloop.services.webhooks import WebhookError, store_events
from starter.http.answers import Answers, json_answer
from starter.http.deps import AppState

log = logging.getLogger("leadloop.api")

router = APIRouter(tags=["webhooks"])

STATUS = {"malformed": 400, "unauthenticated": 401, "refused": 403, "unconfigured": 503, "unavailable": 503}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="leadloop webhooks", charset="UTF-8"'}


class WebhookAnswer(BaseModel):
    """What leadloop took from a verified request."""

    events: int = Field(description="bounces, blocks, complaints and unsubscribes read from the request")
    stored: int = Field(description="of those, stored now: a provider's retry or a replay is not stored again")
    note: str | None = Field(default=None, description="what was done besides (an SNS subscription confirmed)")


ANSWERS: Answers = {
    400: json_answer("the body is not JSON, a required header is missing, or it cannot be read; nothing stored"),
    403: json_answer("the signature does not verify (or is stale, or not from an allowed sender); nothing stored"),
    413: json_answer("the body is larger than any provider sends (4 MiB); refused before it was read"),
    503: json_answer("the provider's secret is not configured, or SNS's certificate cannot be fetched now; retry"),
}
UNAUTHENTICATED: Answers = {
    401: {
        **json_answer("Postmark's Basic credentials are missing or wrong; nothing stored"),
        "headers": {"WWW-Authenticate": {"description": "the Basic challenge", "schema": {"type": "string"}}},
    }
}


def _body(description: str, schema: dict[str, Any], *types: str) -> dict[str, Any]:
    """`openapi_extra` for a route that reads (and verifies) its raw body itself."""
    content = {kind: {"schema": schema} for kind in types or ("application/json",)}
    return {"requestBody": {"description": description, "required": True, "content": content}}


async def _take(provider: ProviderName, request: Request, state: AppState) -> WebhookAnswer | JSONResponse:
    """Verify, then store and signal; a refusal is answered with its status and reason, nothing stored."""
    body = await request.body()
    try:
        verified = await state.webhooks.verify(provider, body, request.headers)
        stored = await store_events(state.sessionmaker, verified, body, state.signer)  # refuses a used token
    except WebhookError as exc:
        log.warning("webhook %s refused (%s): %s", provider, exc.problem, exc.reason)
        state.metrics.inc(WEBHOOKS_REFUSED, provider=provider, problem=exc.problem)
        status = STATUS[exc.problem]
        detail = exc.reason.encode("utf-8", "backslashreplace").decode()  # a lone surrogate quoted, never a 500
        return JSONResponse({"detail": detail}, status, headers=CHALLENGE if status == 401 else None)
    new = [row.id for row in stored if row.new]
    for event, row in zip(verified.events, stored, strict=True):
        state.metrics.inc(WEBHOOK_EVENTS, provider=provider, kind=event.kind, result="new" if row.new else "repeat")
    state.inbound.notify(new)  # committed: signalled now, or by the relay if Temporal cannot take it
    return WebhookAnswer(events=len(verified.events), stored=len(new), note=verified.note)


@router.post(
    "/webhooks/ses",
    response_model=WebhookAnswer,
    responses=ANSWERS,
    openapi_extra=_body(
        "an SNS message (Notification, SubscriptionConfirmation or UnsubscribeConfirmation), signed by SNS",
        {"type": "object"},
        "text/plain",
        "application/json",
    ),
)
async def ses_webhook(request: Request, state: AppState) -> WebhookAnswer | JSONResponse:
    """Amazon SES bounce and complaint notices through SNS: the SNS signature checked with the certificate at
    its SigningCertURL (https on an SNS host, fetched once and kept), the topic one of LEADLOOP_SES_TOPIC_ARNS.
    A SubscriptionConfirmation is confirmed by visiting its SubscribeURL; nothing is stored for it."""
    return await _take("ses", request, state)


@router.post(
    "/webhooks/sendgrid",
    response_model=WebhookAnswer,
    responses=ANSWERS,
    openapi_extra=_body("a batch of Event Webhook events, signed (ECDSA P-256)", {"type": "array"}),
)
async def sendgrid_webhook(request: Request, state: AppState) -> WebhookAnswer | JSONResponse:
    """SendGrid's signed Event Webhook: the signature over the timestamp header and the body checked with
    LEADLOOP_SENDGRID_WEBHOOK_PUBLIC_KEY; bounces, blocks, drops, spam reports and unsubscribes taken."""
    return await _take("sendgrid", request, state)


@router.post(
    "/webhooks/mailgun",
    response_model=WebhookAnswer,
    responses=ANSWERS,
    openapi_extra=_body("one webhook event with its 'signature' and 'event-data'", {"type": "object"}),
)
async def mailgun_webhook(request: Request, state: AppState) -> WebhookAnswer | JSONResponse:
    """Mailgun's webhooks: the HMAC-SHA256 of timestamp and token checked with LEADLOOP_MAILGUN_SIGNING_KEY
    (and refused when older than ten minutes); failures, complaints and unsubscribes taken."""
    return await _take("mailgun", request, state)


@router.post(
    "/webhooks/postmark",
    response_model=WebhookAnswer,
    responses={**UNAUTHENTICATED, **ANSWERS},
    openapi_extra=_body("one Bounce or SpamComplaint webhook record", {"type": "object"}),
)
async def postmark_webhook(request: Request, state: AppState) -> WebhookAnswer | JSONResponse:
    """Postmark's bounce and spam complaint webhooks: Postmark signs nothing, so the webhook URL carries Basic
    credentials (LEADLOOP_POSTMARK_WEBHOOK_USER and _PASSWORD), checked before the body is read."""
    return await _take("postmark", request, state)
