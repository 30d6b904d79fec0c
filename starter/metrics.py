"""The HTTP service's /metrics: leadloop's counters and its own Temporal client's SDK metrics, in one registry."""

import gc
from collections.abc import Iterator, Mapping

import prometheus_client
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

from leadloop.domain.inbound import INBOUND_KINDS
from leadloop.domain.metrics import (
    HTTP_COUNTERS,
    HTTP_REQUESTS,
    INBOUND_MESSAGES,
    NOT_CLASSIFIED,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
    Counter,
)
from leadloop.services.inbound import STATUSES

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
#: The SDK exporter's buckets for request latencies (seconds), so both services' histograms line up.
LATENCY_BUCKETS = (0.05, 0.1, 0.5, 1.0, 2.5, 10.0)
_Labels = tuple[tuple[str, str], ...]


class HttpMetrics:
    """One app's registry (not the process's global one: several apps in one process never clash)."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self._counters = {
            spec.name: prometheus_client.Counter(spec.name, spec.help, spec.labels, registry=self.registry)
            for spec in HTTP_COUNTERS
        }

        self._inbound = prometheus_client.Gauge(
            INBOUND_MESSAGES.name, INBOUND_MESSAGES.help, INBOUND_MESSAGES.labels, registry=self.registry
        )

        self._deliveries = prometheus_client.Gauge(
            WEBHOOK_DELIVERIES.name, WEBHOOK_DELIVERIES.help, WEBHOOK_DELIVERIES.labels, registry=self.registry
        )
        self._endpoints = prometheus_client.Gauge(
            WEBHOOK_ENDPOINTS.name, WEBHOOK_ENDPOINTS.help, WEBHOOK_ENDPOINTS.labels, registry=self.registry
        )

    def inc(self, spec: Counter, **labels: str) -> None:
        self._counters[spec.name].labels(**spec.check(labels)).inc()

    def set_inbound(self, counts: Mapping[tuple[str | None, str], int]) -> None:
        """The stored inbound messages by kind and status (`count_inbound`); every known pair is shown, 0 when
        there is none, so a rate over it starts from zero rather than from a missing series."""
        values = {(kind, status): 0 for kind in (*INBOUND_KINDS, NOT_CLASSIFIED) for status in STATUSES}
        for (kind, status), n in counts.items():
            values[(kind or NOT_CLASSIFIED, status)] = values.get((kind or NOT_CLASSIFIED, status), 0) + n
        for (kind, status), n in values.items():
            self._inbound.labels(kind=kind, status=status).set(n)

    def set_webhooks(self, deliveries: Mapping[tuple[str, bool], int], enabled: int, disabled: int) -> None:
        """Lifecycle webhook deliveries by status and failing (`count_deliveries`), and endpoints by state; every
        pair is a series from the start."""
        values = {(status, failing): 0 for status in ("pending", "delivered", "dead") for failing in (False, True)}
        values.update(deliveries)
        for (status, failing), n in values.items():
            self._deliveries.labels(status=status, failing=str(failing).lower()).set(n)
        self._endpoints.labels(state="enabled").set(enabled)
        self._endpoints.labels(state="disabled").set(disabled)

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class SdkMetrics(Collector):
    """The HTTP service's Temporal runtime, its metrics kept in a buffer and folded into Prometheus families,
    named as the worker's exporter names them (`_total` counters, latencies in seconds)."""

    def __init__(self, buffer_size: int = 100_000) -> None:
        self._buffer: MetricBuffer | None = MetricBuffer(buffer_size, MetricBufferDurationFormat.SECONDS)
        self.runtime: Runtime | None = Runtime(telemetry=TelemetryConfig(metrics=self._buffer))
        self._about: dict[str, tuple[int, str, str | None]] = {}  # name -> kind, help, unit
        self._values: dict[str, dict[_Labels, float]] = {}  # counters and gauges
        self._histograms: dict[str, dict[_Labels, list[float]]] = {}  # bucket counts, then sum and count

    def drain(self) -> None:
        """Fold what the buffer holds; run often enough that it never fills (a full buffer drops updates)."""
        if self._buffer is None:
            return
        for update in self._buffer.retrieve_updates():
            metric = update.metric
            self._about.setdefault(metric.name, (metric.kind, metric.description or metric.name, metric.unit))
            labels: _Labels = tuple(sorted((str(k), str(v)) for k, v in update.attributes.items()))
            if metric.kind == BUFFERED_METRIC_KIND_COUNTER:
                values = self._values.setdefault(metric.name, {})
                values[labels] = values.get(labels, 0.0) + update.value
            elif metric.kind == BUFFERED_METRIC_KIND_GAUGE:
                self._values.setdefault(metric.name, {})[labels] = float(update.value)
            else:
                series = self._histograms.setdefault(metric.name, {})
                counts = series.setdefault(labels, [0.0] * (len(LATENCY_BUCKETS) + 2))
                for i, bound in enumerate(LATENCY_BUCKETS):
                    if update.value <= bound:
                        counts[i] += 1
                counts[-2] += update.value
                counts[-1] += 1

    def collect(self) -> Iterator[Metric]:
        self.drain()
        # series of one SDK metric carry different label sets (namespace, task queue only where they apply)
        for name, (kind, help, unit) in sorted(self._about.items()):
            if kind == BUFFERED_METRIC_KIND_COUNTER:
                family = Metric(name, help, "counter")
                for labels, value in self._values.get(name, {}).items():
                    family.add_sample(f"{name}_total", dict(labels), value)
            elif kind == BUFFERED_METRIC_KIND_GAUGE:
                family = Metric(name, help, "gauge")
                for labels, value in self._values.get(name, {}).items():
                    family.add_sample(name, dict(labels), value)
            else:
                shown = f"{name}_seconds" if unit == "s" else name
                family = Metric(shown, help, "histogram")
                for labels, counts in self._histograms.get(name, {}).items():
                    for i, bound in enumerate(LATENCY_BUCKETS):
                        family.add_sample(f"{shown}_bucket", {**dict(labels), "le": f"{bound:g}"}, counts[i])
                    family.add_sample(f"{shown}_bucket", {**dict(labels), "le": "+Inf"}, counts[-1])
                    family.add_sample(f"{shown}_count", dict(labels), counts[-1])
                    family.add_sample(f"{shown}_sum", dict(labels), counts[-2])
            yield family

    def close(self) -> None:
        """Stop the runtime now, not at interpreter shutdown (where freeing its threads aborts the process).

        Whatever still holds the client must have let go of it first."""
        self.drain()
        self._buffer = None
        self.runtime = None
        gc.collect()


class RequestCounter:
    """ASGI middleware: every request counted by method, route template (never the raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def keep_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, keep_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.inc(HTTP_REQUESTS, method=scope["method"], route=route, status=str(status))
