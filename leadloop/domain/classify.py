"""Human or machine: why an open, a click or a visit was (or was not) caused by a reader."""

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from leadloop.domain.ranges import MachineRanges, RangeMatch
from leadloop.domain.user_agents import Agent, agent_of

HitKind = Literal["open", "click", "visit"]
#: What kind of machine made a hit, as the report counts them: a mail security gateway, a scanner on a public
#: cloud, a mail provider's prefetch (Gmail's image prefetch, Yahoo's link fetch), Apple Mail Privacy Protection,
#: or any other scanner, bot or script.
MachineClass = Literal["gateway", "cloud", "prefetch", "mpp", "scanner"]
#: Machines known by who they are (an address range, a fetcher's signature), not only by how they behave.
IDENTIFIED = frozenset({"gateway", "cloud", "prefetch", "mpp"})
Says = Literal["machine", "human", "neutral"]
#: The evidence that decided a verdict, as one of a few stable values (the engagement metric's `rule` label).
Rule = Literal[
    "honeypot",
    "too_soon",
    "no_user_agent",
    "bare_user_agent",
    "apple_privacy_prefetch",
    "gmail_prefetch",
    "yahoo_link_fetch",
    "image_proxy_link_fetch",
    "link_scanner",
    "link_preview",
    "automated_client",
    "machine_network",
    "not_navigation",
    "link_walker",
    "link_burst",
    "visit_burst",
    "soon_after_send",
    "reader_proxy",
    "mail_client",
    "browser",
    "beacon",
    "one_click",
    "other",
]
RULES: tuple[Rule, ...] = get_args(Rule)
#: A reader loads a page, reads, then moves on; this many page views of one lead within VISIT_BURST_WINDOW
#: (this one included) come from a script replaying the visitor id, not from someone reading.
VISIT_BURST = 4
VISIT_BURST_WINDOW = timedelta(seconds=10)
#: Two different links of one email clicked closer than this: no person clicks that fast (a reader opening links
#: into tabs takes a second or more between them).
LINK_BURST = timedelta(milliseconds=600)
#: A link walker paces itself: at least WALK_LINKS different links, consecutive clicks WALK_PACE apart and evenly
#: (the gaps differ by at most WALK_EVENNESS) -- a pattern over the email's hits, not one window.
WALK_LINKS = 3
WALK_PACE = (timedelta(seconds=1.5), timedelta(seconds=10))
WALK_EVENNESS = timedelta(seconds=1.5)
#: Every tracked link of an email (at least WALK_LINKS of them) clicked within this: nobody reads that way.
WALK_WINDOW = timedelta(minutes=2)
#: Gateways detonate links and prefetchers fetch images within about a minute of delivery.
PREFETCH_WINDOW = timedelta(seconds=60)
#: The user agents a machine fetching an image on delivery passes for.
LOOKALIKES = frozenset({"browser", "other"})
#: The most an unconfirmed click can be trusted: only the landing page's beacon proves a person clicked (below the
#: 0.9 that scoring.yaml's escalation_confidence asks by default).
CLICK_CEILING = 0.8


@dataclass(frozen=True)
class PriorHit:
    """An earlier open or click of the same email, as stored."""

    kind: HitKind
    at: datetime
    url: str = ""  # the clicked link ("" for opens)
    human: bool = True
    machine_class: str | None = None  # the machine it was put down to, if any


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


@dataclass(frozen=True)
class Evidence:
    """One thing the classifier saw, and which way it points (weight: how strongly, 0 to 1)."""

    # range, user_agent, since_send, since_previous, links, accept, sec_fetch_mode, sec_fetch_user, sec_fetch_site,
    # purpose, honeypot, visits, beacon
    name: str
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
    rule: Rule = "other"  # the deciding evidence as a stable label (metrics)


