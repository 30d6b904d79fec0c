"""Writes leadloop's labelled engagement corpus (leadloop/data/examples/engagement-corpus.jsonl), reproducibly.

Each scenario is modelled on what a vendor or a deliverability source documents (its address goes into every line
it makes); the variations (addresses, user agents, timings, links) are drawn from a seeded generator, so running
this again writes the same file. Range-based cases use only addresses inside the seed ranges file's networks; the
other addresses are documentation ranges or residential-looking ones outside every published range.

    python scripts/engagement_corpus.py [--out FILE] [--check]
"""

import argparse
import ipaddress
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from leadloop.domain.engagement_corpus import PACKAGED_CORPUS, parse_corpus
from leadloop.domain.ranges import PACKAGED_RANGES, load_ranges

SEED = 19

SOURCES = {
    "safe_links": "https://learn.microsoft.com/en-us/defender-office-365/safe-links-about",
    "m365_ranges": "https://learn.microsoft.com/en-us/microsoft-365/enterprise/microsoft-365-ip-web-service",
    "scanner_timing": "https://www.suped.com/email-deliverability/answers/how-long-does-it-typically-take-for-anti-spam-bots-to-click-links-in-emails",
    "mimecast": "https://community.mimecast.com/docs/DOC-1027",
    "proofpoint": "https://support.vircom.com/support/solutions/articles/48000961469-things-to-know-about-proofpoint-url-defense",
    "barracuda": "https://university.act-on.com/Product_Features/Reports/Sent_Email_Reports/Identifying_False_Positives_in_Email_Clicks",
    "scanner_field_guide": "https://check.live-direct-marketing.online/blog/bot-clicks-security-scanners-detect",
    "scanner_signs": "https://support.arternal.com/en/articles/15216436-smart-mail-clickthroughs-triggered-by-email-security-scanners",
    "cloud_clicks": "https://www.suped.com/knowledge/email-deliverability/troubleshooting/what-could-cause-unusual-click-activity-concentrated-on-a-single-link-in-an-email-campaign-prima",
    "gmail_prefetch": "https://www.sparkpost.com/blog/gmail-prefetching-images/",
    "gmail_proxy": "http://blog.wordtothewise.com/2013/12/gmail-deploys-image-proxy-servers/",
    "gmail_proxy_ua": "https://www.scientiamobile.com/what-is-google-image-proxy/",
    "yahoo_proxy": "https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "apple_mpp": "https://help.socketlabs.com/docs/identifying-apple-mpp-opens-in-notification-api-events",
    "apple_mpp_ua": "https://support.clickdimensions.com/hc/en-us/articles/15707875851917-Introduction-to-Adjusted-Opens",
    "apple_clicks": "https://www.bird.com/guides/apple-mail-privacy-protection-s-impact-on-email",
    "private_relay": "https://developer.apple.com/support/prepare-your-network-for-icloud-private-relay/",
    "sec_fetch_user": "https://developer.mozilla.org/docs/Web/HTTP/Headers/Sec-Fetch-User",
    "genuine_click": "https://support.metacompliance.com/hc/en-gb/articles/13056444972817-How-to-identify-if-a-click-is-genuine-or-caused-by-scanning-software",
    "mpp_multiple_opens": "https://www.suped.com/knowledge/email-deliverability/troubleshooting/why-am-i-seeing-multiple-opens-for-one-email-contact-and-how-does-apple-mpp-affect-this",
}

