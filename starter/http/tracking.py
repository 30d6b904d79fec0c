"""The email's tracking links: the open pixel and click redirects (to the marketer's site with a visitor id)."""

import logging
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from leadloop.domain.classify import Hit, classify
from leadloop.domain.tokens import Token
from leadloop.domain.visits import site_origin
from leadloop.services.tracking import MESSAGE_HITS_WINDOW, message_hits, sent_at, sent_email
from starter.http.answers import RATE_LIMITED, html_answer
from starter.http.deps import PUBLIC, AppState, HtmlPages, Recorder
from starter.http.hits import client_ip, event, headers_of
from starter.http.pages import NO_CACHE

log = logging.getLogger("leadloop.api")

PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

router = APIRouter(tags=["tracking"], dependencies=PUBLIC)


def on_site(url: str, origins: frozenset[str]) -> bool:
    """Only the marketer's own site gets the visitor id: a third-party page must never hold one."""
    return site_origin(url, address=True) in origins


def with_visitor(url: str, visitor: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ll"]
    query.append(("ll", visitor))
    return urlunsplit(parts._replace(query=urlencode(query)))


@router.get(
    "/o/{token}.gif",
    response_class=Response,
    responses={
        200: {"description": "a 1x1 GIF, the same whatever the token", "content": {"image/gif": {"schema": {}}}},
        **RATE_LIMITED,
    },
)
async def open_pixel(token: str, request: Request, state: AppState, recorder: Recorder) -> Response:
    """The open pixel: always the same 1x1 GIF, at once, whatever the token; a valid token records an open."""
    parsed = state.links.verify(token, "open")
    if parsed is not None:
        try:
            async with state.sessionmaker() as session:
                sent = await sent_at(session, parsed.key)
            now = datetime.now(UTC)
            verdict = classify(
                Hit("open", request.headers.get("user-agent", ""), client_ip(request), headers_of(request), now, sent),
                ranges=state.ranges,
                min_delay=timedelta(seconds=state.settings.machine_min_delay),
            )
            await recorder.record(**event(parsed, "open", verdict, request, now))
        except Exception:  # the pixel answers whatever happens behind it
            log.exception("open not recorded")
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


@router.get(
    "/c/{token}",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {"description": "to the URL sealed in the token"},
        404: html_answer("not a valid link; nothing recorded"),
        **RATE_LIMITED,
    },
)
async def click(token: str, request: Request, state: AppState, pages: HtmlPages, recorder: Recorder) -> Response:
    """A click: recorded, then a redirect to the URL sealed inside the token and nowhere else."""
    parsed = state.links.verify(token, "click")
    if parsed is None or not parsed.url.startswith(("http://", "https://")):
        return pages.page("invalid", 404, message="The link may have been changed or cut short.")
    now = datetime.now(UTC)
    async with state.sessionmaker() as session:
        sent, links = await sent_email(session, parsed.key)
        earlier = await message_hits(session, parsed.key, now - MESSAGE_HITS_WINDOW)
    hit = Hit(
        "click",
        request.headers.get("user-agent", ""),
        client_ip(request),
        headers_of(request),
        now,
        sent,
        honeypot=parsed.extra == "h",
        url=parsed.url,
        message_hits=earlier,
        links_in_message=links,
    )
    verdict = classify(hit, ranges=state.ranges, min_delay=timedelta(seconds=state.settings.machine_min_delay))
    # the click's id is sealed in the visitor id, so the landing page's beacon can confirm this very click
    click_id = uuid.uuid4().hex
    await recorder.record(**event(parsed, "click", verdict, request, now, url=parsed.url, event_id=click_id))
    target = parsed.url
    if parsed.extra != "h" and on_site(parsed.url, state.all_site_origins):
        visitor = state.signer.sign(
            Token(
                kind="visitor", lead_id=parsed.lead_id, key=parsed.key, issued_at=int(now.timestamp()), extra=click_id
            )
        )
        target = with_visitor(parsed.url, visitor)
    return RedirectResponse(target, status_code=302, headers={**NO_CACHE, "Referrer-Policy": "no-referrer"})
