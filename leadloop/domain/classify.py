"""Human or machine: why an open, a click or a visit was (or was not) caused by a reader."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from leadloop.domain.ranges import MachineRanges

HitKind = Literal["open", "click", "visit"]
#: What kind of machine made a hit, as the report counts them: a mail security gateway, a scanner on a public
#: cloud, a mail provider's prefetch (Gmail's image prefetch, Yahoo's link fetch), Apple Mail Privacy Protection,
#: or any other scanner, bot or script.
MachineClass = Literal["gateway", "cloud", "prefetch", "mpp", "scanner"]
Says = Literal["machine", "human", "neutral"]
#: A reader loads a page, reads, then moves on; this many page views of one lead within VISIT_BURST_WINDOW
#: (this one included) come from a script replaying the visitor id, not from someone reading.
VISIT_BURST = 4
VISIT_BURST_WINDOW = timedelta(seconds=10)

#: Proxies that fetch a pixel when the reader opens the message: a human open (calling them
#: machines would lose every Gmail reader).
READER_PROXIES = (
    ("GoogleImageProxy", "gmail image proxy: fetched when the reader opens"),
    ("YahooMailProxy", "yahoo mail proxy: fetched when the reader opens"),
)

#: Mail security gateways and link scanners, by user agent.
SCANNER_AGENTS = (
    ("Barracuda", "Barracuda link scanner"),
    ("Mimecast", "Mimecast link scanner"),
    ("Proofpoint", "Proofpoint URL defense"),
    ("ppops-", "Proofpoint URL defense"),
    ("SafeLinks", "Microsoft Safe Links"),
    ("Trend Micro", "Trend Micro link scanner"),
    ("Symantec", "Symantec link scanner"),
    ("Forcepoint", "Forcepoint link scanner"),
    ("Cisco", "Cisco secure email"),
    ("IronPort", "Cisco secure email"),
    ("Sophos", "Sophos link scanner"),
)

#: Office's link preview fetches links itself; Outlook for Windows fetches images with the same user agent
#: when the reader opens the mail, so these mark clicks only.
CLICK_ONLY_AGENTS = (
    ("Microsoft Office", "Microsoft Office link preview"),
    ("MSOffice", "Microsoft Office link preview"),
)

#: HTTP libraries, headless browsers, crawlers and unfurlers: nobody read anything.
AUTOMATION_AGENTS = re.compile(
    r"python-requests|python-urllib|aiohttp|httpx|\bcurl/|\bwget|Go-http-client|okhttp|Java/|Apache-HttpClient"
    r"|libwww-perl|node-fetch|axios|undici|HeadlessChrome|PhantomJS|Puppeteer|Playwright|Selenium"
    r"|\bbot\b|bot/|crawler|spider|Slackbot|Slack-ImgProxy|Twitterbot|facebookexternalhit|LinkedInBot|WhatsApp"
    r"|TelegramBot|Discordbot|SkypeUriPreview|Iframely|Embedly|preview",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PriorHit:
    """An earlier open or click of the same email, as stored."""

    kind: HitKind
    at: datetime
    url: str = ""  # the clicked link ("" for opens)
    human: bool = True


@dataclass(frozen=True)
class Hit:
    """What a request tells about who made it."""

    kind: HitKind
    user_agent: str
    client_ip: str | None
    headers: Mapping[str, str]  # lower-case names
    at: datetime
    sent_at: datetime | None = None  # when the email went out (opens and clicks)
    honeypot: bool = False
    url: str = ""  # the clicked link (clicks)
    message_hits: tuple[PriorHit, ...] = ()  # earlier opens and clicks of the same email, any link
    links_in_message: int | None = None  # tracked links in the email (the honeypot not counted); None: unknown
    earlier_visits: tuple[datetime, ...] = ()  # the lead's page views stored before this one (visits)

    @property
    def other_link_clicks(self) -> tuple[datetime, ...]:
        """Clicks on *other* links of the same email."""
        return tuple(h.at for h in self.message_hits if h.kind == "click" and h.url != self.url)


@dataclass(frozen=True)
class Evidence:
    """One thing the classifier saw, and which way it points (weight: how strongly, 0 to 1)."""

    name: str  # range, user_agent, since_send, since_previous, links, fetch_headers, accept, honeypot, visits
    seen: str
    says: Says = "neutral"
    weight: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """Human or machine, how sure (0.5 to 1), what kind of machine, and every piece of evidence behind it."""

    human: bool
    reason: str
    confidence: float = 1.0
    machine_class: MachineClass | None = None
    evidence: tuple[Evidence, ...] = ()


def classify(
    hit: Hit,
    *,
    ranges: MachineRanges | None = None,
    min_delay: timedelta = timedelta(seconds=5),
    burst: timedelta = timedelta(seconds=2),
) -> Verdict:
    """Machine if any rule says so, human otherwise; the reason names the rule."""
    ua = " ".join(hit.user_agent.split())
    if hit.kind in ("open", "click"):
        if hit.honeypot:
            return Verdict(False, "honeypot link: invisible to readers, followed by scanners", machine_class="scanner")
        if hit.sent_at is not None and hit.at - hit.sent_at < min_delay:
            seconds = (hit.at - hit.sent_at).total_seconds()
            return Verdict(False, f"{seconds:.1f}s after the send: faster than a reader", machine_class="scanner")
    if not ua:
        return Verdict(False, "no user agent", machine_class="scanner")
    if hit.kind == "open":
        for token, why in READER_PROXIES:
            if token in ua:
                return Verdict(True, why)
        if ua == "Mozilla/5.0":
            return Verdict(False, "Apple Mail Privacy Protection: bare 'Mozilla/5.0' prefetch", machine_class="mpp")
    for token, why in SCANNER_AGENTS + (CLICK_ONLY_AGENTS if hit.kind == "click" else ()):
        if token.lower() in ua.lower():
            return Verdict(False, why, machine_class="scanner")
    match = AUTOMATION_AGENTS.search(ua)
    if match:
        return Verdict(False, f"automated client ({match.group(0)})", machine_class="scanner")
    found = ranges.lookup(hit.client_ip) if ranges is not None else None
    if found is not None and found.machine:
        return Verdict(False, found.describe(), machine_class="gateway" if found.kind == "gateway" else "cloud")
    if hit.kind == "click":
        accept = hit.headers.get("accept", "")
        if "text/html" not in accept:
            return Verdict(False, "no browser navigation headers (Accept lacks text/html)", machine_class="scanner")
        if hit.headers.get("sec-fetch-mode") not in (None, "navigate"):
            return Verdict(
                False, f"not a navigation (Sec-Fetch-Mode {hit.headers.get('sec-fetch-mode')})", machine_class="scanner"
            )
        if any(abs(hit.at - other) <= burst for other in hit.other_link_clicks):
            within = f"{burst.total_seconds():g}s"
            return Verdict(False, f"several links of one message clicked within {within}", machine_class="scanner")
        return Verdict(True, "browser navigation")
    if hit.kind == "visit":
        recent = sum(1 for t in hit.earlier_visits if timedelta(0) <= hit.at - t <= VISIT_BURST_WINDOW)
        if recent + 1 >= VISIT_BURST:
            return Verdict(
                False,
                f"{recent + 1} page views within {VISIT_BURST_WINDOW.total_seconds():g}s: faster than a reader",
                machine_class="scanner",
            )
        return Verdict(True, "page view from the site beacon")
    return Verdict(True, "mail client fetched the image")
