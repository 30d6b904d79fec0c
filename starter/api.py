"""The HTTP service: tracking pixel, click redirects, site beacon, unsubscribe, lead intake (FastAPI)."""

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.runtime import Runtime

from leadloop import DATA_DIR
from leadloop.domain.cadence import cadence_path, load_cadence
from leadloop.domain.classify import VISIT_BURST_WINDOW, Hit, Verdict, classify
from leadloop.domain.intake import LeadIn, intake_context
from leadloop.domain.mail import email_hash
from leadloop.domain.metrics import (
    ENGAGEMENT_EVENTS,
    INTAKES,
    REP_DECISIONS,
    TOKENS_REFUSED,
    UNSUBSCRIBES,
    verdict_rule,
)
from leadloop.domain.models import RepActionInput, RepActionResult
from leadloop.domain.recycle import REASON_LABELS, Reason
from leadloop.domain.rules import RuleFileError
from leadloop.domain.text import LONE_SURROGATE, NOTE_CONTROL, REQUEST_CONTROL
from leadloop.domain.times import as_utc
from leadloop.domain.tokens import Signer, Token, TokenError, TokenKind
from leadloop.domain.visits import MAX_TITLE, clean_title, site_origin
from leadloop.infra.db import (
    Assignment,
    EngagementEvent,
    Lead,
    Outbox,
    Rep,
    Suppression,
    make_engine,
    make_sessionmaker,
)
from leadloop.infra.settings import (
    InsecureSettings as InsecureSettings,  # what create_app raises; callers catch it here
)
from leadloop.infra.settings import Settings, get_settings
from leadloop.infra.temporal import connect
from leadloop.services.decisions import DecisionRefused, decide
from leadloop.services.enrollment import current_recycle, current_scoring, match_owners, start_lead, upsert_lead
from leadloop.services.events import EventSignaller, record_event
from leadloop.services.leads import AddressSuppressed, LeadUpdateError, apply_update, list_dispositions, tell_workflow
from starter.codec_server import codec_router
from starter.metrics import CONTENT_TYPE, HttpMetrics, RequestCounter, SdkMetrics
from starter.serving import ForwardedFor

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("leadloop.api")

PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
BEACON_JS = (Path(__file__).parent / "beacon.js").read_text(encoding="utf-8")
MAX_BEACON_BYTES = 4096
BURST_WINDOW = timedelta(seconds=2)
# control characters and lone surrogates: PostgreSQL refuses NUL and text that is not UTF-8 with an error

#: Documented answers, so a client (and Schemathesis) knows every status and body it can get.
PROBLEM = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
LeadId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="the lead's id")]


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or PROBLEM}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: _json("the body is larger than LEADLOOP_MAX_BODY_BYTES; refused before it was read, nothing changed")
}
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        **_json("too many requests from this address (LEADLOOP_RATE_LIMIT_PER_MINUTE); nothing was recorded"),
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    }
}
NEEDS_KEY: dict[int | str, dict[str, Any]] = {401: _json("missing or wrong X-API-Key; nothing changed")}
NOT_JSON: dict[int | str, dict[str, Any]] = {400: _json("the body could not be read (not UTF-8 JSON); nothing changed")}
VALIDATION = {
    "type": "object",
    "properties": {"detail": {"type": "array", "items": {"type": "object", "properties": {
        "loc": {"type": "array"}, "msg": {"type": "string"}, "type": {"type": "string"}},
        "required": ["loc", "msg", "type"]}}},
    "required": ["detail"],
}  # fmt: skip
INVALID: dict[int | str, dict[str, Any]] = {422: _json("invalid fields; nothing changed", VALIDATION)}


# a JSON string escape of a lone surrogate (a pair is one character, fine); the body is parsed only if one shows
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
NOT_UNICODE = "text that is not valid Unicode (an unpaired surrogate escape); nothing changed"


def _unpaired_surrogate(body: bytes) -> list[str | int] | None:
    """Where a JSON body holds text no database or answer can encode (a lone surrogate), as a 422's `loc`."""
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None  # not JSON: FastAPI answers that

    def find(value: Any, loc: list[str | int]) -> list[str | int] | None:
        if isinstance(value, str):
            return loc if LONE_SURROGATE.search(value) else None
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(key, str) and LONE_SURROGATE.search(key):
                return loc  # the name itself: not echoed either
            if (found := find(item, [*loc, key])) is not None:
                return found
        return None

    return find(data, ["body"])


class KeyedRoute(APIRoute):
    """A route for CRMs and integrations: the API key is checked before the body is parsed or validated (a
    stranger's request gets 401 whatever its body), then a JSON body with a lone surrogate gets 422 without
    its text echoed (FastAPI's own 422 would echo it, and fail to encode it: a 500)."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def keyed(request: Request) -> Response:
            state: State = request.app.state.leadloop
            if not _key_ok(request.headers.get("x-api-key"), [k.get_secret_value() for k in state.settings.api_keys]):
                return JSONResponse({"detail": "missing or wrong X-API-Key"}, status_code=401)
            try:
                body = await request.body()  # kept on the request: the handler reads it again from memory
            except Exception:  # cut short by BodyLimit, or the client went away: the handler's answer stands
                body = b""
            if (loc := _unpaired_surrogate(body)) is not None:
                return JSONResponse({"detail": [{"loc": loc, "msg": NOT_UNICODE, "type": "value_error"}]}, 422)
            response: Response = await handler(request)
            return response

        return keyed


class RateLimiter:
    """A token bucket per client address, kept for the `max_clients` most recently seen (idle ones go first)."""

    def __init__(
        self, per_minute: int, burst: int, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """0 when the client may go on (one token taken), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if not wait else tokens, now)  # most recently seen last
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