# seed networks (leadloop/data/ranges/machine-ranges.json), by who publishes them
MICROSOFT = ["40.92.0.0/15", "40.96.0.0/13", "40.104.0.0/15", "40.107.0.0/16", "52.96.0.0/14", "52.100.0.0/15"]
MICROSOFT += ["104.47.0.0/17"]
MIMECAST = ["205.139.110.0/24", "207.211.30.0/24"]
PROOFPOINT = ["148.163.128.0/19"]
BARRACUDA = ["64.235.144.0/20"]
AWS = ["3.0.0.0/15", "52.0.0.0/15", "54.64.0.0/11"]
GOOGLE_CLOUD = ["34.64.0.0/10", "35.184.0.0/13"]
GOOGLE = ["66.102.0.0/20", "66.249.80.0/20", "74.125.0.0/16"]
APPLE = ["17.0.0.0/8"]
# documentation ranges and residential-looking networks outside every published range (checked below)
RESIDENTIAL = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "81.2.64.0/20", "87.123.0.0/16"]
RESIDENTIAL += ["94.66.0.0/16", "83.26.0.0/16", "84.0.0.0/16", "88.12.0.0/16", "98.207.0.0/16", "2a02:8108::/32"]
YAHOO = ["98.136.0.0/16", "98.137.0.0/16"]
# Private Relay and MPP proxy exits not in the seed (the full list is another file's job): documentation addresses
RELAY_EXITS = ["198.51.100.0/24", "203.0.113.0/24"]

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
)
EDGE_WIN = CHROME_WIN + " Edg/{v}.0.0.0"
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 "
    "Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0"
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{s} "
    "Safari/605.1.15"
)
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{s} "
    "Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36"
)
IOS_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
)
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.{b}; Pro)"
OUTLOOK_OLD = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"
OUTLOOK_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Microsoft Outlook 16.{o}"
)
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:{t}.0) Gecko/20100101 Thunderbird/{t}.5.0"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 "
    "Safari/537.36 Edge/12.246 Mozilla/5.0"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"

CHROME_NAV = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
FIREFOX_NAV = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SITE = "https://www.acme-analytics.example"
PAGES = ["/", "/pricing", "/demo", "/blog/cold-chain-report", "/case-studies/zeta", "/webinar", "/docs/start"]

Case = dict[str, Any]


class Draw:
    """The seeded choices every scenario makes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def ip(self, networks: list[str]) -> str:
        network = ipaddress.ip_network(self.rng.choice(networks))
        offset = self.rng.randrange(1, min(network.num_addresses - 1, 2**32))
        return str(network.network_address + offset)

    def browser(self) -> tuple[str, dict[str, str]]:
        """A desktop or phone browser's user agent and the headers of a navigation it starts from a mail app."""
        v, f = self.rng.randint(120, 131), self.rng.randint(121, 133)
        s = self.rng.choice(["17.4", "17.6", "18.0", "18.1"])
        i = s.replace(".", "_")
        choice = self.rng.choice(["chrome", "chrome", "edge", "chrome_mac", "firefox", "safari", "ios", "android"])
        site = self.rng.choice(["none", "cross-site"])  # from a mail program, or from webmail
        chromium = {"accept": CHROME_NAV, "sec-fetch-mode": "navigate", "sec-fetch-site": site}
        chromium |= {"sec-fetch-dest": "document", "sec-fetch-user": "?1", "upgrade-insecure-requests": "1"}
        if choice in ("chrome", "edge", "chrome_mac", "android"):
            template = {"chrome": CHROME_WIN, "edge": EDGE_WIN, "chrome_mac": CHROME_MAC, "android": CHROME_ANDROID}
            return template[choice].format(v=v), chromium
        if choice == "firefox":
            return FIREFOX.format(f=f), {**chromium, "accept": FIREFOX_NAV}
        # Safari sends the other fetch metadata but not Sec-Fetch-User
        safari = {
            "accept": FIREFOX_NAV,
            "sec-fetch-mode": "navigate",
            "sec-fetch-site": site,
            "sec-fetch-dest": "document",
        }
        return (SAFARI_MAC if choice == "safari" else SAFARI_IOS).format(s=s, i=i), safari

    def mail_client(self) -> str:
        i = self.rng.choice(["17_6", "18_0", "18_1"])
        return self.rng.choice(
            [
                OUTLOOK.format(b=self.rng.choice(["17928", "18025", "17726"])),
                OUTLOOK_OLD,
                OUTLOOK_MAC.format(o=self.rng.randint(80, 91)),
                THUNDERBIRD.format(t=self.rng.choice([115, 128])),
                IOS_MAIL.format(i=i),
                APPLE_MAIL,
            ]
        )

    def links(self) -> list[str]:
        count = self.rng.randint(3, 6)
        return [f"{SITE}{page}?utm_campaign=nov" for page in self.rng.sample(PAGES, count)]

    def reading_delay(self) -> float:
        """When a person gets to an email: minutes to days after the send (log-uniform)."""
        return round(10 ** self.rng.uniform(2.0, 5.4), 1)


