"""The marketer's site: the beacon script, its page views (POST /v), and the demo company's own site."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from leadloop.domain.classify import VISIT_BURST_WINDOW, Hit, classify
from leadloop.domain.text import REQUEST_CONTROL
from leadloop.domain.visits import MAX_TITLE, clean_title, site_origin
from leadloop.services.tracking import earlier_visits
from starter.http.answers import RATE_LIMITED, json_answer
from starter.http.deps import PUBLIC, AppSettings, AppState, HtmlPages, Recorder
from starter.http.hits import client_ip, event, headers_of
from starter.http.keys import site_for

BEACON_JS = (Path(__file__).parent.parent / "beacon.js").read_text(encoding="utf-8")
MAX_BEACON_BYTES = 4096
CORS = {"Access-Control-Allow-Origin": "*"}

router = APIRouter(tags=["site"])


def _refused(detail: str, status: int) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=CORS)


async def _beacon_body(request: Request) -> dict[str, Any] | JSONResponse:
    """The beacon's JSON object, read no further than MAX_BEACON_BYTES; or the answer refusing it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BEACON_BYTES:
        return _refused("body too large", 413)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BEACON_BYTES:
            return _refused("body too large", 413)
    try:
        body = json.loads(raw or b"{}")
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except ValueError:
        return _refused("the body must be a JSON object", 400)
    return body


def _sender_origins(request: Request) -> set[str]:
    """The origins the browser says the request comes from (Origin, Referer); empty when it names none, and
    an unreadable one (an opaque 'null' Origin too) stays in the set as '', which no site holds."""
    named = [request.headers.get("origin"), request.headers.get("referer")]
    return {site_origin(value, address=True) or "" for value in named if value}


def _page_refused(request: Request, page: Any, origins: frozenset[str]) -> JSONResponse | None:
    """Why the page may not count: not an http(s) address, not the key's site, or not sent from it."""
    if not (isinstance(page, str) and page.startswith(("http://", "https://")) and len(page) <= 2000) or (
        REQUEST_CONTROL.search(page)
    ):
        return _refused("url must be the page's http(s) address", 400)
    # the site key and a visitor id are public (in the page, in the landing URL): only pages of the key's
    # own site, reported from that site, may count
    if site_origin(page, address=True) not in origins:
        return _refused("url is not a page of this site key's site (LEADLOOP_SITE_HOSTS)", 403)
    sender = _sender_origins(request)
    if not sender or not sender <= origins:
        return _refused("the Origin or Referer is not this site key's site", 403)
    return None


@router.get(
    "/beacon.js",
    response_class=Response,
    dependencies=PUBLIC,
    responses={
        200: {"description": "the script", "content": {"text/javascript": {"schema": {"type": "string"}}}},
        **RATE_LIMITED,
    },
)
async def beacon_js() -> Response:
    """The script the marketer's site embeds; it posts page views of visitors who came from an email."""
    return Response(BEACON_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})


_VISIT_BODY = {
    "site_key": {"type": "string"},
    "visitor": {"type": "string"},
    "url": {"type": "string"},
    "title": {"type": "string", "description": f"the page's title (at most {MAX_TITLE} characters kept)"},
}
_RECORDED = {
    "type": "object",
    "properties": {
        "recorded": {"type": "boolean"},
        "confirmed": {"type": "boolean", "description": "true: the view confirmed the click that sent its visitor"},
        "detail": {"type": "string"},
    },
}


@router.post(
    "/v",
    status_code=202,
    dependencies=PUBLIC,
    responses={
        202: json_answer("taken; `recorded` says whether it counted", {**_RECORDED, "required": ["recorded"]}),
        400: json_answer("malformed body"),
        401: json_answer("missing or wrong site key"),
        403: json_answer("the page, or the Origin / Referer, is not on the site key's site; nothing recorded"),
        413: json_answer(f"the body is larger than {MAX_BEACON_BYTES} bytes"),
        **RATE_LIMITED,
    },
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": _VISIT_BODY}}}}
    },
)
async def visit(
    request: Request,
    state: AppState,
    recorder: Recorder,
    x_leadloop_site_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """A page view from the site beacon: JSON {site_key, visitor, url, title} (sent as text/plain by browsers).

    The page and the request's Origin (or Referer) must be on the site key's origins (LEADLOOP_SITE_HOSTS).
    """
    body = await _beacon_body(request)
    if isinstance(body, JSONResponse):
        return body
    site_key = x_leadloop_site_key or body.get("site_key")
    origins = site_for(site_key if isinstance(site_key, str) else None, state.site_origins)
    if origins is None:
        return _refused("missing or wrong site key", 401)
    page = body.get("url")
    if (refused := _page_refused(request, page, origins)) is not None:
        return refused
    try:
        title = clean_title(body.get("title"))
    except ValueError as exc:
        return _refused(str(exc), 400)
    visitor = body.get("visitor")
    if not visitor:
        return JSONResponse({"recorded": False, "detail": "anonymous visitor"}, status_code=202, headers=CORS)
    parsed = state.links.verify(str(visitor), "visitor")
    if parsed is None:
        return _refused("visitor id is not valid", 400)
    now = datetime.now(UTC)
    async with state.sessionmaker() as session:
        earlier = await earlier_visits(session, parsed.lead_id, now - VISIT_BURST_WINDOW)
    ua = request.headers.get("user-agent", "")
    verdict = classify(
        Hit("visit", ua, client_ip(request), headers_of(request), now, earlier_visits=earlier), ranges=state.ranges
    )
    # a visitor id from a click names the email and the click (older ids name neither: a visit, confirming nothing)
    click = (parsed.key, parsed.extra) if parsed.key and parsed.extra else None
    stored, confirmed = await recorder.record_visit(
        click=click,
        within=timedelta(seconds=state.settings.click_confirm_seconds),
        **event(parsed, "visit", verdict, request, now, url=page, title=title, outbox_key=None),
    )
    answer: dict[str, bool] = {"recorded": stored} | ({"confirmed": True} if confirmed else {})
    return JSONResponse(answer, status_code=202, headers=CORS)


@router.options("/v", include_in_schema=False)
async def visit_preflight() -> Response:
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type, X-Leadloop-Site-Key",
            "Access-Control-Max-Age": "86400",
        },
    )


@router.get("/site/{page:path}", include_in_schema=False, response_class=HTMLResponse)
async def demo_site(page: str, settings: AppSettings, pages: HtmlPages) -> HTMLResponse:
    """The demo company's website, with the beacon embedded (LEADLOOP_DEMO_SITE; by default only in the demo)."""
    if not settings.serves_demo_site():
        raise HTTPException(404)
    title = page.strip("/").replace("-", " ").capitalize() or "Welcome"
    return pages.page(
        "site",
        title=title,
        site_url=settings.site_url,
        public_url=settings.public_url,
        site_key=settings.site_keys[0] if settings.site_keys else "",
        guarded=False,  # it plays the marketer's site, which sets its own rules
    )