class BodyLimit:
    """ASGI middleware: a body over its limit gets 413 before it is read (declared Content-Length), or as soon
    as the chunks that arrived pass the limit; the app's own answer to a body cut short never goes out."""

    def __init__(self, app: "ASGIApp", limit: int, prefixes: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.prefixes = prefixes or {}

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.prefixes.items() if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: "Scope", receive: "Receive", send: "Send") -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"").strip()
        if declared and (not declared.isdigit() or int(declared) > limit):
            await self.refuse(send, limit)
            return
        received, cut, started = 0, False, False

        async def capped() -> "Message":
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut = True  # the app sees the client go away, and reads no further
                    return {"type": "http.disconnect"}
            return message

        async def unless_cut(message: "Message") -> None:
            nonlocal started
            if cut and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped, unless_cut)
        except Exception:
            if not cut or started:
                raise
        if cut and not started:
            await self.refuse(send, limit)

    @staticmethod
    async def refuse(send: "Send", limit: int) -> None:
        body = json.dumps({"detail": f"the body is larger than {limit} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class LeadIntake(LeadIn):
    """A lead for `POST /leads`: the CSV's fields, and optionally the cadence to enrol it in."""

    email: str = Field(max_length=320, json_schema_extra={"format": "email"})  # so generated clients send one
    cadence: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")


class LeadAccepted(BaseModel):
    lead_id: int
    status: str = Field(description="new, merged or unchanged (the lead existed), suppressed")
    workflow: str = Field(description="started, already_running, finished_earlier or not_started")
    warnings: list[str] = Field(default_factory=list, description="what was stored otherwise than sent, and why")


class RepDecisionIn(BaseModel):
    """A rep's decision from a CRM: who decides, and for a reject, why."""

    model_config = ConfigDict(extra="forbid")

    rep: str = Field(description="the deciding rep's email address", max_length=320)
    reason: Reason | None = None
    note: str = Field(default="", max_length=2000)
    opportunity_id: str | None = Field(default=None, max_length=200)

    @field_validator("rep", "opportunity_id")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and REQUEST_CONTROL.search(value):
            raise ValueError("contains control characters")
        return value

    @field_validator("note")
    @classmethod
    def _text(cls, value: str) -> str:
        if NOTE_CONTROL.search(value):
            raise ValueError("contains control characters other than line breaks and tabs")
        return value


class State:
    """What the app holds for its lifetime."""

    def __init__(
        self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], metrics: HttpMetrics
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.signer = Signer(settings.signing_keys())
        self.site_origins = settings.site_origins()
        self.all_site_origins = frozenset().union(*self.site_origins.values())
        self._client: Client | None = None
        self.runtime: Runtime | None = None  # the SDK runtime of the client the app builds itself
        self.signaller = EventSignaller(sessionmaker, self.client, settings.coalesce_seconds)
        self.pages = Environment(
            loader=FileSystemLoader(str(DATA_DIR / "templates" / "pages")),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        # leadloop's pages (rep, unsubscribe, and their answers) load nothing, run no script, post their forms
        # only to this service and show in no frame: a page behind a rep's or a lead's link cannot be framed
        # to trick a click on its button (clickjacking)
        public = urlsplit(settings.public_url)
        self.guard = {
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            f"form-action 'self' {public.scheme}://{public.netloc}; frame-ancestors 'none'; base-uri 'none'",
            "X-Frame-Options": "DENY",
        }

    async def client(self) -> Client:
        if self._client is None:
            self._client = await connect(self.settings, lazy=True, runtime=self.runtime)
        return self._client

    def page(self, name: str, status: int = 200, *, guarded: bool = True, **context: Any) -> HTMLResponse:
        """A page; leadloop's own (`guarded`) with a Content-Security-Policy and X-Frame-Options: DENY."""
        body = self.pages.get_template(f"{name}.html.j2").render(**context)
        return HTMLResponse(body, status_code=status, headers={**NO_CACHE, **(self.guard if guarded else {})})

    def max_age(self, kind: TokenKind) -> int | None:
        """Seconds a link of this kind lives."""
        return {
            "open": self.settings.token_max_age_days * 86400,
            "click": self.settings.token_max_age_days * 86400,
            "rep": self.settings.rep_link_max_age_days * 86400,
            "unsubscribe": None,  # an unsubscribe link must keep working for as long as the email exists
            "visitor": self.settings.token_max_age_days * 86400,
        }[kind]

    def verify(self, token: str, kind: TokenKind, *, expiry: bool = True) -> Token | None:
        """The token, or None (counted) when it is tampered with, foreign, of another kind or (`expiry`) too old."""
        try:
            return self.signer.verify(token, kind=kind, max_age=self.max_age(kind) if expiry else None)
        except TokenError:
            self.metrics.inc(TOKENS_REFUSED, kind=kind)
            return None


def _plain(text: str | None) -> str | None:
    """Header text as stored: without control characters (PostgreSQL refuses NUL)."""
    return REQUEST_CONTROL.sub("", text) if text else text


def _limit_key(request: Request, state: "State") -> str:
    address = _client_ip(request) or ""
    try:
        network = ipaddress.ip_address(address)
    except ValueError:
        network = None
    if isinstance(network, ipaddress.IPv6Address):  # one host holds a whole /64
        address = str(ipaddress.IPv6Network(f"{network}/64", strict=False))
    token = request.path_params.get("token")
    if token:
        try:
            state.signer.verify(token)
        except TokenError:
            return address
        return f"{address} {token}"
    return address


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _key_ok(given: str | None, accepted: list[str]) -> bool:
    """Constant-time comparison against every accepted key."""
    if not given:
        return False
    found = False
    for key in accepted:
        found |= hmac.compare_digest(given.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))
    return found


def _on_site(url: str, origins: frozenset[str]) -> bool:
    """Only the marketer's own site gets the visitor id: a third-party page must never hold one."""
    return site_origin(url, address=True) in origins


def _site_for(given: str | None, sites: dict[str, frozenset[str]]) -> frozenset[str] | None:
    """The origins of the site key given, compared in constant time against every key; None for a wrong key."""
    found = None
    for key, origins in sites.items():
        if _key_ok(given, [key]):
            found = origins
    return found


def _sender_origins(request: Request) -> set[str]:
    """The origins the browser says the request comes from (Origin, Referer); empty when it names none, and
    an unreadable one (an opaque 'null' Origin too) stays in the set as '', which no site holds."""
    named = [request.headers.get("origin"), request.headers.get("referer")]
    return {site_origin(value, address=True) or "" for value in named if value}


def _with_visitor(url: str, visitor: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ll"]
    query.append(("ll", visitor))
    return urlunsplit(parts._replace(query=urlencode(query)))


def create_app(
    settings: Settings | None = None,
    *,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    client: Client | None = None,
) -> FastAPI:
    """The app; `sessionmaker` and `client` given by tests, built from settings otherwise.

    Outside the demo (LEADLOOP_DEMO) it refuses the published secret and API keys, and a short secret:
    InsecureSettings.
    """
    settings = settings or get_settings()
    settings.refuse_unsafe_secrets("the HTTP service", api_keys=True)
    metrics = HttpMetrics()
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        maker = sessionmaker
        if maker is None:
            engine = make_engine(settings.database_url, pool_pre_ping=True)
            maker = make_sessionmaker(engine)
        state = State(settings, maker, metrics)
        state._client = client
        sdk = None
        if client is None:  # the app's own client: its SDK metrics are served with leadloop's
            sdk = SdkMetrics()
            state.runtime = sdk.runtime
            metrics.registry.register(sdk)
        app.state.leadloop = state
        stop = asyncio.Event()
        relay = asyncio.create_task(state.signaller.relay(settings.relay_interval, stop))
        drain = asyncio.create_task(_drain_every(sdk, 1.0, stop)) if sdk else None
        try:
            yield
        finally:
            stop.set()
            await relay
            if drain is not None:
                await drain
            await state.signaller.drain()
            if engine is not None:
                await engine.dispose()
            if sdk is not None:
                metrics.registry.unregister(sdk)
                state._client, state.runtime = None, None
                sdk.close()

    app = FastAPI(
        title="leadloop",
        summary="Tracking, site beacon, unsubscribe and lead intake for leadloop.",
        lifespan=lifespan,
        # Swagger UI and ReDoc pages load their scripts from a CDN: off outside the demo unless asked for
        docs_url="/docs" if settings.serves_api_docs() else None,
        redoc_url="/redoc" if settings.serves_api_docs() else None,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes,
                       prefixes={"/codec/": settings.codec_max_body_bytes})  # fmt: skip
    app.add_middleware(RequestCounter, metrics=metrics)  # the 413s are counted too
    app.add_middleware(ForwardedFor, trusted=settings.trusted_proxies)  # outermost: every part sees the client
    keyed_routes = APIRouter(route_class=KeyedRoute)

    app.include_router(codec_router(settings))

    def st(request: Request) -> State:
        state: State = request.app.state.leadloop
        return state

    async def limited(request: Request) -> None:
        """The public links' pace, refused before anything is read or recorded: per client address and link
        for a validly signed link (an HMAC check, no database) — a mail provider's image proxy, a company's
        NAT or a mailbox provider's one-click unsubscribe fetch many people's links from one address and
        must not lose them — and per address (IPv6: its /64) for everything else."""
        wait = limiter.take(_limit_key(request, st(request)))
        if wait:
            raise HTTPException(429, "too many requests from this address; slow down",
                                headers={"Retry-After": str(math.ceil(wait))})  # fmt: skip

    public = [Depends(limited)]

    async def api_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
        """The intake's and CRMs' key, checked before the body is looked at."""
        if not _key_ok(x_api_key, [k.get_secret_value() for k in st(request).settings.api_keys]):
            raise HTTPException(401, "missing or wrong X-API-Key")

    keyed = [Depends(api_key)]

    async def store(state: State, **event: Any) -> bool:
        async with state.sessionmaker() as session:
            lead = await session.get(Lead, event["lead_id"])
            if lead is None or lead.erased_at is not None:  # an erased person leaves no new trace
                return False
            stored = await record_event(session, **event)
            await session.commit()
        if stored:
            state.signaller.notify(event["lead_id"])
            state.metrics.inc(ENGAGEMENT_EVENTS, kind=event["kind"], human=str(event["human"]).lower(),
                              rule=verdict_rule(event["reason"]))  # fmt: skip
        return stored

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, str]:
        """Liveness and the database's reachability."""
        async with st(request).sessionmaker() as session:
            await session.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], response_class=Response, responses={
        200: {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}},
        401: {"description": "LEADLOOP_METRICS_TOKEN is set: a bearer token is needed",
              "content": {"text/plain": {"schema": {"type": "string"}}}}})  # fmt: skip
    async def prometheus(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
        """Prometheus text: leadloop's counters and the SDK metrics of the service's Temporal client."""
        state = st(request)
        token = state.settings.metrics_token.get_secret_value() if state.settings.metrics_token else ""
        scheme, _, given = (authorization or "").partition(" ")
        if token and not (scheme.lower() == "bearer" and _key_ok(given.strip(), [token])):
            return Response("a bearer token is needed\n", status_code=401, media_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})  # fmt: skip
        return Response(state.metrics.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    @app.get("/o/{token}.gif", tags=["tracking"], response_class=Response, dependencies=public, responses={
        200: {"description": "a 1x1 GIF, the same whatever the token", "content": {"image/gif": {"schema": {}}}},
        **RATE_LIMITED})  # fmt: skip
    async def open_pixel(token: str, request: Request) -> Response:
        """The open pixel: always the same 1x1 GIF, at once, whatever the token; a valid token records an open."""
        state = st(request)
        parsed = state.verify(token, "open")
        if parsed is not None:
            try:
                async with state.sessionmaker() as session:
                    outbox = await session.get(Outbox, parsed.key)
                now = datetime.now(UTC)
                verdict = classify(
                    Hit("open", request.headers.get("user-agent", ""), _client_ip(request), _headers(request), now,
                        _sent_at(outbox)),
                    min_delay=timedelta(seconds=state.settings.machine_min_delay),
                )  # fmt: skip
                await store(state, **_event(parsed, "open", verdict, request, now))
            except Exception:  # the pixel answers whatever happens behind it
                log.exception("open not recorded")
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    @app.get("/c/{token}", tags=["tracking"], status_code=302, response_class=RedirectResponse, dependencies=public,
             responses={302: {"description": "to the URL sealed in the token"},
                        404: _html("not a valid link; nothing recorded"), **RATE_LIMITED})  # fmt: skip
    async def click(token: str, request: Request) -> Response:
        """A click: recorded, then a redirect to the URL sealed inside the token and nowhere else."""
        state = st(request)
        parsed = state.verify(token, "click")
        if parsed is None or not parsed.url.startswith(("http://", "https://")):
            return state.page("invalid", 404, message="The link may have been changed or cut short.")
        now = datetime.now(UTC)
        async with state.sessionmaker() as session:
            outbox = await session.get(Outbox, parsed.key)
            others = (
                await session.execute(
                    select(EngagementEvent.occurred_at).where(
                        EngagementEvent.outbox_key == parsed.key,
                        EngagementEvent.kind == "click",
                        EngagementEvent.url != parsed.url,
                        EngagementEvent.occurred_at >= now - BURST_WINDOW,
                    )
                )
            ).scalars()
            other_clicks = tuple(as_utc(t) for t in others)
        verdict = classify(
            Hit("click", request.headers.get("user-agent", ""), _client_ip(request), _headers(request), now,
                _sent_at(outbox), honeypot=parsed.extra == "h",
                other_link_clicks=other_clicks),
            min_delay=timedelta(seconds=state.settings.machine_min_delay), burst=BURST_WINDOW,
        )  # fmt: skip
        await store(state, **_event(parsed, "click", verdict, request, now, url=parsed.url))
        target = parsed.url
        if parsed.extra != "h" and _on_site(parsed.url, state.all_site_origins):
            visitor = state.signer.sign(
                Token(kind="visitor", lead_id=parsed.lead_id, key="", issued_at=int(now.timestamp()))
            )
            target = _with_visitor(parsed.url, visitor)
        return RedirectResponse(target, status_code=302, headers={**NO_CACHE, "Referrer-Policy": "no-referrer"})

    @app.get("/beacon.js", tags=["site"], response_class=Response, dependencies=public, responses={
        200: {"description": "the script", "content": {"text/javascript": {"schema": {"type": "string"}}}},
        **RATE_LIMITED})  # fmt: skip
    async def beacon_js() -> Response:
        """The script the marketer's site embeds; it posts page views of visitors who came from an email."""
        return Response(BEACON_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    @app.post(
        "/v",
        tags=["site"],
        status_code=202,
        dependencies=public,
        responses={
            202: _json("taken; `recorded` says whether it counted", {"type": "object", "properties": {
                "recorded": {"type": "boolean"}, "detail": {"type": "string"}}, "required": ["recorded"]}),
            400: _json("malformed body"), 401: _json("missing or wrong site key"),
            403: _json("the page, or the Origin / Referer, is not on the site key's site; nothing recorded"),
            413: _json(f"the body is larger than {MAX_BEACON_BYTES} bytes"), **RATE_LIMITED,
        },
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
            "site_key": {"type": "string"}, "visitor": {"type": "string"}, "url": {"type": "string"},
            "title": {"type": "string", "description": f"the page's title (at most {MAX_TITLE} characters kept)"}}}}}}},
    )  # fmt: skip
    async def visit(request: Request, x_leadloop_site_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        """A page view from the site beacon: JSON {site_key, visitor, url, title} (sent as text/plain by browsers).

        The page and the request's Origin (or Referer) must be on the site key's origins (LEADLOOP_SITE_HOSTS).
        """
        state = st(request)
        cors = {"Access-Control-Allow-Origin": "*"}
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BEACON_BYTES:
            return JSONResponse({"detail": "body too large"}, status_code=413, headers=cors)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BEACON_BYTES:
                return JSONResponse({"detail": "body too large"}, status_code=413, headers=cors)
        if len(raw) > MAX_BEACON_BYTES:
            return JSONResponse({"detail": "body too large"}, status_code=413, headers=cors)
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return JSONResponse({"detail": "the body must be a JSON object"}, status_code=400, headers=cors)
        site_key = x_leadloop_site_key or body.get("site_key")
        origins = _site_for(site_key if isinstance(site_key, str) else None, state.site_origins)
        if origins is None:
            return JSONResponse({"detail": "missing or wrong site key"}, status_code=401, headers=cors)
        page = body.get("url")
        visitor = body.get("visitor")
        if not (isinstance(page, str) and page.startswith(("http://", "https://")) and len(page) <= 2000) or (
            REQUEST_CONTROL.search(page)
        ):
            return JSONResponse({"detail": "url must be the page's http(s) address"}, status_code=400, headers=cors)
        # the site key and a visitor id are public (in the page, in the landing URL): only pages of the key's
        # own site, reported from that site, may count
        if site_origin(page, address=True) not in origins:
            return JSONResponse({"detail": "url is not a page of this site key's site (LEADLOOP_SITE_HOSTS)"},
                                status_code=403, headers=cors)  # fmt: skip
        sender = _sender_origins(request)
        if not sender or not sender <= origins:
            return JSONResponse({"detail": "the Origin or Referer is not this site key's site"},
                                status_code=403, headers=cors)  # fmt: skip
        try:
            title = clean_title(body.get("title"))
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400, headers=cors)
        if not visitor:
            return JSONResponse({"recorded": False, "detail": "anonymous visitor"}, status_code=202, headers=cors)
        parsed = state.verify(str(visitor), "visitor")
        if parsed is None:
            return JSONResponse({"detail": "visitor id is not valid"}, status_code=400, headers=cors)
        now = datetime.now(UTC)
        async with state.sessionmaker() as session:
            earlier = (
                await session.execute(
                    select(EngagementEvent.occurred_at).where(
                        EngagementEvent.lead_id == parsed.lead_id,
                        EngagementEvent.kind == "visit",
                        EngagementEvent.occurred_at >= now - VISIT_BURST_WINDOW,
                    )
                )
            ).scalars()
            earlier_visits = tuple(as_utc(t) for t in earlier)
        verdict = classify(
            Hit("visit", request.headers.get("user-agent", ""), _client_ip(request), _headers(request), now,
                earlier_visits=earlier_visits)
        )  # fmt: skip
        stored = await store(
            state, **_event(parsed, "visit", verdict, request, now, url=page, title=title, outbox_key=None)
        )
        return JSONResponse({"recorded": stored}, status_code=202, headers=cors)

    @app.options("/v", include_in_schema=False)
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

    @app.get("/u/{token}", tags=["unsubscribe"], response_class=HTMLResponse, dependencies=public,
             responses={404: _html("not a valid link"), **RATE_LIMITED})  # fmt: skip
    async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
        """A confirmation page with a button; a GET never unsubscribes (scanners follow every link)."""
        state = st(request)
        if state.verify(token, "unsubscribe") is None:
            return state.page("invalid", 404, message="This unsubscribe link is not valid. Use the link in the email.")
        return state.page("unsubscribe", action=f"{state.settings.public_url}/u/{token}", sender=None)

    @app.post(
        "/u/{token}", tags=["unsubscribe"], response_class=HTMLResponse, dependencies=public,
        responses={400: _html("no List-Unsubscribe=One-Click in the body; nothing changed"),
                   404: _html("not a valid link"), **TOO_LARGE, **RATE_LIMITED},
        openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": {"List-Unsubscribe": {"type": "string"}}}}}}},
    )  # fmt: skip
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        """RFC 8058 one-click unsubscribe (and the confirmation button): recorded, the workflow told at once."""
        state = st(request)
        parsed = state.verify(token, "unsubscribe")
        if parsed is None:
            return state.page("invalid", 404, message="This unsubscribe link is not valid. Use the link in the email.")
        try:
            form = await request.form()
            one_click = form.get("List-Unsubscribe") == "One-Click"
        except Exception:  # an unreadable body is a request we do not act on
            one_click = False
        if not one_click:
            return state.page(
                "invalid", 400, message="The request did not carry List-Unsubscribe=One-Click; nothing changed."
            )
        async with state.sessionmaker() as session:
            lead = await session.get(Lead, parsed.lead_id)
            already = lead is not None and await session.get(Suppression, email_hash(lead.email)) is not None
        # one event per lead: a replayed request finds it stored and changes nothing
        await store(state, **_event(parsed, "unsubscribe", Verdict(True, "one-click unsubscribe"), request,
                                    datetime.now(UTC), event_id=f"unsubscribe-{parsed.lead_id}"))  # fmt: skip
        state.metrics.inc(UNSUBSCRIBES, repeat=str(already).lower())
        return state.page("unsubscribed", again=already, sender=None)

    @keyed_routes.post(
        "/leads",
        tags=["intake"],
        response_model=LeadAccepted,
        status_code=201,
        dependencies=keyed,
        responses={
            200: {"model": LeadAccepted, "description": "the lead existed (details merged) or is suppressed"},
            **NEEDS_KEY, **NOT_JSON, **TOO_LARGE, **INVALID,
            503: _json("stored, but Temporal is unreachable: retry, it is idempotent"),
        },
    )  # fmt: skip
    async def intake(lead: LeadIntake, request: Request) -> JSONResponse:
        """Enrol one lead: the same validation and de-duplication as `leadloop enroll`."""
        state = st(request)
        name = lead.cadence or state.settings.default_cadence
        try:
            cadence = load_cadence(cadence_path(state.settings.cadence_dir, name))
            scoring = current_scoring(state.settings.scoring_file)
            recycle = current_recycle(state.settings.cadence_dir)
        except RuleFileError as exc:
            raise HTTPException(
                422, [{"loc": ["body", "cadence"], "msg": line, "type": "value_error"} for line in exc.lines()]
            ) from None
        try:  # again with the installation's intake rules, which the body's own validation cannot know
            fields = LeadIn.model_validate(
                lead.model_dump(exclude={"cadence"}),
                context=intake_context(state.settings.intake_refuse_utf8_local_part),
            )
        except ValidationError as exc:
            raise HTTPException(
                422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            ) from None
        async with state.sessionmaker() as session:
            if await session.get(Suppression, email_hash(fields.email)) is not None:
                existing = (await session.execute(select(Lead.id).where(Lead.email == fields.email))).scalar()
                body = LeadAccepted(lead_id=existing or 0, status="suppressed", workflow="not_started")
                state.metrics.inc(INTAKES, status=body.status, workflow=body.workflow)
                return JSONResponse(body.model_dump(), status_code=200)
            (fields,), unknown = await match_owners(session, [fields])
            row, outcome = await upsert_lead(session, fields, cadence.name)
            await session.commit()
        warnings = [f"owner: {owner} is not a rep on the roster; stored without an owner (routing decides)"
                    for owner in unknown.values()]  # fmt: skip
        try:
            flow = await start_lead(
                await state.client(), row, cadence, task_queue=state.settings.task_queue,
                sales_task_queue=state.settings.sales_task_queue, time_scale=state.settings.time_scale, source="api",
                scoring=scoring, recycle=recycle, rep_time_scale=state.settings.rep_time_scale,
            )  # fmt: skip
        except Exception as exc:
            log.warning("lead %s stored, workflow not started: %s", row.id, exc)
            state.metrics.inc(INTAKES, status=outcome, workflow="failed")
            raise HTTPException(503, f"lead {row.id} stored, but its workflow could not be started; retry") from None
        body = LeadAccepted(lead_id=row.id, status=outcome, workflow=flow, warnings=warnings)
        state.metrics.inc(INTAKES, status=outcome, workflow=flow)
        return JSONResponse(body.model_dump(), status_code=201 if outcome == "new" else 200)

    async def rep_decision(
        lead_id: int, action: Literal["accept", "reject"], body: RepDecisionIn, request: Request
    ) -> RepActionResult:
        state = st(request)
        async with state.sessionmaker() as session:
            rep = (
                await session.execute(select(Rep).where(func.lower(Rep.email) == body.rep.strip().lower()))
            ).scalar_one_or_none()
        if rep is None:
            raise HTTPException(403, f"{body.rep} is not a rep")
        reason = (body.reason or "none") if action == "reject" else "none"
        try:
            result = await decide(
                await state.client(), lead_id, action,
                RepActionInput(rep_id=rep.id, reason=body.reason, note=body.note,
                               opportunity_id=body.opportunity_id, source="api"),
            )  # fmt: skip
        except DecisionRefused as exc:
            state.metrics.inc(REP_DECISIONS, action=action, reason=reason, source="api", result="refused")
            raise HTTPException(409, str(exc)) from None
        state.metrics.inc(REP_DECISIONS, action=action, reason=reason, source="api", result="applied")
        return result

    decision_answers: dict[int | str, dict[str, Any]] = {
        **NEEDS_KEY, 403: _json("not a rep"), 409: _json("the lead is not with this rep (or not with sales) any more"),
        **NOT_JSON, **TOO_LARGE, **INVALID,
    }  # fmt: skip

    @keyed_routes.post("/leads/{lead_id}/accept", tags=["sales"], dependencies=keyed, responses=decision_answers)
    async def accept_lead(lead_id: LeadId, body: RepDecisionIn, request: Request) -> RepActionResult:
        """For CRMs: the assigned rep accepts the lead (converted)."""
        return await rep_decision(lead_id, "accept", body, request)

    @keyed_routes.post("/leads/{lead_id}/reject", tags=["sales"], dependencies=keyed, responses=decision_answers)
    async def reject_lead(lead_id: LeadId, body: RepDecisionIn, request: Request) -> RepActionResult:
        """For CRMs: the assigned rep rejects the lead with a reason; recycle.yaml decides what happens."""
        if body.reason is None:
            raise HTTPException(422, [{"loc": ["body", "reason"], "msg": "a reject needs a reason", "type": "missing"}])
        return await rep_decision(lead_id, "reject", body, request)

    @keyed_routes.get("/leads/{lead_id}/dispositions", tags=["sales"], dependencies=keyed, responses={**NEEDS_KEY})
    async def lead_dispositions(lead_id: LeadId, request: Request) -> list[dict[str, Any]]:
        """Every rep decision on the lead, newest first: rep, action, reason, note, outcome, time."""
        async with st(request).sessionmaker() as session:
            return await list_dispositions(session, lead_id=lead_id)

    @keyed_routes.patch(
        "/leads/{lead_id}",
        tags=["intake"],
        dependencies=keyed,
        responses={
            **NEEDS_KEY, **NOT_JSON, 404: _json("no such lead"), **TOO_LARGE, **INVALID,
            409: _json("the new address is on the suppression list (erased, unsubscribed, bounced); nothing changed"),
        },
    )  # fmt: skip
    async def patch_lead(lead_id: LeadId, body: dict[str, str], request: Request) -> dict[str, Any]:
        """Fix a lead's data (validated as intake); a lead held for invalid data resumes nurture."""
        state = st(request)
        try:
            async with state.sessionmaker() as session:
                changed = await apply_update(
                    session, lead_id, body, intake_context(state.settings.intake_refuse_utf8_local_part)
                )
                await session.commit()
        except AddressSuppressed as exc:
            raise HTTPException(409, str(exc)) from None
        except LeadUpdateError as exc:
            if str(exc).startswith("no lead"):
                raise HTTPException(404, str(exc)) from None
            raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None
        told = await tell_workflow(await state.client(), lead_id, changed) if changed else False
        return {"lead_id": lead_id, "changed": changed, "workflow_told": told}

    async def rep_context(state: State, token: str) -> tuple[Token, Assignment, Lead, str] | HTMLResponse:
        """The link's hand-over, or the page that refuses it: not ours, expired, or no longer this rep's to decide."""
        parsed = state.verify(token, "rep", expiry=False)
        if parsed is None or parsed.extra not in ("accept", "reject"):
            return state.page(
                "invalid", 404, message="This link is not valid. The lead's current state is in your newest "
                "notification email.",
            )  # fmt: skip
        max_age = state.max_age("rep") or 0
        if time.time() - parsed.issued_at > max_age:
            state.metrics.inc(TOKENS_REFUSED, kind="rep")
            return state.page(
                "invalid", 410, message=f"This link has expired: Accept and Reject links work for "
                f"{max_age // 86400} days. Nothing was changed; the lead's current state is in your newest "
                "notification email.",
            )  # fmt: skip
        async with state.sessionmaker() as session:
            assignment = await session.get(Assignment, parsed.key)
            lead = await session.get(Lead, parsed.lead_id)
            newest = (
                await session.execute(
                    select(Assignment.key)
                    .where(Assignment.lead_id == parsed.lead_id)
                    .order_by(Assignment.cycle.desc(), Assignment.assigned_at.desc(), Assignment.key.desc())
                    .limit(1)
                )
            ).scalar()
        if assignment is None or lead is None or assignment.lead_id != parsed.lead_id or lead.erased_at:
            return state.page("invalid", 404, message="This hand-over no longer exists.")
        # "assigned" but not the newest: the lead went on to another hand-over before this row was closed
        status = "superseded" if assignment.status == "assigned" and newest != assignment.key else assignment.status
        return parsed, assignment, lead, status

    rep_answers: dict[int | str, dict[str, Any]] = {
        404: _html("not a valid link, or the hand-over is gone"),
        409: _html("the hand-over is decided, lapsed or superseded: no longer this rep's to decide; nothing changed"),
        410: _html("the link has expired (LEADLOOP_REP_LINK_MAX_AGE_DAYS); nothing changed"),
        **RATE_LIMITED,
    }

    @app.get("/r/{token}", tags=["sales"], response_class=HTMLResponse, dependencies=public, responses=rep_answers)
    async def rep_page(token: str, request: Request) -> HTMLResponse:
        """The page behind a rep's Accept or Reject link: the lead's summary and the form."""
        state = st(request)
        found = await rep_context(state, token)
        if isinstance(found, HTMLResponse):
            return found
        parsed, assignment, lead, status = found
        if status != "assigned":  # the lead's details are for the rep who has it now
            return state.page("decided", 409, headline="Nothing to do", back_at=None,
                              outcome=f"This hand-over is {status}. Nothing more to do here.")  # fmt: skip
        async with state.sessionmaker() as session:
            rep = await session.get(Rep, assignment.rep_id) if assignment.rep_id else None
        fields = (("Title", lead.title), ("Company", lead.company), ("Industry", lead.industry),
                  ("Company size", lead.company_size), ("Country", lead.country), ("Email", lead.email))  # fmt: skip
        return state.page(
            "rep", action=parsed.extra, post_url=f"{state.settings.public_url}/r/{token}",
            lead={"id": lead.id, "name": " ".join(p for p in (lead.first_name, lead.last_name) if p),
                  "company": lead.company},
            profile=[(k, v) for k, v in fields if v], rep_name=rep.name if rep else "a rep",
            assigned_at=f"{as_utc(assignment.assigned_at):%d %b %Y %H:%M} UTC", rule=assignment.rule,
            score=assignment.score, handover=status, reasons=list(REASON_LABELS.items()),
        )  # fmt: skip

    @app.post(
        "/r/{token}", tags=["sales"], response_class=HTMLResponse, dependencies=public,
        responses={**rep_answers, 400: _html("the form could not be read; nothing changed"),
                   422: _html("a reject without one of the reasons; nothing changed"), **TOO_LARGE},
        openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": {"reason": {"type": "string", "enum": list(REASON_LABELS)},
                                             "note": {"type": "string"}, "opportunity_id": {"type": "string"}}}}}}},
    )  # fmt: skip
    async def rep_submit(token: str, request: Request) -> HTMLResponse:
        """Runs the rep's accept or reject and shows what now happens to the lead."""
        state = st(request)
        found = await rep_context(state, token)
        if isinstance(found, HTMLResponse):
            return found
        parsed, assignment, lead, status = found
        if status != "assigned":  # e.g. the form submitted twice, or the lead went to another rep
            return state.page("decided", 409, headline="Nothing changed", back_at=None,
                              outcome=f"This hand-over of lead {lead.id} is already {status}.")  # fmt: skip
        try:
            form = await request.form()
        except Exception:  # a malformed body is a request we do not act on
            return state.page("invalid", 400, message="The form could not be read; nothing changed.")
        reason = str(form.get("reason") or "") or None
        note = NOTE_CONTROL.sub("", str(form.get("note") or ""))[:2000]
        opportunity = REQUEST_CONTROL.sub("", str(form.get("opportunity_id") or ""))[:200] or None
        if parsed.extra == "reject" and reason not in REASON_LABELS:
            return state.page("invalid", 422, message="Pick one of the reasons to reject the lead.")
        decision = {"action": parsed.extra, "reason": (reason or "none") if parsed.extra == "reject" else "none",
                    "source": "page"}  # fmt: skip
        try:
            result = await decide(
                await state.client(), lead.id, parsed.extra,  # type: ignore[arg-type]
                RepActionInput(rep_id=assignment.rep_id, reason=reason, note=note, opportunity_id=opportunity,
                               source="page"),
            )  # fmt: skip
        except DecisionRefused as exc:
            state.metrics.inc(REP_DECISIONS, result="refused", **decision)
            return state.page("decided", 409, headline="Nothing changed", outcome=str(exc), back_at=None)
        state.metrics.inc(REP_DECISIONS, result="applied", **decision)
        headline = "Lead accepted" if parsed.extra == "accept" else "Lead given back"
        back = f"{result.back_at:%a %d %b %Y}" if result.back_at else None
        return state.page("decided", headline=headline, outcome=f"Lead {lead.id}: {result.outcome}.", back_at=back)

    @app.get("/site/{page:path}", include_in_schema=False, response_class=HTMLResponse)
    async def demo_site(page: str, request: Request) -> HTMLResponse:
        """The demo company's website, with the beacon embedded (LEADLOOP_DEMO_SITE; by default only in the demo)."""
        state = st(request)
        if not state.settings.serves_demo_site():
            raise HTTPException(404)
        title = page.strip("/").replace("-", " ").capitalize() or "Welcome"
        return state.page(
            "site", title=title, site_url=state.settings.site_url, public_url=state.settings.public_url,
            site_key=state.settings.site_keys[0] if state.settings.site_keys else "",
            guarded=False,  # it plays the marketer's site, which sets its own rules
        )  # fmt: skip

    app.include_router(keyed_routes)
    return app


async def _drain_every(sdk: SdkMetrics, seconds: float, stop: asyncio.Event) -> None:
    """Empty the SDK's metric buffer between scrapes, so a full buffer never drops an update."""
    while not stop.is_set():
        sdk.drain()
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


def _sent_at(outbox: Outbox | None) -> datetime | None:
    return as_utc(outbox.sent_at) if outbox and outbox.sent_at else None


def _event(token: Token, kind: str, verdict: Verdict, request: Request, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "lead_id": token.lead_id,
        "kind": kind,
        "human": verdict.human,
        "reason": verdict.reason,
        "outbox_key": token.key or None,
        "user_agent": _plain(request.headers.get("user-agent")),
        "client_ip": _client_ip(request),
        "at": at,
        **extra,
    }