def case(label: str, name: str, source: str, kind: str, ua: str, ip: str | None, **rest: Any) -> Case:
    line: Case = {"label": label}
    if label == "machine":
        line["class"] = rest.pop("cls")
    line |= {"case": name}
    if "resembles" in rest:
        line["resembles"] = rest.pop("resembles")
    line |= {"kind": kind, "user_agent": ua, "client_ip": ip, **rest, "source": SOURCES[source]}
    return line


def walk(
    d: Draw,
    label: str,
    name: str,
    source: str,
    ua: str,
    headers: dict[str, str],
    ips: list[str],
    start: float,
    gap: tuple[float, float],
    cls: str | None = None,
    honeypot_last: bool = True,
    **extra: Any,
) -> Iterator[Case]:
    """Clicks following an email's links one after another; each line carries the clicks before it."""
    links = d.links()
    targets = [*links, f"{SITE}/healthz"] if honeypot_last else links
    earlier: list[dict[str, Any]] = []
    at = start
    ip = d.ip(ips)
    for index, url in enumerate(targets):
        honeypot = honeypot_last and index == len(links)
        rest: dict[str, Any] = {"cls": cls} if cls else {}
        yield case(
            label,
            name,
            source,
            "click",
            ua,
            ip,
            headers=headers,
            seconds_after_send=round(at, 1),
            url=url,
            earlier_hits=list(earlier),
            links_in_message=len(links),
            honeypot=honeypot,
            **rest,
            **extra,
        )
        earlier.append({"seconds": round(at, 1), "url": url})
        at += d.rng.uniform(*gap)


# ------------------------------------------------------------------------------------------------- machines


def gateway(d: Draw) -> Iterator[Case]:
    vendors = [("safe_links", MICROSOFT, "safe_links"), ("mimecast", MIMECAST, "mimecast")]
    vendors += [("proofpoint", PROOFPOINT, "proofpoint"), ("barracuda", BARRACUDA, "barracuda")]
    for _ in range(70):
        name, networks, source = d.rng.choice(vendors)
        ua, headers = d.browser()
        headers = {k: v for k, v in headers.items() if k != "sec-fetch-user"} if d.rng.random() < 0.6 else headers
        # on delivery (7-60 s), or a detonation re-check hours later
        later = d.rng.random() < 0.3
        seconds = round(d.rng.uniform(3600, 30 * 3600) if later else d.rng.uniform(7, 60), 1)
        when = "recheck" if later else "on_delivery"
        if d.rng.random() < 0.35:
            ua = d.rng.choice([EDGE_WIN, CHROME_WIN]).format(v=d.rng.randint(120, 131))
            yield case(
                "machine",
                f"{name}_open_{when}",
                source,
                "open",
                ua,
                d.ip(networks),
                cls="gateway",
                headers={"accept": IMAGE_ACCEPT},
                seconds_after_send=seconds,
            )
        else:
            links = d.links()
            yield case(
                "machine",
                f"{name}_click_{when}",
                source,
                "click",
                ua,
                d.ip(networks),
                cls="gateway",
                headers=headers,
                seconds_after_send=seconds,
                url=d.rng.choice(links),
                links_in_message=len(links),
            )
    # gateways walking every link of an email from their ranges
    for _ in range(6):
        name, networks, source = d.rng.choice(vendors)
        ua, headers = d.browser()
        yield from walk(
            d,
            "machine",
            f"{name}_link_walk",
            source,
            ua,
            headers,
            networks,
            d.rng.uniform(8, 40),
            (0.3, 4.0),
            cls="gateway",
        )
    # vendors that name themselves, from addresses outside the seed's networks
    named = [
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "barracuda"),
        ("Mimecast URL Protect", "mimecast"),
        ("Proofpoint URL Defense/1.0", "proofpoint"),
        ("Mozilla/5.0 (compatible; CiscoSecureEmail)", "scanner_field_guide"),
        ("Mozilla/5.0 TMES URL scanner", "scanner_field_guide"),
    ]
    for _ in range(14):
        ua, source = d.rng.choice(named)
        links = d.links()
        yield case(
            "machine",
            "vendor_named_scanner",
            source,
            "click",
            ua,
            d.ip(RESIDENTIAL),
            cls="gateway",
            headers={"accept": "*/*"},
            seconds_after_send=round(d.rng.uniform(6, 300), 1),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )


