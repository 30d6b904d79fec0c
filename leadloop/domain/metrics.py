"""leadloop's own Prometheus counters, named in one place, and the small label values they take (pure)."""

from dataclasses import dataclass

from temporalio.common import MetricMeter

from leadloop.domain.classify import RULES


@dataclass(frozen=True)
class Counter:
    """A counter and the only labels it takes: small fixed sets, never lead ids, addresses or free text."""

    name: str
    help: str
    labels: tuple[str, ...] = ()

    def add(self, meter: MetricMeter, **labels: str) -> None:
        """Count one on a Temporal SDK meter (`activity.metric_meter()`, the replay-safe `workflow.metric_meter()`)."""
        meter.create_counter(self.name, self.help).add(1, self.check(labels))

    def check(self, labels: dict[str, str]) -> dict[str, str]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, not {tuple(labels)}")
        return labels


# ---------------------------------------------------------------- the worker (SDK meters, its /metrics)

EMAILS_SENT = Counter(
    "leadloop_emails_sent",
    "Nurture emails handed to the SMTP relay (status uncertain: the reply was lost, it may have gone out)",
    ("cadence", "step", "status"),
)
EMAIL_FAILURES = Counter(
    "leadloop_email_failures",
    "Send attempts that failed, by error type (SmtpUnavailable and SmtpTemporary are retried)",
    ("cadence", "step", "error"),
)
REP_NOTIFICATIONS = Counter("leadloop_rep_notifications", "Hand-over emails sent to reps", ("status",))
REP_NOTIFICATION_FAILURES = Counter(
    "leadloop_rep_notification_failures", "Hand-over emails that failed, by error type", ("error",)
)
ESCALATIONS = Counter("leadloop_escalations", "Leads whose score reached the threshold: handed to sales", ("cadence",))
LAPSES = Counter("leadloop_handover_lapses", "Hand-overs a rep let lapse (the lead moves on)", ("team",))
ACCEPTANCES = Counter("leadloop_acceptances", "Leads a rep accepted (converted)", ("team",))
REJECTIONS = Counter(
    "leadloop_rejections", "Leads a rep rejected, by reason and what the recycle policy did", ("reason", "disposition")
)
RECYCLES = Counter("leadloop_recycles", "Rejected leads taken back into nurture", ("cadence",))
BIG_BANGS = Counter("leadloop_big_bangs_sent", "Big-bang emails sent after the unopened streak", ("cadence",))
UNSUBSCRIBES_APPLIED = Counter("leadloop_unsubscribes_applied", "Unsubscribes a lead's workflow acted on", ("stage",))
INBOUND_APPLIED = Counter(
    "leadloop_inbound_applied",
    "Inbound messages a lead's workflow applied, by kind (policy blocks: the sender's problem, not the address's)",
    ("kind",),
)
LEADS_FINISHED = Counter("leadloop_leads_finished", "Lead workflows that ended, by final stage", ("stage",))
WEBHOOK_ATTEMPTS = Counter(
    "leadloop_webhook_attempts",
    "Attempts at delivering lifecycle webhooks to CRMs: delivered (2xx), failed (retried), gone (410)",
    ("result",),
)
WEBHOOKS_DEAD = Counter(
    "leadloop_webhooks_dead",
    "Lifecycle webhooks dead-lettered: retries ran out, or the endpoint answered 410",
    ("reason",),
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "leadloop_webhook_endpoints_disabled",
    "CRM webhook endpoints disabled: failing for the whole retry window, or gone (410)",
    ("reason",),
)

# ---------------------------------------------------------------- the HTTP service (its /metrics)

ENGAGEMENT_EVENTS = Counter(
    "leadloop_engagement_events",
    "Engagement events stored, by kind, human or machine, and the rule that decided",
    ("kind", "human", "rule"),
)
INTAKES = Counter(
    "leadloop_intakes", "POST /leads: leads taken in, and what became of their workflow", ("status", "workflow")
)
UNSUBSCRIBES = Counter(
    "leadloop_unsubscribes", "One-click unsubscribes (repeat: the lead was already off the list)", ("repeat",)
)
REP_DECISIONS = Counter(
    "leadloop_rep_decisions",
    "Reps' accepts and rejects, from the CRM API or the rep's page, applied or refused",
    ("action", "reason", "source", "result"),
)
TOKENS_REFUSED = Counter(
    "leadloop_tokens_refused", "Links whose token did not verify (tampered, expired, foreign)", ("kind",)
)
WEBHOOK_EVENTS = Counter(
    "leadloop_webhook_events",
    "Bounces, blocks and complaints from providers' webhooks, by provider, kind, and new or a repeat",
    ("provider", "kind", "result"),
)
WEBHOOKS_REFUSED = Counter(
    "leadloop_webhooks_refused",
    "Provider webhook requests refused (nothing stored), by provider and why",
    ("provider", "problem"),
)
HTTP_REQUESTS = Counter(
    "leadloop_http_requests", "HTTP requests by route template and status", ("method", "route", "status")
)

HTTP_COUNTERS = (
    ENGAGEMENT_EVENTS,
    INTAKES,
    UNSUBSCRIBES,
    REP_DECISIONS,
    TOKENS_REFUSED,
    WEBHOOK_EVENTS,
    WEBHOOKS_REFUSED,
    HTTP_REQUESTS,
)


@dataclass(frozen=True)
class Gauge:
    """A number read fresh at each scrape (from the database), with the only labels it takes."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


#: Every channel stores inbound mail (the IMAP reader, the webhooks, the demo's mailbox), each in its own process:
#: the HTTP service counts the stored rows when it is scraped, so one endpoint shows them all.
INBOUND_MESSAGES = Gauge(
    "leadloop_inbound_messages",
    "Inbound messages stored (replies, auto-replies, bounces, complaints), by kind and status, read from the "
    "database at each scrape; kind not_classified: no verdict yet",
    ("kind", "status"),
)
#: The HTTP service reads these from the database at each scrape, so the operator sees deliveries failing now.
WEBHOOK_DELIVERIES = Gauge(
    "leadloop_webhook_deliveries",
    "Lifecycle webhook deliveries by status (pending, delivered, dead) and whether the last attempt failed, read "
    "from the database at each scrape",
    ("status", "failing"),
)
WEBHOOK_ENDPOINTS = Gauge(
    "leadloop_webhook_endpoints", "CRM webhook endpoints by state (enabled, disabled), read at each scrape", ("state",)
)
#: the label value of a stored message without a verdict
NOT_CLASSIFIED = "not_classified"

#: the values ENGAGEMENT_EVENTS' `rule` label takes: the classifier's stable label of the deciding evidence
#: (Verdict.rule), never its reason (reasons hold seconds, user agents and URLs: too many values for a label)
ENGAGEMENT_RULES = RULES