@dataclass(frozen=True)
class _Piece:
    """A piece of evidence and what it makes of the verdict when it decides."""

    evidence: Evidence
    why: str = ""  # the verdict's reason when this piece decides
    rule: Rule = "other"
    machine_class: MachineClass | None = None
    decisive: bool = False  # names a machine: a machine verdict may rest on it alone
    identity: bool = False  # says who fetched (range, user agent), not only how (timing, pattern)


def _neutral(name: str, seen: str) -> _Piece:
    return _Piece(Evidence(name, seen))


def _machine(
    name: str, seen: str, weight: float, why: str, rule: Rule, cls: MachineClass, *, decisive: bool, identity: bool
) -> _Piece:
    return _Piece(Evidence(name, seen, "machine", weight), why, rule, cls, decisive, identity)


def _human(name: str, seen: str, weight: float, why: str, rule: Rule) -> _Piece:
    return _Piece(Evidence(name, seen, "human", weight), why, rule)


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.1f}s"


def _range_piece(found: RangeMatch | None, agent: Agent, hit: Hit) -> _Piece:
    if hit.client_ip is None:
        return _neutral("range", "no client address")
    if found is None:
        return _neutral("range", f"{hit.client_ip}: in no published machine or proxy range")
    seen = f"{hit.client_ip}: {found.describe()}"
    if found.kind == "gateway":
        why = f"{found.source.provider}'s published range ({found.network}): a mail security gateway"
        return _machine("range", seen, 0.97, why, "machine_network", "gateway", decisive=True, identity=True)
    if found.kind == "cloud" and hit.kind == "visit":
        # the beacon ran in a browser there: people reach the web through cloud egress too (Azure NAT, cloud
        # desktops, Prisma Access): it weighs against them but does not decide, so their page view can still be
        # the later evidence that overturns a click judged a cloud scanner's
        why = f"{found.source.provider}'s published range ({found.network}): a public cloud"
        return _machine("range", seen, 0.6, why, "machine_network", "cloud", decisive=False, identity=True)
    if found.kind == "cloud":
        why = f"{found.source.provider}'s published range ({found.network}): a scanner on a public cloud"
        return _machine("range", seen, 0.95, why, "machine_network", "cloud", decisive=True, identity=True)
    if found.kind in ("apple", "private_relay") and agent.family == "bare" and hit.kind == "open":
        why = "Apple Mail Privacy Protection: bare 'Mozilla/5.0' prefetch from Apple's relay"
        return _machine("range", seen, 0.98, why, "apple_privacy_prefetch", "mpp", decisive=True, identity=True)
    # Apple's own network, Private Relay and the mail providers' fetchers carry people too: the address alone
    # says nothing, the user agent and the timing do
    return _neutral("range", seen)


