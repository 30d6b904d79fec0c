"""Human or machine: a table of real-world hits and the verdict each must get."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from leadloop.domain.classify import Hit, PriorHit, Verdict, classify
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
        # the reader: two links opened into tabs 1.2 s apart is a person, not a burst
        "two tabs 1.2 s apart",
        Hit(
            "click",
            CHROME,
            "203.0.113.9",
            BROWSER,
            LATER,
            SENT,
            url="https://a.example/",
            message_hits=(PriorHit("click", LATER - timedelta(seconds=1.2), "https://b.example/"),),
            links_in_message=4,
        ),
        True,
    ),
    (
        "two links 0.3 s apart",
        Hit(
            "click",
            CHROME,
            "203.0.113.9",
            BROWSER,
            LATER,
            SENT,
            url="https://a.example/",
            message_hits=(PriorHit("click", LATER - timedelta(seconds=0.3), "https://b.example/"),),
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


# ------------------------------------------------------------------------------ evidence, confidence, classes

EDGE = CHROME + " Edg/131.0.0.0"
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 "
    "Safari/537.36 Edge/12.246 Mozilla/5.0"
)
NAV = {**BROWSER, "sec-fetch-user": "?1", "sec-fetch-site": "cross-site", "sec-fetch-dest": "document"}
LINKS = [f"https://site.example/{page}" for page in ("pricing", "demo", "blog", "docs", "webinar")]


def at(seconds: float) -> datetime:
    return SENT + timedelta(seconds=seconds)


def judge(hit: Hit) -> Verdict:
    return classify(hit, ranges=RANGES)


def test_every_piece_of_evidence_is_kept_whatever_decides() -> None:
    verdict = judge(Hit("click", EDGE, "40.93.1.2", NAV, at(23), SENT, url=LINKS[0], links_in_message=5))
    names = [e.name for e in verdict.evidence]
    for name in ("range", "user_agent", "since_send", "since_previous", "links", "accept", "sec_fetch_mode"):
        assert name in names
    assert {"sec_fetch_user", "sec_fetch_site", "honeypot"} <= set(names)
    # the browser's headers point to a person, the range names the gateway: both are kept, the range decides
    says = {e.name: e.says for e in verdict.evidence}
    assert says["range"] == "machine" and says["sec_fetch_user"] == "human"
    assert not verdict.human and verdict.machine_class == "gateway" and verdict.confidence >= 0.9
    assert verdict.reason.startswith("Microsoft 365") and "40.92.0.0/15" in verdict.reason


@pytest.mark.parametrize("seconds", [7, 23, 59, 3 * 3600, 26 * 3600])
@pytest.mark.parametrize("ip", ["40.93.7.20", "52.97.3.4", "104.47.12.9", "148.163.140.5", "205.139.110.40"])
def test_gateways_with_browser_agents_on_delivery_and_hours_later(seconds: float, ip: str) -> None:
    for kind, ua in (("click", EDGE), ("open", CHROME)):
        verdict = judge(Hit(kind, ua, ip, NAV if kind == "click" else {}, at(seconds), SENT, url=LINKS[1]))
        assert (verdict.human, verdict.machine_class, verdict.rule) == (False, "gateway", "machine_network")
        assert verdict.confidence >= 0.9


@pytest.mark.parametrize("ip", ["3.1.20.30", "52.1.2.3", "54.70.1.1", "34.80.2.2", "35.190.4.4"])
def test_cloud_scanners_seconds_after_the_send(ip: str) -> None:
    verdict = judge(Hit("click", CHROME, ip, NAV, at(3), SENT, url=LINKS[0]))
    assert (verdict.human, verdict.machine_class) == (False, "cloud")  # the range says who, not the timing
    assert verdict.confidence >= 0.9 and ("Google Cloud" in verdict.reason or "Amazon" in verdict.reason)


@pytest.mark.parametrize("seconds", [10, 35, 60])
def test_gmail_prefetch_by_its_fixed_agent_but_gmail_image_proxy_opens_are_readers(seconds: float) -> None:
    prefetch = judge(Hit("open", GMAIL_PREFETCH, "66.249.84.10", {}, at(seconds), SENT))
    assert (prefetch.human, prefetch.machine_class, prefetch.rule) == (False, "prefetch", "gmail_prefetch")
    assert prefetch.confidence >= 0.9
    reader = judge(Hit("open", GMAIL, "66.249.84.10", {}, at(seconds * 60), SENT))
    assert (reader.human, reader.rule) == (True, "reader_proxy") and reader.confidence >= 0.9


def test_yahoo_proxy_fetching_links_is_a_prefetch_its_image_fetch_a_reader() -> None:
    click = judge(Hit("click", YAHOO, "98.136.4.4", {"accept": "*/*"}, LATER, SENT, url=LINKS[0]))
    assert (click.human, click.machine_class, click.rule) == (False, "prefetch", "yahoo_link_fetch")
    assert judge(Hit("open", YAHOO, "98.136.4.4", {}, LATER, SENT)).human


def test_mpp_is_the_bare_agent_and_apple_network_alone_is_not() -> None:
    for ip in ("17.58.1.2", "198.51.100.70"):
        verdict = judge(Hit("open", "Mozilla/5.0", ip, {}, LATER, SENT))
        assert (verdict.human, verdict.machine_class, verdict.rule) == (False, "mpp", "apple_privacy_prefetch")
    person = judge(Hit("open", IPHONE, "17.1.2.3", {}, LATER, SENT))
    assert person.human and person.confidence >= 0.9
    apple = next(e for e in person.evidence if e.name == "range")
    assert apple.says == "neutral" and "Apple" in apple.seen


def walk(gaps: list[float], start: float = 40.0, links: int = 5) -> list[Verdict]:
    """A walker following `len(gaps) + 1` links `gaps` seconds apart; each hit sees the ones before it."""
    times = [start]
    for gap in gaps:
        times.append(times[-1] + gap)
    verdicts, earlier = [], []
    for url, when in zip(LINKS, times, strict=False):
        hit = Hit(
            "click", CHROME, "198.51.100.8", BROWSER, at(when), SENT, url=url, message_hits=tuple(earlier),
            links_in_message=links,
        )  # fmt: skip
        verdicts.append(judge(hit))
        earlier.append(PriorHit("click", at(when), url))
    return verdicts


def test_a_walker_pacing_itself_is_seen_from_the_third_evenly_paced_link() -> None:
    verdicts = walk([3.4, 3.1, 3.8, 3.3])
    assert [v.human for v in verdicts] == [True, True, False, False, False]
    assert all(v.machine_class == "scanner" and v.rule == "link_walker" for v in verdicts[2:])
    assert "evenly paced" in verdicts[2].reason or "every link" in verdicts[2].reason
    # the first two looked like a reader's, and are only unconfirmed clicks: below what may escalate
    assert all(v.confidence < 0.9 for v in verdicts[:2])


def test_every_link_of_an_email_within_two_minutes_is_a_walker_even_unevenly() -> None:
    verdicts = walk([2.0, 14.0, 6.0], links=4)
    assert verdicts[-1].rule == "link_walker" and "every link" in verdicts[-1].reason
    assert not verdicts[-1].human


def test_a_reader_clicking_links_at_their_own_pace_stays_human() -> None:
    assert all(v.human for v in walk([1.2, 45.0, 300.0]))  # tabs, then reading, then another link
    assert all(v.human for v in walk([1.1, 1.3]))  # three tabs in a row: too quick to be a paced walker


def test_fetch_metadata_headers() -> None:
    base = Hit("click", CHROME, "203.0.113.9", {}, LATER, SENT, url=LINKS[0])
    activated = judge(replace(base, headers=NAV))
    plain = judge(replace(base, headers={"accept": "text/html,*/*"}))
    assert activated.human and plain.human and activated.confidence > plain.confidence
    user = next(e for e in activated.evidence if e.name == "sec_fetch_user")
    assert (user.seen, user.says) == ("?1", "human")
    for headers in ({**NAV, "sec-fetch-mode": "no-cors"}, {**NAV, "sec-purpose": "prefetch"}, {"accept": "*/*"}):
        verdict = judge(replace(base, headers=headers))
        assert not verdict.human and verdict.rule == "not_navigation"


def test_confidence_follows_the_escalation_guide() -> None:
    outlook = judge(
        Hit("open", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0; Pro)", None, {}, LATER, SENT)
    )
    assert outlook.human and outlook.confidence >= 0.9
    assert judge(Hit("open", THUNDERBIRD, "203.0.113.9", {}, LATER, SENT)).confidence >= 0.9
    assert judge(Hit("open", GMAIL, "66.249.84.1", {}, LATER, SENT)).confidence >= 0.9
    click = judge(Hit("click", CHROME, "203.0.113.9", NAV, LATER, SENT, url=LINKS[0]))
    assert click.human and 0.7 <= click.confidence <= 0.8  # only the landing page's beacon proves a click
    visit = judge(Hit("visit", CHROME, "203.0.113.9", {}, LATER))
    assert visit.human and visit.confidence >= 0.9 and visit.rule == "beacon"
    for machine in (
        Hit("click", "Mozilla/5.0 Barracuda Sentinel", "203.0.113.1", NAV, LATER, SENT),
        Hit("click", CHROME, "40.93.12.3", NAV, LATER, SENT),
        Hit("open", "Mozilla/5.0", "17.58.1.2", {}, LATER, SENT),
        Hit("open", GMAIL_PREFETCH, "66.249.84.1", {}, at(20), SENT),
    ):
        verdict = judge(machine)
        assert not verdict.human and verdict.confidence >= 0.9, verdict
    assert all(0.5 <= v.confidence <= 1 for v in (outlook, click, visit))


def test_soon_after_the_send_counts_against_what_a_gateway_passes_for_not_a_mail_program() -> None:
    browser_soon = judge(Hit("open", CHROME, "203.0.113.9", {}, at(30), SENT))
    browser_later = judge(Hit("open", CHROME, "203.0.113.9", {}, at(3600), SENT))
    assert browser_soon.human and browser_soon.confidence < browser_later.confidence
    assert next(e for e in browser_soon.evidence if e.name == "since_send").says == "machine"
    # Thunderbird within the minute is a reader with the client open: still enough to escalate
    thunderbird = judge(Hit("open", THUNDERBIRD, "203.0.113.9", {}, at(10), SENT))
    assert thunderbird.human and thunderbird.confidence >= 0.9
    click = Hit("click", CHROME, "203.0.113.9", NAV, at(30), SENT, url=LINKS[0])
    assert judge(click).confidence < judge(replace(click, at=at(3600))).confidence
    # min_delay 0 turns timing off: nothing is judged by the time since the send
    off = classify(replace(click, at=at(1)), ranges=RANGES, min_delay=timedelta(0))
    assert off.human and off.confidence == judge(replace(click, at=at(3600))).confidence


def test_the_honeypot_decides_but_a_range_names_the_machine() -> None:
    plain = judge(Hit("click", CHROME, "203.0.113.9", NAV, LATER, SENT, honeypot=True))
    assert (plain.machine_class, plain.rule, plain.confidence) == ("scanner", "honeypot", 0.99)
    safe_links = judge(Hit("click", CHROME, "40.93.12.3", NAV, LATER, SENT, honeypot=True))
    assert (safe_links.machine_class, safe_links.rule) == ("gateway", "honeypot")


def test_classify_is_fast_enough_for_the_pixel() -> None:
    import time

    hit = Hit("click", CHROME, "203.0.113.9", NAV, LATER, SENT, url=LINKS[0], links_in_message=5)
    hit = replace(
        hit, message_hits=tuple(PriorHit("click", LATER - timedelta(seconds=n), LINKS[1]) for n in range(1, 50))
    )
    started = time.perf_counter()
    for _ in range(1000):
        judge(hit)
    assert (time.perf_counter() - started) / 1000 < 0.001  # under a millisecond a hit, with 49 earlier hits


def test_a_reader_clicking_soon_after_the_gateway_walked_every_link_is_no_walker() -> None:
    # Safe Links follows the email's four links 20-29 s after the send; the reader clicks one 90 s after it
    gateway = tuple(PriorHit("click", at(20 + 3 * n), url, False, "gateway") for n, url in enumerate(LINKS[:4]))
    reader = judge(Hit("click", CHROME, "81.2.3.4", NAV, at(90), SENT, url=LINKS[0], message_hits=gateway,
                       links_in_message=4))  # fmt: skip
    assert reader.human, reader.reason
    # a walker already caught by its own pattern (a scanner, not a known fetcher) still counts against the next link
    walker = tuple(PriorHit("click", at(40 + 3.3 * n), url, n < 2, None if n < 2 else "scanner")
                   for n, url in enumerate(LINKS[:3]))  # fmt: skip
    fourth = judge(Hit("click", CHROME, "198.51.100.8", BROWSER, at(40 + 3.3 * 3), SENT, url=LINKS[3],
                       message_hits=walker, links_in_message=5))  # fmt: skip
    assert not fourth.human and fourth.rule == "link_walker"


@pytest.mark.parametrize("ip", ["20.50.2.1", "3.5.140.10", "34.80.2.2"])
def test_a_page_view_through_cloud_egress_is_a_person_that_a_cloud_click_is_not(ip: str) -> None:
    """People reach the web through Azure NAT, cloud desktops and cloud proxies: the beacon running in their
    browser is the later evidence that can confirm a click the same address made, judged a cloud scanner's."""
    click = judge(Hit("click", CHROME, ip, NAV, at(300), SENT, url=LINKS[0]))
    assert (click.human, click.machine_class) == (False, "cloud")
    view = judge(Hit("visit", CHROME, ip, {}, at(302)))
    assert view.human and view.rule == "beacon", view.reason
    cloud = next(e for e in view.evidence if e.name == "range")
    assert cloud.says == "machine" and "cloud" in cloud.seen
    # a gateway's sandbox detonating the landing page stays a machine's view
    detonation = judge(Hit("visit", CHROME, "40.93.7.20", {}, at(302)))
    assert (detonation.human, detonation.machine_class) == (False, "gateway")
