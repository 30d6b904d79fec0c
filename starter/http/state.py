"""What the HTTP service holds for its lifetime: settings, database, Temporal client, signer, pages, codec, counters,
the provider webhooks' verification and the inbound relay."""

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.runtime import Runtime

from leadloop.domain.metrics import ENGAGEMENT_EVENTS
from leadloop.domain.ranges import PACKAGED_RANGES, load_ranges
from leadloop.domain.tokens import Signer
from leadloop.infra.settings import Settings
from leadloop.infra.temporal import connect
from leadloop.services.events import EventSignaller
from leadloop.services.inbound_delivery import InboundRelay
from leadloop.services.inbound_retention import Retention
from leadloop.services.tracking import store_hit, store_visit
from leadloop.services.webhooks import Fetch, Webhooks
from starter.codec_server import CodecServer
from starter.http.callers import KeyRing
from starter.http.links import Links
from starter.http.pages import Pages
from starter.http.rate_limit import RateLimiter
from starter.metrics import HttpMetrics


class EventRecorder:
    """Stores a judged hit, then has its workflow signalled and counts it."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], signaller: EventSignaller, metrics: HttpMetrics
    ) -> None:
        self.sessionmaker = sessionmaker
        self.signaller = signaller
        self.metrics = metrics

    async def record(self, **event: Any) -> bool:
        """Whether the event is new (stored, and its workflow to be told)."""
        rule = event.pop("rule", "other")  # the verdict's label for the counter; not stored
        stored = await store_hit(self.sessionmaker, **event)
        if stored:
            self._told(event, rule)
        return stored

    async def record_visit(
        self, *, click: tuple[str, str] | None, within: timedelta, **event: Any
    ) -> tuple[bool, bool]:
        """A page view, and the confirmation of the click that sent its visitor (`click`: outbox key and click id)
        when it brings one: (stored, confirmed)."""
        rule = event.pop("rule", "other")
        stored, confirmed = await store_visit(self.sessionmaker, click=click, within=within, **event)
        if stored:
            self._told(event, rule)
        return stored, confirmed

    def _told(self, event: dict[str, Any], rule: str) -> None:
        self.signaller.notify(event["lead_id"])
        self.metrics.inc(ENGAGEMENT_EVENTS, kind=event["kind"], human=str(event["human"]).lower(), rule=rule)


class State:
    """What the app holds from its startup to its shutdown; routes reach it through starter.http.deps."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: HttpMetrics,
        limiter: RateLimiter,
        *,
        client: Client | None = None,
        runtime: Runtime | None = None,
        fetch: Fetch | None = None,
    ) -> None:
        """`client` given by tests; else one is built on first use, on `runtime` (the SDK runtime whose
        metrics the app serves). `fetch` gets SNS certificates and subscription links (tests give their own)."""
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.limiter = limiter
        # a broken ranges file stops the start with its error: hits judged without it would escalate scanners
        self.ranges = load_ranges(settings.machine_ranges_file or PACKAGED_RANGES)
        self.signer = Signer(settings.signing_keys())
        self.links = Links(settings, self.signer, metrics)
        self.site_origins = settings.site_origins()
        self.all_site_origins = frozenset().union(*self.site_origins.values())
        self.pages = Pages(settings.public_url)
        self.codec = CodecServer(settings)
        self._client = client
        self._runtime = runtime
        self.signaller = EventSignaller(sessionmaker, self.client, settings.coalesce_seconds)
        self.recorder = EventRecorder(sessionmaker, self.signaller, metrics)
        self.webhooks = Webhooks(settings, fetch)
        # its rounds also drop raw bodies past retention: webhooks keep their events' JSON as the raw body
        self.inbound = InboundRelay(
            sessionmaker, self.client, retention=Retention(sessionmaker, settings.inbound_retention_days)
        )
        self.callers = KeyRing(settings, sessionmaker)

    async def client(self) -> Client:
        """The Temporal client, connected lazily on first use."""
        if self._client is None:
            self._client = await connect(self.settings, lazy=True, runtime=self._runtime)
        return self._client

    def release_client(self) -> None:
        """Forget the client built on the app's runtime, which is closing."""
        self._client, self._runtime = None, None