def cloud(d: Draw) -> Iterator[Case]:
    for _ in range(45):
        networks = d.rng.choice([AWS, GOOGLE_CLOUD])
        provider = "aws" if networks is AWS else "google_cloud"
        seconds = round(d.rng.uniform(1, 25), 1)
        ua, headers = d.browser()
        if d.rng.random() < 0.3:
            ua = d.rng.choice(["python-requests/2.32.3", "Go-http-client/1.1", "Mozilla/5.0 HeadlessChrome/124.0"])
            headers = {"accept": "*/*"}
        if d.rng.random() < 0.4:
            yield case(
                "machine",
                f"{provider}_open",
                "cloud_clicks",
                "open",
                ua,
                d.ip(networks),
                cls="cloud",
                headers={"accept": IMAGE_ACCEPT},
                seconds_after_send=seconds,
            )
        else:
            links = d.links()
            yield case(
                "machine",
                f"{provider}_click",
                "cloud_clicks",
                "click",
                ua,
                d.ip(networks),
                cls="cloud",
                headers=headers,
                seconds_after_send=seconds,
                url=d.rng.choice(links),
                links_in_message=len(links),
            )


def prefetch(d: Draw) -> Iterator[Case]:
    for _ in range(40):
        yield case(
            "machine",
            "gmail_image_prefetch",
            "gmail_prefetch",
            "open",
            GMAIL_PREFETCH,
            d.ip(GOOGLE),
            cls="prefetch",
            headers={"accept": IMAGE_ACCEPT},
            seconds_after_send=round(d.rng.uniform(10, 60), 1),
        )
    for _ in range(30):
        links = d.links()
        yield case(
            "machine",
            "yahoo_link_fetch",
            "yahoo_proxy",
            "click",
            YAHOO_PROXY,
            d.ip(YAHOO),
            cls="prefetch",
            headers={"accept": "*/*"},
            seconds_after_send=d.reading_delay(),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )


def mpp(d: Draw) -> Iterator[Case]:
    for _ in range(50):
        apple = d.rng.random() < 0.5
        ip = d.ip(APPLE if apple else RELAY_EXITS)
        # prefetched when the device is on power and Wi-Fi: minutes to hours after the send
        yield case(
            "machine",
            "apple_mpp_prefetch",
            "apple_mpp_ua",
            "open",
            "Mozilla/5.0",
            ip,
            cls="mpp",
            headers={"accept": IMAGE_ACCEPT},
            seconds_after_send=round(d.rng.uniform(30, 6 * 3600), 1),
        )