def _agent_piece(agent: Agent, hit: Hit) -> _Piece:
    seen = f"{agent.family}: {' '.join(hit.user_agent.split())[:200]}" if hit.user_agent.strip() else "none"
    family, kind = agent.family, hit.kind
    if family == "empty":
        return _machine(
            "user_agent", seen, 0.95, "no user agent", "no_user_agent", "scanner", decisive=True, identity=True
        )
    if family == "gmail_prefetch":
        why = "Gmail's image prefetch (its fixed Chrome/42 Edge/12.246 user agent): fetched before anyone read"
        return _machine("user_agent", seen, 0.97, why, "gmail_prefetch", "prefetch", decisive=True, identity=True)
    if family == "security_vendor":
        return _machine("user_agent", seen, 0.97, agent.name, "link_scanner", "gateway", decisive=True, identity=True)
    if family == "automation":
        return _machine(
            "user_agent", seen, 0.95, agent.name, "automated_client", "scanner", decisive=True, identity=True
        )
    if kind == "visit":
        return _neutral("user_agent", seen)  # the beacon ran: the page was rendered by whatever sent this
    if family == "bare":
        if kind == "open":
            why = "Apple Mail Privacy Protection: bare 'Mozilla/5.0' prefetch"
            return _machine(
                "user_agent", seen, 0.95, why, "apple_privacy_prefetch", "mpp", decisive=True, identity=True
            )
        why = "bare 'Mozilla/5.0' user agent: no browser follows a link with it"
        return _machine("user_agent", seen, 0.9, why, "bare_user_agent", "scanner", decisive=True, identity=True)
    if kind == "click":
        if family == "yahoo_proxy":
            why = "Yahoo Mail's proxy fetched the link's target: not a click"
            return _machine("user_agent", seen, 0.95, why, "yahoo_link_fetch", "prefetch", decisive=True, identity=True)
        if family == "google_image_proxy":
            why = "Gmail's image proxy fetched a link: not a click"
            return _machine(
                "user_agent", seen, 0.9, why, "image_proxy_link_fetch", "prefetch", decisive=True, identity=True
            )
        if family == "office_preview":
            why = "Microsoft Office link preview"
            return _machine("user_agent", seen, 0.9, why, "link_preview", "scanner", decisive=True, identity=True)
        if family in ("browser", "mail_client"):
            why = "browser navigation, unconfirmed until the landing page's beacon reports the visit"
            return _human("user_agent", seen, 0.6, why, "browser")
        return _neutral("user_agent", seen)
    # opens
    if family == "google_image_proxy":
        return _human("user_agent", seen, 0.93, "Gmail's image proxy: fetched when the reader opens", "reader_proxy")
    if family == "yahoo_proxy":
        return _human("user_agent", seen, 0.9, "Yahoo Mail's proxy: fetched when the reader opens", "reader_proxy")
    if family in ("mail_client", "office_preview"):
        return _human("user_agent", seen, 0.93, "mail client fetched the image", "mail_client")
    if family == "browser":
        return _human("user_agent", seen, 0.92, "webmail in a browser fetched the image", "mail_client")
    return _human("user_agent", seen, 0.7, "an unrecognised client fetched the image", "mail_client")


def _since_send_piece(hit: Hit, min_delay: timedelta, agent: Agent) -> _Piece:
    if hit.kind == "visit":
        return _neutral("since_send", "a page view: not tied to one email")
    if hit.sent_at is None:
        return _neutral("since_send", "send time unknown")
    after = hit.at - hit.sent_at
    seen = f"{_seconds(after)} after the send"
    if after < min_delay:
        why = f"{_seconds(after)} after the send: faster than a reader"
        return _machine("since_send", seen, 0.95, why, "too_soon", "scanner", decisive=True, identity=False)
    # gateways and prefetchers fetching on delivery pass for browsers (or name themselves); a mail program's own
    # agent within the minute is a reader whose client is open. A min_delay of 0 turns timing off altogether.
    if after < PREFETCH_WINDOW and min_delay > timedelta(0) and (hit.kind == "click" or agent.family in LOOKALIKES):
        why = f"{_seconds(after)} after the send: when gateways and prefetchers fetch"
        return _machine("since_send", seen, 0.6, why, "soon_after_send", "scanner", decisive=False, identity=False)
    return _neutral("since_send", seen)


def _walk(clicks: list[tuple[datetime, str]]) -> str | None:
    """How the clicks ending with the latest one pace like a link walker, or None."""
    run = [clicks[-1]]
    for at, url in reversed(clicks[:-1]):
        gap = run[-1][0] - at
        if not WALK_PACE[0] <= gap <= WALK_PACE[1]:
            break
        run.append((at, url))
    run.reverse()
    urls = {url for _, url in run}
    if len(urls) < WALK_LINKS:
        return None
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(run)]
    if max(gaps) - min(gaps) > WALK_EVENNESS:
        return None
    return f"{len(urls)} links clicked {_seconds(min(gaps))}-{_seconds(max(gaps))} apart, evenly paced"


