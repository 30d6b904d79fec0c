"""Human or machine: why an open, a click or a visit was (or was not) caused by a reader."""

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

HitKind = Literal["open", "click", "visit"]
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

#: Address ranges of Apple's privacy proxies and of link-scanning services.
MACHINE_NETWORKS = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("17.0.0.0/8", "Apple Mail Privacy Protection (Apple network)"),
        ("40.94.0.0/16", "Microsoft Safe Links (Exchange Online Protection)"),
        ("40.107.0.0/16", "Microsoft Safe Links (Exchange Online Protection)"),
        ("52.100.0.0/14", "Microsoft Safe Links (Exchange Online Protection)"),
        ("104.47.0.0/17", "Microsoft Safe Links (Exchange Online Protection)"),
        ("205.139.110.0/24", "Mimecast"),
        ("207.211.30.0/24", "Mimecast"),
        ("148.163.128.0/19", "Proofpoint"),
        ("64.235.144.0/20", "Barracuda"),
    )
)


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
    other_link_clicks: tuple[datetime, ...] = ()  # clicks on *other* links of the same message
    earlier_visits: tuple[datetime, ...] = ()  # the lead's page views stored before this one (visits)


@dataclass(frozen=True)
class Verdict:
    human: bool
    reason: str


def _network(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    for network, why in MACHINE_NETWORKS:
        if address.version == network.version and address in network:
            return why
    return None


def classify(
    hit: Hit, *, min_delay: timedelta = timedelta(seconds=5), burst: timedelta = timedelta(seconds=2)
) -> Verdict:
    """Machine if any rule says so, human otherwise; the reason names the rule."""
    ua = " ".join(hit.user_agent.split())
    if hit.kind in ("open", "click"):
        if hit.honeypot:
            return Verdict(False, "honeypot link: invisible to readers, followed by scanners")
        if hit.sent_at is not None and hit.at - hit.sent_at < min_delay:
            seconds = (hit.at - hit.sent_at).total_seconds()
            return Verdict(False, f"{seconds:.1f}s after the send: faster than a reader")
    if not ua:
        return Verdict(False, "no user agent")
    if hit.kind == "open":
        for token, why in READER_PROXIES:
            if token in ua:
                return Verdict(True, why)
        if ua == "Mozilla/5.0":
            return Verdict(False, "Apple Mail Privacy Protection: bare 'Mozilla/5.0' prefetch")
    for token, why in SCANNER_AGENTS + (CLICK_ONLY_AGENTS if hit.kind == "click" else ()):
        if token.lower() in ua.lower():
            return Verdict(False, why)
    match = AUTOMATION_AGENTS.search(ua)
    if match:
        return Verdict(False, f"automated client ({match.group(0)})")
    network = _network(hit.client_ip)
    if network:
        return Verdict(False, network)
    if hit.kind == "click":
        accept = hit.headers.get("accept", "")
        if "text/html" not in accept:
            return Verdict(False, "no browser navigation headers (Accept lacks text/html)")
        if hit.headers.get("sec-fetch-mode") not in (None, "navigate"):
            return Verdict(False, f"not a navigation (Sec-Fetch-Mode {hit.headers.get('sec-fetch-mode')})")
        if any(abs(hit.at - other) <= burst for other in hit.other_link_clicks):
            return Verdict(False, f"several links of one message clicked within {burst.total_seconds():g}s")
        return Verdict(True, "browser navigation")
    if hit.kind == "visit":
        recent = sum(1 for t in hit.earlier_visits if timedelta(0) <= hit.at - t <= VISIT_BURST_WINDOW)
        if recent + 1 >= VISIT_BURST:
            return Verdict(
                False, f"{recent + 1} page views within {VISIT_BURST_WINDOW.total_seconds():g}s: faster than a reader"
            )
        return Verdict(True, "page view from the site beacon")
    return Verdict(True, "mail client fetched the image")
