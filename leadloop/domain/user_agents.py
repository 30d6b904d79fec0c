"""What a User-Agent header says about who fetched a pixel or a link: the family it belongs to (pure)."""

import functools
import re
from dataclasses import dataclass
from typing import Literal

#: empty: none sent; bare: Apple Mail Privacy Protection's bare `Mozilla/5.0`; gmail_prefetch: the fixed user agent
#: of Gmail's image prefetch; google_image_proxy / yahoo_proxy: the providers' proxies; security_vendor: a mail
#: security gateway or link scanner that names itself; office_preview: Office's link preview (and Outlook for
#: Windows fetching images); automation: HTTP libraries, headless browsers, crawlers, unfurlers; mail_client: a
#: mail program (Outlook, Thunderbird, Apple Mail, ...); browser: a web browser; other: none of these.
Family = Literal[
    "empty",
    "bare",
    "gmail_prefetch",
    "google_image_proxy",
    "yahoo_proxy",
    "security_vendor",
    "office_preview",
    "automation",
    "mail_client",
    "browser",
    "other",
]

#: Gmail's image prefetch sends one fixed user agent, an Edge of 2015 no reader still runs (SparkPost / Bird,
#: "Gmail is prefetching images", 2022).
GMAIL_PREFETCH_TOKENS = ("Chrome/42.0.2311.135", "Edge/12.246")

#: Mail security gateways and link scanners that name themselves in the user agent.
SECURITY_VENDORS = (
    ("Barracuda", "Barracuda"),
    ("Mimecast", "Mimecast"),
    ("Proofpoint", "Proofpoint"),
    ("ppops-", "Proofpoint"),
    ("SafeLinks", "Microsoft Safe Links"),
    ("Trend Micro", "Trend Micro"),
    ("TMES", "Trend Micro"),
    ("Symantec", "Symantec"),
    ("MessageLabs", "Symantec"),
    ("Forcepoint", "Forcepoint"),
    ("CiscoSecureEmail", "Cisco Secure Email"),
    ("IronPort", "Cisco Secure Email"),
    ("Sophos", "Sophos"),
    ("FortiMail", "Fortinet"),
)

#: Office's link preview fetches links itself; Outlook for Windows fetches images with the same user agent
#: when the reader opens the mail, so these mark clicks only.
OFFICE_AGENTS = ("Microsoft Office", "MSOffice", "ms-office")

AUTOMATION = re.compile(
    r"python-requests|python-urllib|aiohttp|httpx|\bcurl/|\bwget|Go-http-client|okhttp|Java/|Apache-HttpClient"
    r"|libwww-perl|node-fetch|axios|undici|HeadlessChrome|PhantomJS|Puppeteer|Playwright|Selenium"
    r"|\bbot\b|bot/|crawler|spider|Slackbot|Slack-ImgProxy|Twitterbot|facebookexternalhit|LinkedInBot|WhatsApp"
    r"|TelegramBot|Discordbot|SkypeUriPreview|Iframely|Embedly|preview",
    re.IGNORECASE,
)

#: Mail programs, by a token of their user agent; Apple Mail and iOS Mail send WebKit without `Safari/`.
MAIL_CLIENTS = re.compile(
    r"Thunderbird|Outlook|Postbox|eM Client|Evolution/|KMail|Mailbird|Airmail|Spark/|Canary Mail|Superhuman"
    r"|YahooMobile|GSA/|Gmail",
    re.IGNORECASE,
)
APPLE_MAIL = re.compile(r"\((?:iPhone|iPad|Macintosh)[^)]*\) AppleWebKit/[\d.]+ \(KHTML, like Gecko\)(?!.*Safari/)")
BROWSERS = re.compile(r"\b(?:Chrome|Chromium|CriOS|Firefox|FxiOS|Safari|Edg|EdgA|EdgiOS|OPR|SamsungBrowser)/")


@dataclass(frozen=True)
class Agent:
    """A user agent's family, and the name to show for it."""

    family: Family
    name: str


@functools.lru_cache(maxsize=4096)  # a few dozen clients make most hits; the patterns cost ~0.1 ms a header
def agent_of(user_agent: str) -> Agent:
    """The family of a User-Agent header (whitespace runs count as one space)."""
    ua = " ".join(user_agent.split())
    if not ua:
        return Agent("empty", "no user agent")
    if ua == "Mozilla/5.0":
        return Agent("bare", "bare 'Mozilla/5.0'")
    if all(token in ua for token in GMAIL_PREFETCH_TOKENS):
        return Agent("gmail_prefetch", "Gmail's image prefetch (Chrome/42 Edge/12.246)")
    if "GoogleImageProxy" in ua:
        return Agent("google_image_proxy", "Gmail's image proxy (GoogleImageProxy)")
    if "YahooMailProxy" in ua:
        return Agent("yahoo_proxy", "Yahoo Mail's proxy (YahooMailProxy)")
    lowered = ua.lower()
    for token, vendor in SECURITY_VENDORS:
        if token.lower() in lowered:
            return Agent("security_vendor", f"{vendor} link scanner")
    match = AUTOMATION.search(ua)
    if match:
        return Agent("automation", f"automated client ({match.group(0)})")
    if any(token.lower() in lowered for token in OFFICE_AGENTS):
        return Agent("office_preview", "Microsoft Office")
    if MAIL_CLIENTS.search(ua) or APPLE_MAIL.search(ua):
        return Agent("mail_client", "mail client")
    if BROWSERS.search(ua):
        return Agent("browser", "web browser")
    return Agent("other", "unrecognised client")