def _link_pieces(hit: Hit, burst: timedelta) -> list[_Piece]:
    """Evidence from the email's earlier hits: the time since the previous one, and the links touched."""
    if hit.kind == "visit":
        return []
    # hits already put down to a known fetcher (a gateway's or a cloud's address, a prefetch, MPP) are someone
    # else's: a reader clicking soon after the gateway walked every link is no walker
    earlier = sorted(
        (h for h in hit.message_hits if h.at <= hit.at and h.machine_class not in IDENTIFIED), key=lambda h: h.at
    )
    pieces = []
    if earlier:
        previous = earlier[-1]
        since = hit.at - previous.at
        seen = f"{_seconds(since)} after the email's previous {previous.kind}"
        if hit.kind == "click" and previous.kind == "click" and previous.url != hit.url and since < burst:
            why = f"two links of one email clicked {_seconds(since)} apart: faster than a person"
            pieces.append(
                _machine("since_previous", seen, 0.9, why, "link_burst", "scanner", decisive=True, identity=False)
            )
        else:
            pieces.append(_neutral("since_previous", seen))
    else:
        pieces.append(_neutral("since_previous", "the email's first hit"))
    if hit.kind != "click":
        return pieces
    clicks = [(h.at, h.url) for h in earlier if h.kind == "click"] + [(hit.at, hit.url)]
    recent = {url for at, url in clicks if hit.at - at <= WALK_WINDOW}
    of = f" of {hit.links_in_message}" if hit.links_in_message is not None else ""
    seen = f"{len({url for _, url in clicks})}{of} links clicked, {len(recent)} within {WALK_WINDOW.seconds // 60} min"
    every = hit.links_in_message is not None and hit.links_in_message >= WALK_LINKS
    if every and len(recent) >= (hit.links_in_message or 0):
        why = f"every link of the email ({len(recent)}) clicked within {WALK_WINDOW.seconds // 60} min: a link walker"
        pieces.append(_machine("links", seen, 0.95, why, "link_walker", "scanner", decisive=True, identity=False))
    elif (pace := _walk(clicks)) is not None:
        pieces.append(
            _machine(
                "links",
                f"{seen}; {pace}",
                0.95,
                f"{pace}: a link walker",
                "link_walker",
                "scanner",
                decisive=True,
                identity=False,
            )
        )
    else:
        pieces.append(_neutral("links", seen))
    return pieces


def _header_pieces(hit: Hit) -> list[_Piece]:
    """A click's request headers: a person's navigation, or a fetch."""
    if hit.kind != "click":
        return []
    headers = hit.headers
    pieces = []
    accept = headers.get("accept")
    if accept is None:
        pieces.append(
            _machine(
                "accept",
                "none",
                0.8,
                "no Accept header: not a browser's navigation",
                "not_navigation",
                "scanner",
                decisive=False,
                identity=False,
            )
        )
    elif "text/html" in accept:
        pieces.append(_human("accept", accept[:200], 0.55, "browser navigation", "browser"))
    else:
        why = "no browser navigation headers (Accept lacks text/html)"
        pieces.append(
            _machine("accept", accept[:200], 0.9, why, "not_navigation", "scanner", decisive=False, identity=False)
        )
    mode = headers.get("sec-fetch-mode")
    if mode is None:
        pieces.append(_neutral("sec_fetch_mode", "none"))
    elif mode == "navigate":
        pieces.append(_human("sec_fetch_mode", mode, 0.55, "browser navigation", "browser"))
    else:
        why = f"not a navigation (Sec-Fetch-Mode {mode[:40]})"
        pieces.append(
            _machine("sec_fetch_mode", mode[:40], 0.9, why, "not_navigation", "scanner", decisive=True, identity=False)
        )
    user = headers.get("sec-fetch-user")
    if user == "?1":
        pieces.append(_human("sec_fetch_user", user, 0.65, "browser navigation started by a person", "browser"))
    else:
        pieces.append(_neutral("sec_fetch_user", user[:40] if user else "none"))
    pieces.append(_neutral("sec_fetch_site", headers.get("sec-fetch-site", "none")[:40]))
    purpose = headers.get("sec-purpose") or headers.get("purpose") or headers.get("x-moz")
    if purpose and "prefetch" in purpose.lower():
        why = f"a prefetch, not a click ({purpose[:40]})"
        pieces.append(
            _machine("purpose", purpose[:40], 0.9, why, "not_navigation", "scanner", decisive=True, identity=False)
        )
    return pieces


