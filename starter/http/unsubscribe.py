"""Unsubscribe links: a confirmation page, and RFC 8058 one-click unsubscribe."""

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from leadloop.domain.classify import Verdict
from leadloop.domain.metrics import UNSUBSCRIBES
from leadloop.services.unsubscribe import already_unsubscribed
from starter.http.answers import RATE_LIMITED, TOO_LARGE, form_body, html_answer
from starter.http.deps import PUBLIC, AppSettings, HtmlPages, Metrics, Recorder, Sessions, SignedLinks
from starter.http.hits import event

router = APIRouter(tags=["unsubscribe"], dependencies=PUBLIC)
NOT_VALID = "This unsubscribe link is not valid. Use the link in the email."


@router.get("/u/{token}", response_class=HTMLResponse, responses={404: html_answer("not a valid link"), **RATE_LIMITED})
async def unsubscribe_page(token: str, links: SignedLinks, pages: HtmlPages, settings: AppSettings) -> HTMLResponse:
    """A confirmation page with a button; a GET never unsubscribes (scanners follow every link)."""
    if links.verify(token, "unsubscribe") is None:
        return pages.page("invalid", 404, message=NOT_VALID)
    return pages.page("unsubscribe", action=f"{settings.public_url}/u/{token}", sender=None)


@router.post(
    "/u/{token}",
    response_class=HTMLResponse,
    responses={
        400: html_answer("no List-Unsubscribe=One-Click in the body; nothing changed"),
        404: html_answer("not a valid link"),
        **TOO_LARGE,
        **RATE_LIMITED,
    },
    openapi_extra=form_body({"List-Unsubscribe": {"type": "string"}}),
)
async def unsubscribe(
    token: str,
    request: Request,
    links: SignedLinks,
    pages: HtmlPages,
    sessions: Sessions,
    recorder: Recorder,
    metrics: Metrics,
) -> HTMLResponse:
    """RFC 8058 one-click unsubscribe (and the confirmation button): recorded, the workflow told at once."""
    parsed = links.verify(token, "unsubscribe")
    if parsed is None:
        return pages.page("invalid", 404, message=NOT_VALID)
    try:
        form = await request.form()
        one_click = form.get("List-Unsubscribe") == "One-Click"
    except Exception:  # an unreadable body is a request we do not act on
        one_click = False
    if not one_click:
        return pages.page(
            "invalid", 400, message="The request did not carry List-Unsubscribe=One-Click; nothing changed."
        )
    async with sessions() as session:
        already = await already_unsubscribed(session, parsed.lead_id)
    # one event per lead: a replayed request finds it stored and changes nothing
    verdict = Verdict(True, "one-click unsubscribe", rule="one_click")
    now = datetime.now(UTC)
    await recorder.record(
        **event(parsed, "unsubscribe", verdict, request, now, event_id=f"unsubscribe-{parsed.lead_id}")
    )
    metrics.inc(UNSUBSCRIBES, repeat=str(already).lower())
    return pages.page("unsubscribed", again=already, sender=None)
