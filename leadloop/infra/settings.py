"""Settings read from the environment (prefix LEADLOOP_) and an optional .env file."""

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadloop import DATA_DIR, PROJECT_ROOT
from leadloop.domain.mail import ascii_domain
from leadloop.domain.visits import site_origin


def _state_dir() -> Path:
    """`.leadloop/` beside the checkout when leadloop runs from one (`make demo`), else in the working directory:
    an installed package writes nothing into site-packages."""
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / ".leadloop"
    return Path.cwd() / ".leadloop"


STATE_DIR = _state_dir()
#: The embedded dev server's file. Its name changes when a search attribute changes type (the server
#: keeps the first type it saw), so an older `.leadloop/` never clashes: nothing is re-sent meanwhile,
#: the outbox in leadloop's own database remembers every email.
DEV_SERVER_DB = "temporal-2.db"
#: The published defaults: fine for `leadloop demo`, refused by the worker and the HTTP service anywhere else.
DEFAULT_SECRET_KEY = "dev-insecure-change-me"
DEMO_API_KEY = "demo-api-key"
#: The shortest signing key a process outside the demo accepts: 256 bits, HMAC-SHA256's own strength.
MIN_SECRET_BYTES = 32
_NEW_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

#: An SNS topic's ARN in any partition (aws, aws-cn, aws-us-gov); a FIFO topic's name ends .fifo.
_SNS_TOPIC_ARN = re.compile(r"arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATIONS = ("webhook_retry_initial", "webhook_retry_max", "webhook_retry_for", "webhook_timeout")


class InsecureSettings(RuntimeError):
    """A process that signs or verifies links would run, outside the demo, with a secret anyone may know."""


class Settings(BaseSettings):
    """Everything leadloop needs to reach its parts; the defaults run the embedded stack."""

    model_config = SettingsConfigDict(env_prefix="LEADLOOP_", env_file=".env", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool = False
    task_queue: str = "leadloop"

    database_url: str = f"sqlite+aiosqlite:///{STATE_DIR / 'leadloop.db'}"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    smtp_timeout: float = 20.0
    smtp_messages_per_connection: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="messages sent over one SMTP connection before it is closed; 1 opens one per message",
    )
    smtp_idle_seconds: float = Field(
        default=10.0, gt=0, le=300, description="an SMTP connection idle longer than this is closed, not reused"
    )

    intake_refuse_utf8_local_part: bool = Field(
        default=False,
        description="intake refuses an address with non-ASCII characters before the @ (josé@…), which only a "
        "relay offering SMTPUTF8 can deliver; off: such leads are taken, and a send through a relay without "
        "SMTPUTF8 is blocked (send_blocked) with that reason",
    )

    from_address: str = "Leadloop Demo <hello@leadloop.example>"
    bounce_domain: str = Field(
        default="",
        max_length=253,
        description="every send's envelope sender (MAIL FROM) becomes bounces+<signed outbox key>@ this domain "
        "(VERP), so a bounce names its send; its mail must reach leadloop's inbound mailbox; empty: the From "
        "address is the envelope sender",
    )
    inbound_retention_days: int = Field(
        default=30, ge=1, description="raw inbound messages (replies, bounces) older than this lose their body"
    )
    imap_host: str = Field(
        default="", max_length=253, description="the inbound mailbox's IMAP server (`leadloop inbox`); empty: none"
    )
    imap_port: int | None = Field(
        default=None, ge=1, le=65535, description="unset: 993 with LEADLOOP_IMAP_SECURITY=ssl, else 143"
    )
    imap_security: Literal["ssl", "starttls", "none"] = Field(
        default="ssl",
        description="ssl: TLS from the first byte (port 993); starttls: plain, then STARTTLS before the login "
        "(refused when the server does not offer it); none: no TLS at all, for a server on loopback only",
    )
    imap_ca_file: Path | None = Field(
        default=None, description="a PEM file of the CAs that sign the IMAP server's certificate; unset: the system's"
    )
    imap_user: str = Field(default="", max_length=320, description="the mailbox's login name")
    imap_password: SecretStr | None = Field(default=None, description="the mailbox's password")
    imap_folders: list[str] = Field(
        default_factory=lambda: ["INBOX"], description="the folders `leadloop inbox` reads (JSON list)"
    )
    imap_after: Literal["flag", "move"] = Field(
        default="flag",
        description="what becomes of a message once it is stored: `flag` sets the keyword LEADLOOP_IMAP_FLAG on "
        "it, `move` moves it to LEADLOOP_IMAP_MOVE_TO",
    )
    imap_flag: str = Field(
        default="$LeadloopStored",
        description="the keyword that marks a stored message; messages without it are read (a keyword, not a "
        "system flag such as \\Seen: people reading the mailbox change those)",
    )
    imap_move_to: str = Field(default="", max_length=200, description="the folder stored messages move to")
    imap_poll_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="how often the folders are read when the server offers no IDLE"
    )
    imap_idle_seconds: float = Field(
        default=1500.0,
        gt=0,
        le=1740,
        description="the longest one IDLE waits before it is renewed (RFC 2177: under 29 minutes); with several "
        "folders, IDLE watches the first and the others are read at least every LEADLOOP_IMAP_POLL_SECONDS",
    )
    imap_timeout: float = Field(
        default=60.0, gt=0, le=3600, description="seconds to wait for the IMAP server at each step before reconnecting"
    )
    postal_address: str = "Leadloop Demo Ltd, 1 Example Street, 10557 Athens, Greece"
    public_url: str = "http://127.0.0.1:8000"
    site_url: str = Field(default="http://127.0.0.1:8000/site", description="the marketer's website, for links")
    demo: bool = Field(
        default=False, description="the local demo: the HTTP service may run with the published secret and API keys"
    )
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    old_secret_keys: list[SecretStr] = Field(
        default_factory=list, description="keys rotated out: their tokens still verify, nothing new is signed"
    )
    api_keys: list[SecretStr] = Field(default_factory=lambda: [SecretStr(DEMO_API_KEY)])
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="how long the HTTP service trusts its last look-up of a `leadloop keys` key (a revoked key "
        "stops working within this time; 0: every request looks it up)",
    )
    site_keys: list[str] = Field(default_factory=lambda: ["demo-site-key"])
    site_hosts: dict[str, list[str]] = Field(
        default_factory=dict,
        description='the origins each site key may report page views of: {"KEY": ["https://www.example.com"]}; '
        "a key not named here is bound to LEADLOOP_SITE_URL's origin",
    )
    default_cadence: str = "welcome"
    demo_site: bool | None = Field(
        default=None, description="serve the demo company's website under /site; unset: only in the demo"
    )
    api_docs: bool | None = Field(
        default=None, description="serve the API's documentation pages /docs and /redoc; unset: only in the demo"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks of the proxies in front of the HTTP service: only their "
        "X-Forwarded-For and X-Forwarded-Proto are believed; empty: nobody's",
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token the HTTP service's /metrics asks for; open when unset"
    )
    worker_metrics_address: str = Field(
        default="127.0.0.1:9464", description="host:port of the worker's Prometheus /metrics; empty turns it off"
    )
    worker_cached_workflows: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="leads a worker keeps in memory (the SDK's sticky cache); more leads than this awake at "
        "once are replayed from their history each time they wake",
    )
    worker_max_activities: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="activities (sends, routing) one worker runs at once; all share one Python process's core",
    )
    sales_task_queue: str = Field(
        default="",
        max_length=200,
        description="leads enrolled while this is set run their sales path (routing, the rep's notification, "
        "hand-over bookkeeping) on this task queue, so a worker of role `sales` serves it apart from the drip; "
        "empty: the sales path shares the leads' task queue",
    )
    worker_role: Literal["all", "nurture", "sales"] = Field(
        default="all",
        description="what `worker.py` serves: `nurture` the task queue (workflows and every activity), `sales` "
        "only the sales task queue's activities, `all` both (the sales queue when one is set)",
    )
    token_max_age_days: int = Field(default=400, ge=1, description="open and click links older than this are dead")
    rep_link_max_age_days: int = Field(default=7, ge=1, description="a rep's Accept or Reject link older is dead")
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="the HTTP service refuses a larger request body with 413 before reading it (the codec aside)",
    )
    codec_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="the same for the codec server: a UI page of history (Temporal's own limit is 2 MiB a payload)",
    )
    rate_limit_per_minute: int = Field(
        default=600,
        ge=0,
        le=1_000_000,
        description="requests per minute one client address may make to the public links (pixel, clicks, beacon, "
        "unsubscribe, rep pages); 0 turns the limit off",
    )
    rate_limit_burst: int = Field(
        default=100, ge=1, le=1_000_000, description="how many may come at once before the per-minute pace holds"
    )
    machine_min_delay: float = Field(default=5.0, ge=0, description="hits sooner than this after a send are machines")
    machine_ranges_file: Path | None = Field(
        default=None,
        description="the published address ranges of gateways, clouds and mail proxies (`leadloop ranges update` "
        "writes one); unset: the file shipped in the package",
    )
    click_confirm_seconds: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description="a click counts as confirmed when the landing page's beacon reports its visitor within this",
    )
    coalesce_seconds: float = Field(default=0.5, ge=0, description="events of one lead within this go as one signal")
    relay_interval: float = Field(default=5.0, gt=0, description="how often pending events are signalled again")
    # the shipped samples by default; a real deployment points these at its own marketers' files
    routing_file: Path = DATA_DIR / "cadences" / "routing.yaml"
    scoring_file: Path = DATA_DIR / "cadences" / "scoring.yaml"

    cadence_dir: Path = DATA_DIR / "cadences"
    template_dir: Path = DATA_DIR / "templates" / "email"
    mail_dir: Path = STATE_DIR / "mail"
    state_dir: Path = STATE_DIR

    time_scale: float = Field(default=1.0, gt=0, le=10_000_000)
    rep_time_scale: float | None = Field(
        default=None,
        gt=0,
        le=10_000_000,
        description="how much faster than real time a rep's response deadline runs; unset: as fast as the cadence "
        "(LEADLOOP_TIME_SCALE); the demo sets 1, so a person can act on the rep's email in time",
    )

    encryption_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='AES-GCM keys by id, base64 (16, 24 or 32 bytes): {"2026-11": "..."}; empty: no encryption',
    )
    encryption_key_id: str | None = Field(default=None, description="the key new payloads are sealed with")
    codec_token: SecretStr | None = Field(
        default=None, description="what the codec server (/codec/...) asks for; the codec server is off when unset"
    )
    codec_cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:8233", "http://127.0.0.1:8233"],
        description="the Temporal UI origins allowed to call the codec server from the browser",
    )

    ses_topic_arns: list[str] = Field(
        default_factory=list,
        description="the SNS topics (ARNs) whose Amazon SES bounce and complaint notices are taken; empty: none "
        "(POST /webhooks/ses answers 503, so SNS retries)",
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None,
        description="the verification key of SendGrid's signed Event Webhook (base64, as SendGrid shows it); "
        "unset: POST /webhooks/sendgrid answers 503 (SendGrid retries)",
    )
    mailgun_signing_key: SecretStr | None = Field(
        default=None, description="Mailgun's HTTP webhook signing key; unset: POST /webhooks/mailgun answers 503"
    )
    postmark_webhook_user: str | None = Field(
        default=None,
        description="the Basic user name set on Postmark's webhook URL; unset: /webhooks/postmark answers 503",
    )
    postmark_webhook_password: SecretStr | None = Field(
        default=None, description="the Basic password set on Postmark's webhook URL"
    )

    webhook_retry_initial: timedelta = Field(
        default=timedelta(seconds=10),
        description="a CRM webhook's first retry after this (10s, 5m, 1h, 3d, or seconds); each retry waits "
        "twice as long",
    )
    webhook_retry_max: timedelta = Field(
        default=timedelta(hours=1), description="the longest wait between two retries of a CRM webhook"
    )
    webhook_retry_for: timedelta = Field(
        default=timedelta(days=3),
        description="a CRM webhook is retried this long, then dead-lettered; an endpoint that accepted nothing "
        "for as long is disabled",
    )
    webhook_timeout: timedelta = Field(
        default=timedelta(seconds=15), description="how long one webhook attempt waits for the CRM's answer"
    )
    webhook_allow_private: bool | None = Field(
        default=None,
        description="let CRM webhook endpoints be loopback, private or link-local addresses (or names resolving "
        "to one); unset: only in the demo. Off, such an endpoint is refused when added and at every send",
    )

    def private_webhooks_allowed(self) -> bool:
        """Whether webhook endpoints may reach addresses that are not global (LEADLOOP_WEBHOOK_ALLOW_PRIVATE)."""
        return self.demo if self.webhook_allow_private is None else self.webhook_allow_private

    def signing_keys(self) -> list[str]:
        """Every accepted key; the first signs."""
        return [k.get_secret_value() for k in (self.secret_key, *self.old_secret_keys)]

    def signing_key_problems(self) -> list[str]:
        """What makes the signing keys unfit for anything but the demo: a link signed with a key anyone can
        read or guess is a link anyone can forge, and one signed with a key the HTTP service does not share
        is dead for its recipient."""
        problems = []
        key = self.secret_key.get_secret_value()
        if not key:
            problems.append(f"LEADLOOP_SECRET_KEY is empty: set a long random value ({_NEW_SECRET})")
        elif key == DEFAULT_SECRET_KEY:
            problems.append(
                f"LEADLOOP_SECRET_KEY is the published default '{DEFAULT_SECRET_KEY}': anyone could forge links; "
                f"set a long random value ({_NEW_SECRET})"
            )
        elif len(key.encode("utf-8", "surrogatepass")) < MIN_SECRET_BYTES:
            problems.append(
                f"LEADLOOP_SECRET_KEY is {len(key.encode('utf-8', 'surrogatepass'))} bytes: it must be at least "
                f"{MIN_SECRET_BYTES} ({_NEW_SECRET})"
            )
        # a shorter old key stays accepted: it keeps the unsubscribe links of emails already sent working
        if any(k.get_secret_value() == DEFAULT_SECRET_KEY for k in self.old_secret_keys):
            problems.append(f"LEADLOOP_OLD_SECRET_KEYS holds the published default '{DEFAULT_SECRET_KEY}': drop it")
        return problems

    def published_secrets(self) -> list[str]:
        """What makes these settings unfit for the HTTP service outside the demo: the signing keys' problems,
        and API keys anyone can read here."""
        problems = self.signing_key_problems()
        api_keys = [k.get_secret_value() for k in self.api_keys]
        if DEMO_API_KEY in api_keys:
            problems.append(f"LEADLOOP_API_KEYS holds the published demo key '{DEMO_API_KEY}': set your own keys")
        elif not all(api_keys):
            # an empty list is fine: the service then takes only `leadloop keys` keys (named, scoped, in the database)
            problems.append("LEADLOOP_API_KEYS holds an empty key: drop it, or set a long random value")
        return problems

    def refuse_unsafe_secrets(self, who: str, *, api_keys: bool = False) -> None:
        """Raise InsecureSettings naming every setting to change, unless this is the demo (LEADLOOP_DEMO).

        Args:
            who: the process, for the message ("the worker", "the HTTP service").
            api_keys: the process also takes API keys (the HTTP service).
        """
        problems = [] if self.demo else self.published_secrets() if api_keys else self.signing_key_problems()
        if problems:
            raise InsecureSettings(
                f"{who} will not start with these secrets:\n"
                + "".join(f"  - {p}\n" for p in problems)
                + "(LEADLOOP_DEMO=true allows them, for a local demo only)"
            )

    def serves_demo_site(self) -> bool:
        return self.demo if self.demo_site is None else self.demo_site

    def serves_api_docs(self) -> bool:
        return self.demo if self.api_docs is None else self.api_docs

    @field_validator(*_DURATIONS, mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and (found := _DURATION.fullmatch(value.strip())):
            return timedelta(seconds=float(found[1]) * _UNITS[found[2]])
        return value

    @field_validator(*_DURATIONS)
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("a duration longer than zero (10s, 5m, 1h, 3d)")
        return value

    @model_validator(mode="after")
    def _webhook_retries(self) -> "Settings":
        if self.webhook_retry_max < self.webhook_retry_initial:
            raise ValueError("LEADLOOP_WEBHOOK_RETRY_MAX must be at least LEADLOOP_WEBHOOK_RETRY_INITIAL")
        return self

    @field_validator("sales_task_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if value != value.strip() or any(not c.isprintable() for c in value):
            raise ValueError("a task queue name without surrounding spaces or control characters, or empty")
        return value

    @model_validator(mode="after")
    def _sales_role(self) -> "Settings":
        if self.worker_role == "sales" and not self.sales_task_queue:
            raise ValueError("LEADLOOP_WORKER_ROLE=sales needs LEADLOOP_SALES_TASK_QUEUE, the queue it serves")
        if self.sales_task_queue and self.sales_task_queue == self.task_queue:
            raise ValueError("LEADLOOP_SALES_TASK_QUEUE must differ from LEADLOOP_TASK_QUEUE (or be empty)")
        return self

    @field_validator("bounce_domain")
    @classmethod
    def _bounce_domain(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        try:
            labels = ascii_domain(value).split(".") if value else []
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        label = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
        if value and (len(labels) < 2 or not all(label.fullmatch(x) for x in labels)):
            raise ValueError("a domain name such as bounces.example.com (no @, no spaces), or empty")
        return value

    @field_validator("imap_host", "imap_user")
    @classmethod
    def _imap_text(cls, value: str) -> str:
        if value != value.strip() or any(not c.isprintable() for c in value):
            raise ValueError("no surrounding spaces or control characters")
        return value

    @field_validator("imap_folders")
    @classmethod
    def _imap_folders(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('name at least one folder, e.g. ["INBOX"]')
        for folder in value:
            _check_folder(folder)
        if len(set(value)) != len(value):
            raise ValueError("a folder is named twice")
        return value

    @field_validator("imap_move_to")
    @classmethod
    def _imap_move_to(cls, value: str) -> str:
        return _check_folder(value) if value else value

    @field_validator("imap_flag")
    @classmethod
    def _imap_flag(cls, value: str) -> str:
        # RFC 3501's flag-keyword is an atom: no spaces, no ( ) { % * " \\ ] and no control characters
        if not re.fullmatch(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]{1,100}", value):
            raise ValueError(
                f"{value!r} is not an IMAP keyword: letters, digits and $ - _ . such as $LeadloopStored, "
                "without a backslash (system flags such as \\Seen are people's to set)"
            )
        return value

    @model_validator(mode="after")
    def _imap_move(self) -> "Settings":
        if self.imap_after == "move" and not self.imap_move_to:
            raise ValueError("LEADLOOP_IMAP_AFTER=move needs LEADLOOP_IMAP_MOVE_TO, the folder stored messages go to")
        if self.imap_after == "move" and self.imap_move_to in self.imap_folders:
            raise ValueError("LEADLOOP_IMAP_MOVE_TO must not be one of LEADLOOP_IMAP_FOLDERS (it would be read again)")
        return self

    def imap_port_or_default(self) -> int:
        """The IMAP server's port: LEADLOOP_IMAP_PORT, else the usual one for the chosen security."""
        return self.imap_port or (993 if self.imap_security == "ssl" else 143)

    def imap_problems(self) -> list[str]:
        """What `leadloop inbox` needs and these settings lack (the other processes do not read a mailbox)."""
        needed = {"LEADLOOP_IMAP_HOST": self.imap_host, "LEADLOOP_IMAP_USER": self.imap_user}
        problems = [f"{name} is not set" for name, value in needed.items() if not value]
        if self.imap_password is None or not self.imap_password.get_secret_value():
            problems.append("LEADLOOP_IMAP_PASSWORD is not set")
        if self.imap_ca_file is not None and not self.imap_ca_file.is_file():
            problems.append(f"LEADLOOP_IMAP_CA_FILE {str(self.imap_ca_file)!r} is not a file")
        return problems

    @field_validator("ses_topic_arns")
    @classmethod
    def _topic_arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not _SNS_TOPIC_ARN.fullmatch(arn):
                raise ValueError(f"{arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)")
        return value

    @field_validator("sendgrid_webhook_public_key")
    @classmethod
    def _sendgrid_key(cls, value: str | None) -> str | None:
        if value:
            from leadloop.domain.webhooks.sendgrid import load_public_key

            load_public_key(value)  # its ValueError says what the key is not
        return value or None

    @model_validator(mode="after")
    def _postmark_pair(self) -> "Settings":
        if (self.postmark_webhook_user is None) != (self.postmark_webhook_password is None):
            raise ValueError("set LEADLOOP_POSTMARK_WEBHOOK_USER and LEADLOOP_POSTMARK_WEBHOOK_PASSWORD together")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry.strip())
            except ValueError as exc:
                raise ValueError(f"{exc}: give IP addresses or networks (10.0.0.7, 10.0.0.0/8, fd00::/8)") from None
        return [entry.strip() for entry in value]

    @field_validator("worker_metrics_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        value = value.strip()
        host, _, port = value.rpartition(":")
        if value and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("host:port (e.g. 127.0.0.1:9464), or empty to turn the worker's metrics off")
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _aes_keys(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        import base64
        import binascii

        for key_id, key in value.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key_id):
                raise ValueError(f"key id {key_id!r}: letters, digits, '.', '_' or '-', at most 64")
            try:
                size = len(base64.b64decode(key.get_secret_value(), validate=True))
            except binascii.Error:
                raise ValueError(f"key {key_id!r} is not base64") from None
            if size not in (16, 24, 32):
                raise ValueError(f"key {key_id!r} is {size} bytes; AES-GCM takes 16, 24 or 32")
        return value

    @model_validator(mode="after")
    def _current_key(self) -> "Settings":
        if self.encryption_keys:
            if self.encryption_key_id is None:
                if len(self.encryption_keys) > 1:
                    raise ValueError("several encryption keys: name the current one in encryption_key_id")
                self.encryption_key_id = next(iter(self.encryption_keys))
            elif self.encryption_key_id not in self.encryption_keys:
                raise ValueError(f"encryption_key_id {self.encryption_key_id!r} is not among encryption_keys")
        return self

    def site_origins(self) -> dict[str, frozenset[str]]:
        """Each site key's origins: its LEADLOOP_SITE_HOSTS entry, else LEADLOOP_SITE_URL's origin."""
        fallback = site_origin(self.site_url, address=True)
        return {key: frozenset(self.site_hosts.get(key) or ([fallback] if fallback else [])) for key in self.site_keys}

    @field_validator("site_hosts")
    @classmethod
    def _site_hosts(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        bound: dict[str, list[str]] = {}
        for key, origins in value.items():
            if not origins:
                raise ValueError(f"site key {key!r} has no origins; list at least one")
            bound[key] = []
            for given in origins:
                origin = site_origin(given) if isinstance(given, str) else None
                if origin is None:
                    raise ValueError(
                        f"{given!r} (site key {key!r}) is not a site origin: write scheme and "
                        "host, with a port if any, and no path, e.g. https://www.example.com"
                    )
                bound[key].append(origin)
        return bound

    @model_validator(mode="after")
    def _site_keys_bound(self) -> "Settings":
        unknown = sorted(set(self.site_hosts) - set(self.site_keys))
        if unknown:
            raise ValueError(
                f"LEADLOOP_SITE_HOSTS names site key(s) {', '.join(map(repr, unknown))} that are not in "
                "LEADLOOP_SITE_KEYS"
            )
        unbound = [k for k in self.site_keys if k not in self.site_hosts]
        if unbound and site_origin(self.site_url, address=True) is None:
            raise ValueError(
                f"site key(s) {', '.join(map(repr, unbound))} have no origins in LEADLOOP_SITE_HOSTS, and "
                f"LEADLOOP_SITE_URL {self.site_url!r} is not an http(s) address to bind them to"
            )
        return self

    @field_validator("public_url", "site_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


def _check_folder(name: str) -> str:
    """An IMAP folder name as a setting: a name the server can be asked for (UTF-8 is encoded on the wire)."""
    if not name or name != name.strip() or len(name) > 200 or any(not c.isprintable() for c in name):
        raise ValueError(f"{name!r} is not a folder name: no empty name, surrounding spaces or control characters")
    if any(c in name for c in "*%"):
        raise ValueError(f"{name!r} is not a folder name: * and % are IMAP wildcards")
    return name


def setting_errors(exc: ValidationError) -> list[str]:
    """Settings that failed validation, one line each naming its variable (LEADLOOP_...), without a traceback."""
    return [
        "".join(f"LEADLOOP_{str(part).upper()}: " for part in error["loc"][:1])
        + error["msg"].removeprefix("Value error, ")
        for error in exc.errors()
    ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