def scanner(d: Draw) -> Iterator[Case]:
    # walkers that pace themselves 3-4 s a link from addresses no list names, the honeypot last
    for _ in range(8):
        ua, headers = d.browser()
        headers = {k: v for k, v in headers.items() if k != "sec-fetch-user"}
        yield from walk(
            d,
            "machine",
            "paced_link_walker",
            "scanner_signs",
            ua,
            headers,
            RESIDENTIAL,
            d.rng.uniform(5, 90),
            (3.0, 4.0),
            cls="scanner",
        )
    tools = [
        ("curl/8.5.0", "scanner_field_guide"),
        ("python-requests/2.31.0", "scanner_field_guide"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 "
            "Safari/537.36",
            "scanner_field_guide",
        ),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "scanner_field_guide"),
        ("Java/17.0.9", "scanner_field_guide"),
    ]
    for _ in range(25):
        ua, source = d.rng.choice(tools)
        links = d.links()
        kind = d.rng.choice(["click", "click", "open"])
        yield case(
            "machine",
            "automated_client",
            source,
            kind,
            ua,
            d.ip(RESIDENTIAL),
            cls="scanner",
            headers={"accept": "*/*"},
            seconds_after_send=d.reading_delay(),
            **({"url": d.rng.choice(links), "links_in_message": len(links)} if kind == "click" else {}),
        )
    for _ in range(15):
        links = d.links()
        yield case(
            "machine",
            "office_link_preview",
            "safe_links",
            "click",
            d.rng.choice([OUTLOOK_OLD, OUTLOOK.format(b="17928")]),
            d.ip(RESIDENTIAL),
            cls="scanner",
            headers={"accept": "*/*"},
            seconds_after_send=d.reading_delay(),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )
    for _ in range(15):
        ua, headers = d.browser()
        yield case(
            "machine",
            "honeypot_followed",
            "scanner_signs",
            "click",
            ua,
            d.ip(RESIDENTIAL),
            cls="scanner",
            headers=headers,
            seconds_after_send=d.reading_delay(),
            url=f"{SITE}/healthz",
            links_in_message=d.rng.randint(3, 6),
            honeypot=True,
        )
    for _ in range(15):
        ua, headers = d.browser()
        kind = d.rng.choice(["open", "click"])
        links = d.links()
        yield case(
            "machine",
            "on_delivery",
            "genuine_click",
            kind,
            ua,
            d.ip(RESIDENTIAL),
            cls="scanner",
            headers=headers if kind == "click" else {"accept": IMAGE_ACCEPT},
            seconds_after_send=round(d.rng.uniform(0.3, 4.5), 1),
            **({"url": d.rng.choice(links), "links_in_message": len(links)} if kind == "click" else {}),
        )
    for _ in range(12):
        ua, _headers = d.browser()
        links = d.links()
        headers = d.rng.choice([{"accept": "*/*"}, {"accept": "*/*", "sec-fetch-mode": "no-cors"}, {}])
        yield case(
            "machine",
            "fetch_not_navigation",
            "scanner_field_guide",
            "click",
            ua,
            d.ip(RESIDENTIAL),
            cls="scanner",
            headers=headers,
            seconds_after_send=d.reading_delay(),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )
    for _ in range(8):
        links = d.links()
        yield case(
            "machine",
            "no_user_agent",
            "scanner_field_guide",
            "click",
            "",
            d.ip(RESIDENTIAL),
            cls="scanner",
            headers={},
            seconds_after_send=d.reading_delay(),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )
    for _ in range(8):
        ua, _headers = d.browser()
        views = sorted(round(d.rng.uniform(0.2, 9.0), 1) for _ in range(d.rng.randint(3, 6)))
        yield case(
            "machine",
            "visit_replay",
            "scanner_field_guide",
            "visit",
            ua,
            d.ip(RESIDENTIAL),
            cls="scanner",
            url=f"{SITE}{d.rng.choice(PAGES)}",
            earlier_visits=views,
        )


# ------------------------------------------------------------------------------------------------- people