def _visit_pieces(hit: Hit) -> list[_Piece]:
    if hit.kind != "visit":
        return []
    recent = sum(1 for t in hit.earlier_visits if timedelta(0) <= hit.at - t <= VISIT_BURST_WINDOW)
    window = f"{VISIT_BURST_WINDOW.total_seconds():g}s"
    seen = f"{recent + 1} page views within {window}"
    if recent + 1 >= VISIT_BURST:
        why = f"{recent + 1} page views within {window}: faster than a reader"
        return [_machine("visits", seen, 0.95, why, "visit_burst", "scanner", decisive=True, identity=False)]
    return [
        _neutral("visits", seen),
        _human("beacon", "the site's beacon ran", 0.93, "page view from the site beacon", "beacon"),
    ]


def _odds(weight: float) -> float:
    weight = min(max(weight, 0.01), 0.99)
    return weight / (1 - weight)


def _confidence(value: float) -> float:
    return round(min(max(value, 0.5), 0.99), 2)


def classify(
    hit: Hit,
    *,
    ranges: MachineRanges | None = None,
    min_delay: timedelta = timedelta(seconds=5),
    burst: timedelta = LINK_BURST,
) -> Verdict:
    """Every piece of evidence about a hit, combined: machine when a piece names a machine (a published range, a
    user agent, a honeypot, a link walker's pattern, a hit faster than a reader) or the rest together point that
    way; human otherwise. The reason is the deciding piece; the confidence weighs them all.

    Args:
        min_delay: hits sooner than this after the send are a machine's.
        burst: two different links clicked closer than this are a machine's.
    """
    agent = agent_of(hit.user_agent)
    found = ranges.lookup(hit.client_ip) if ranges is not None else None
    pieces = [_range_piece(found, agent, hit), _agent_piece(agent, hit), _since_send_piece(hit, min_delay, agent)]
    if hit.kind in ("open", "click"):
        if hit.honeypot:
            why = "honeypot link: invisible to readers, followed by scanners"
            pieces.insert(
                0, _machine("honeypot", "followed", 0.99, why, "honeypot", "scanner", decisive=True, identity=False)
            )
        else:
            pieces.append(_neutral("honeypot", "not the honeypot"))
    pieces += _link_pieces(hit, burst) + _header_pieces(hit) + _visit_pieces(hit)
    evidence = tuple(p.evidence for p in pieces)

    odds = 1.0
    for piece in pieces:
        if piece.evidence.says == "machine":
            odds *= _odds(piece.evidence.weight)
        elif piece.evidence.says == "human":
            odds /= _odds(piece.evidence.weight)
    machine = odds / (1 + odds)

    def strongest(candidates: list[_Piece]) -> _Piece:
        return max(candidates, key=lambda p: p.evidence.weight)  # the first of equals: ranges come first

    decisive = [p for p in pieces if p.decisive]
    against = [p for p in pieces if p.evidence.says == "machine"]
    if decisive or machine > 0.5:
        top = strongest(decisive or against)
        named = [p for p in (decisive or against) if p.identity]
        cls = strongest(named).machine_class if named else top.machine_class
        confidence = max(top.evidence.weight, machine) if decisive else machine
        return Verdict(False, top.why, _confidence(confidence), cls, evidence, top.rule)
    speaking = [p for p in pieces if p.evidence.says == "human"]
    if not speaking:
        return Verdict(True, "nothing points to a machine", 0.5, None, evidence, "other")
    # a person's verdict reads as who they are (their client, the beacon); the headers only add to the confidence
    who = [p for p in speaking if p.evidence.name in ("user_agent", "beacon")]
    top = strongest(who or speaking)
    confidence = 1 - machine
    if hit.kind == "click":
        confidence = min(confidence, CLICK_CEILING)
    return Verdict(True, top.why, _confidence(confidence), None, evidence, top.rule)
