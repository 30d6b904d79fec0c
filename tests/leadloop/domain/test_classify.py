"""Human or machine: a table of real-world hits and the verdict each must get."""

from datetime import UTC, datetime, timedelta

import pytest

from leadloop.domain.classify import Hit, PriorHit, classify
from leadloop.domain.ranges import PACKAGED_RANGES, load_ranges

RANGES = load_ranges(PACKAGED_RANGES)

SENT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LATER = SENT + timedelta(minutes=20)
BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "sec-fetch-mode": "navigate"}
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
OUTLOOK = "Mozilla/4.0 (compatible; ms-office; MSOffice rmj)"
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"

CASES = [
    # (label, hit, human?)
    ("gmail image proxy", Hit("open", GMAIL, "66.249.84.1", {}, LATER, SENT), True),
    ("yahoo mail proxy", Hit("open", YAHOO, "98.136.1.1", {}, LATER, SENT), True),
    ("thunderbird desktop", Hit("open", THUNDERBIRD, "203.0.113.9", {}, LATER, SENT), True),
    ("iphone mail app", Hit("open", IPHONE, "198.51.100.4", {}, LATER, SENT), True),
    ("apple mpp prefetch", Hit("open", "Mozilla/5.0", "17.58.1.2", {}, LATER, SENT), False),
    # Apple's own network with a full Mail user agent: a person at Apple, not Mail Privacy Protection
    ("apple network", Hit("open", IPHONE, "17.1.2.3", {}, LATER, SENT), True),
    ("open seconds after send", Hit("open", THUNDERBIRD, "203.0.113.9", {}, SENT + timedelta(seconds=2), SENT), False),
    ("desktop browser click", Hit("click", CHROME, "203.0.113.9", BROWSER, LATER, SENT), True),
    ("mobile browser click", Hit("click", IPHONE, "198.51.100.4", {"accept": "text/html,*/*"}, LATER, SENT), True),
    ("safe links scanner ip", Hit("click", CHROME, "40.93.12.3", BROWSER, LATER, SENT), False),
    ("barracuda ua", Hit("click", "Mozilla/5.0 Barracuda Sentinel", "203.0.113.1", BROWSER, LATER, SENT), False),
    ("mimecast ua", Hit("click", "Mimecast URL checker", "203.0.113.1", {}, LATER, SENT), False),
    ("proofpoint ip", Hit("click", CHROME, "148.163.130.10", BROWSER, LATER, SENT), False),
    ("outlook link preview", Hit("click", OUTLOOK, "203.0.113.9", BROWSER, LATER, SENT), False),
    ("python requests", Hit("click", "python-requests/2.32", "203.0.113.9", BROWSER, LATER, SENT), False),
    ("curl", Hit("open", "curl/8.5.0", "203.0.113.9", {}, LATER, SENT), False),
    ("headless chrome", Hit("click", "Mozilla/5.0 HeadlessChrome/131.0", "203.0.113.9", BROWSER, LATER, SENT), False),
    ("slack unfurler", Hit("click", "Slackbot-LinkExpanding 1.0", "203.0.113.9", BROWSER, LATER, SENT), False),
    ("no user agent", Hit("click", "", "203.0.113.9", BROWSER, LATER, SENT), False),
    ("no navigation headers", Hit("click", CHROME, "203.0.113.9", {"accept": "*/*"}, LATER, SENT), False),
    (
        "prefetch not navigate",
        Hit("click", CHROME, "203.0.113.9", {**BROWSER, "sec-fetch-mode": "no-cors"}, LATER, SENT),
        False,
    ),
    ("honeypot", Hit("click", CHROME, "203.0.113.9", BROWSER, LATER, SENT, honeypot=True), False),
    (
        "burst of links",
        Hit(
            "click",
            CHROME,
            "203.0.113.9",
            BROWSER,
            LATER,
            SENT,
            message_hits=(PriorHit("click", LATER - timedelta(seconds=1), "https://b.example/"),),
        ),
        False,
    ),
    (
        "second link a minute later",
        Hit(
            "click",
            CHROME,
            "203.0.113.9",
            BROWSER,
            LATER,
            SENT,
            message_hits=(PriorHit("click", LATER - timedelta(minutes=1), "https://b.example/"),),
        ),
        True,
    ),
    ("too fast click", Hit("click", CHROME, "203.0.113.9", BROWSER, SENT + timedelta(seconds=1), SENT), False),
    ("site visit", Hit("visit", CHROME, "203.0.113.9", {}, LATER), True),
    ("crawler visit", Hit("visit", "Googlebot/2.1 (+http://www.google.com/bot.html)", "66.249.66.1", {}, LATER), False),
]


@pytest.mark.parametrize(("label", "hit", "human"), CASES, ids=[c[0] for c in CASES])
def test_verdicts(label: str, hit: Hit, human: bool) -> None:
    verdict = classify(hit, ranges=RANGES)
    assert verdict.human is human, verdict.reason
    assert verdict.reason  # every verdict says why


def test_min_delay_is_configurable() -> None:
    hit = Hit("open", THUNDERBIRD, "203.0.113.9", {}, SENT + timedelta(seconds=8), SENT)
    assert classify(hit).human
    assert not classify(hit, min_delay=timedelta(seconds=10)).human


def test_outlook_desktop_opens_are_human_but_its_link_previews_are_not() -> None:
    outlook = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
    assert classify(Hit("open", outlook, "203.0.113.9", {}, LATER, SENT)).human
    assert not classify(Hit("click", outlook, "203.0.113.9", BROWSER, LATER, SENT)).human


def test_a_burst_of_page_views_is_a_machine() -> None:
    from leadloop.domain.classify import VISIT_BURST, VISIT_BURST_WINDOW

    def view(n: int, earlier: tuple[datetime, ...]) -> Hit:
        return Hit("visit", CHROME, "203.0.113.9", {}, LATER + timedelta(seconds=n), earlier_visits=earlier)

    earlier = tuple(LATER + timedelta(seconds=n) for n in range(VISIT_BURST - 1))
    assert classify(view(VISIT_BURST - 2, earlier[:-1])).human  # a reader clicking through a few pages
    burst = classify(view(VISIT_BURST - 1, earlier))
    assert not burst.human and "page views within 10s" in burst.reason
    # the same views spread beyond the window are a reader's
    spread = tuple(LATER + n * VISIT_BURST_WINDOW for n in range(VISIT_BURST - 1))
    assert classify(
        Hit("visit", CHROME, None, {}, LATER + VISIT_BURST * VISIT_BURST_WINDOW, earlier_visits=spread)
    ).human