def people(d: Draw) -> Iterator[Case]:
    for _ in range(70):
        yield case(
            "human",
            "mail_client_open",
            "mpp_multiple_opens",
            "open",
            d.mail_client(),
            d.ip(RESIDENTIAL),
            headers={"accept": IMAGE_ACCEPT},
            seconds_after_send=d.reading_delay(),
        )
    for _ in range(20):
        ua, _headers = d.browser()
        yield case(
            "human",
            "webmail_open",
            "mpp_multiple_opens",
            "open",
            ua,
            d.ip(RESIDENTIAL),
            headers={"accept": IMAGE_ACCEPT},
            seconds_after_send=d.reading_delay(),
        )
    for _ in range(40):
        source = d.rng.choice(["gmail_proxy", "gmail_proxy_ua"])
        yield case(
            "human",
            "gmail_image_proxy_open",
            source,
            "open",
            GMAIL_PROXY,
            d.ip(GOOGLE),
            resembles="prefetch",
            headers={"accept": IMAGE_ACCEPT},
            seconds_after_send=d.reading_delay(),
        )
    for _ in range(20):
        yield case(
            "human",
            "yahoo_image_open",
            "yahoo_proxy",
            "open",
            YAHOO_PROXY,
            d.ip(YAHOO),
            resembles="prefetch",
            headers={"accept": IMAGE_ACCEPT},
            seconds_after_send=d.reading_delay(),
        )
    for _ in range(25):
        i = d.rng.choice(["17_6", "18_0", "18_1"])
        ua = d.rng.choice([IOS_MAIL.format(i=i), APPLE_MAIL])
        yield case(
            "human",
            "apple_network_person",
            "private_relay",
            "open",
            ua,
            d.ip(APPLE),
            resembles="mpp",
            headers={"accept": IMAGE_ACCEPT},
            seconds_after_send=d.reading_delay(),
        )
    for _ in range(10):
        ua, headers = d.browser()
        links = d.links()
        yield case(
            "human",
            "apple_network_person_click",
            "apple_clicks",
            "click",
            ua,
            d.ip(APPLE),
            resembles="mpp",
            headers=headers,
            seconds_after_send=d.reading_delay(),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )
    for _ in range(70):
        ua, headers = d.browser()
        links = d.links()
        yield case(
            "human",
            "browser_click",
            "sec_fetch_user",
            "click",
            ua,
            d.ip(RESIDENTIAL),
            headers=headers,
            seconds_after_send=d.reading_delay(),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )
    for _ in range(20):
        # a reader with the inbox open clicks within a minute of the send: the gateway's timing, a person's browser
        ua, headers = d.browser()
        links = d.links()
        yield case(
            "human",
            "quick_reader_click",
            "genuine_click",
            "click",
            ua,
            d.ip(RESIDENTIAL),
            resembles="gateway",
            headers=headers,
            seconds_after_send=round(d.rng.uniform(20, 60), 1),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )
    for _ in range(15):
        ua = d.mail_client()
        yield case(
            "human",
            "quick_reader_open",
            "genuine_click",
            "open",
            ua,
            d.ip(RESIDENTIAL),
            resembles="cloud",
            headers={"accept": IMAGE_ACCEPT},
            seconds_after_send=round(d.rng.uniform(15, 60), 1),
        )
    for _ in range(25):
        # two links opened into tabs a second or so apart
        ua, headers = d.browser()
        links = d.links()
        first = d.reading_delay()
        second = round(first + d.rng.uniform(0.9, 1.8), 1)
        yield case(
            "human",
            "two_tabs",
            "sec_fetch_user",
            "click",
            ua,
            d.ip(RESIDENTIAL),
            resembles="scanner",
            headers=headers,
            seconds_after_send=second,
            url=links[1],
            earlier_hits=[
                {"kind": "open", "seconds": round(first * d.rng.uniform(0.3, 0.9), 1)},
                {"seconds": first, "url": links[0]},
            ],
            links_in_message=len(links),
        )
    for _ in range(20):
        # a reader coming back for another link minutes later
        ua, headers = d.browser()
        links = d.links()
        first = d.reading_delay()
        yield case(
            "human",
            "second_link_later",
            "genuine_click",
            "click",
            ua,
            d.ip(RESIDENTIAL),
            resembles="scanner",
            headers=headers,
            seconds_after_send=round(first + d.rng.uniform(40, 900), 1),
            url=links[-1],
            earlier_hits=[{"seconds": first, "url": links[0]}],
            links_in_message=len(links),
        )
    for _ in range(10):
        i = d.rng.choice(["17_6", "18_0", "18_1"])
        links = d.links()
        yield case(
            "human",
            "in_app_browser_click",
            "apple_clicks",
            "click",
            IOS_MAIL.format(i=i),
            d.ip(RESIDENTIAL),
            headers={"accept": FIREFOX_NAV},
            seconds_after_send=d.reading_delay(),
            url=d.rng.choice(links),
            links_in_message=len(links),
        )
    for _ in range(30):
        ua, _headers = d.browser()
        views = sorted(round(d.rng.uniform(15, 900), 1) for _ in range(d.rng.randint(0, 3)))
        yield case(
            "human",
            "beacon_visit",
            "sec_fetch_user",
            "visit",
            ua,
            d.ip(RESIDENTIAL),
            url=f"{SITE}{d.rng.choice(PAGES)}",
            earlier_visits=views,
        )


SCENARIOS: list[Callable[[Draw], Iterator[Case]]] = [gateway, cloud, prefetch, mpp, scanner, people]


def corpus(seed: int = SEED) -> list[Case]:
    d = Draw(seed)
    return [line for scenario in SCENARIOS for line in scenario(d)]


def check_addresses(lines: list[Case]) -> None:
    """Range cases inside the seed's networks, the others outside every published range."""
    ranges = load_ranges(PACKAGED_RANGES)
    for line in lines:
        ip = line["client_ip"]
        found = ranges.lookup(ip)
        outside = any(ipaddress.ip_address(ip) in ipaddress.ip_network(n) for n in RESIDENTIAL + YAHOO + RELAY_EXITS)
        if outside and found is not None:
            raise SystemExit(f"{ip} ({line['case']}) is meant to be outside every range but is in {found.network}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGED_CORPUS)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from what this writes")
    args = parser.parse_args()
    lines = corpus()
    check_addresses(lines)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    parse_corpus(text.splitlines(), "generated corpus")  # the schema holds
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'differs from scripts/engagement_corpus.py'}")
        sys.exit(0 if same else 1)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(lines)} lines")


if __name__ == "__main__":
    main()
