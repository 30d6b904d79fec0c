"""Published address ranges that mean a machine or a proxy: the versioned data file and its fast lookup (pure)."""

import bisect
import ipaddress
import itertools
import json
import re
import socket
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

#: What a range says about a hit from it.
#: gateway: a mail security gateway (Microsoft 365 EOP / Safe Links, Proofpoint, Mimecast, ...): machine;
#: cloud: a public cloud (AWS, Google Cloud, Azure): machine unless later evidence says otherwise;
#: mail_proxy: a mail provider's own fetchers (Gmail's image proxy and prefetch, Yahoo's proxy): depends on
#: the user agent and timing; apple: Apple's own network (17.0.0.0/8): the address alone is not MPP;
#: private_relay: iCloud Private Relay egress: people browsing, and Apple Mail's prefetch.
RangeKind = Literal["gateway", "cloud", "mail_proxy", "apple", "private_relay"]
RANGE_KINDS: tuple[RangeKind, ...] = get_args(RangeKind)
#: Ranges every machine verdict may rest on without other evidence.
MACHINE_KINDS: frozenset[RangeKind] = frozenset({"gateway", "cloud"})
RANGES_FORMAT = 1
PACKAGED_RANGES = Path(__file__).resolve().parent.parent / "data" / "ranges" / "machine-ranges.json"
_SOURCE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class RangesError(ValueError):
    """A ranges file that cannot be used; nothing of it is loaded."""


@dataclass(frozen=True)
class Source:
    """Where a group of ranges comes from: the provider's published list, as downloaded on `published`."""

    id: str
    kind: RangeKind
    provider: str
    url: str
    published: date


@dataclass(frozen=True)
class RangeMatch:
    """The range an address falls in."""

    network: str
    kind: RangeKind
    source: Source

    @property
    def machine(self) -> bool:
        return self.kind in MACHINE_KINDS

    def describe(self) -> str:
        return f"{self.source.provider} ({self.kind}, {self.network})"


def address_of(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a client came from, an IPv4-mapped IPv6 address as its IPv4 one; None when it is not one."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])  # a zone id names a local interface
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


#: A network as (IP version, first address, last address, canonical text).
Span = tuple[int, int, int, str]
_MAPPED_FIRST, _MAPPED_LAST = 0xFFFF_0000_0000, 0xFFFF_FFFF_FFFF  # ::ffff:0:0/96


def span(net: str) -> Span:
    """A network as (IP version, first address, last address, canonical text); ValueError when it is not one (host
    bits set, no address, a prefix out of range). Parsed with the socket module's C functions: `ipaddress` makes
    loading the shipped file's tens of thousands of networks take seconds."""
    text, slash, length = net.strip().partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in text else (socket.AF_INET, 32)
    try:
        packed = socket.inet_pton(family, text)
    except OSError:
        raise ValueError(f"{text!r} is not an IPv{4 if bits == 32 else 6} address") from None
    if slash and not (length.isascii() and length.isdigit() and int(length) <= bits):
        raise ValueError(f"{length!r} is not a prefix length (0 to {bits})")
    prefix = int(length) if slash else bits
    start, size = int.from_bytes(packed, "big"), 1 << (bits - prefix)
    if start & (size - 1):
        raise ValueError(f"{net.strip()} has host bits set")
    return (4 if bits == 32 else 6), start, start + size - 1, f"{socket.inet_ntop(family, packed)}/{prefix}"


def _value(text: str | None) -> tuple[int, int] | None:
    """(IP version, address as an integer) of a client address, an IPv4-mapped one as its IPv4; None when it is not
    one. What `address_of` says, parsed with the socket module's C functions: a hit's lookup stays a few µs."""
    if not text:
        return None
    bare = text.strip().split("%", 1)[0]
    try:
        if ":" not in bare:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, bare), "big")
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, bare), "big")
    except OSError:
        return None
    if _MAPPED_FIRST <= value <= _MAPPED_LAST:
        return 4, value & 0xFFFF_FFFF
    return 6, value


class MachineRanges:
    """Non-overlapping networks, sorted by first address per IP version; a lookup is one binary search."""

    def __init__(
        self,
        version: str,
        generated: date,
        sources: dict[str, Source],
        networks: list[tuple[str, str]],
        *,
        spans: list[tuple[Span, str]] | None = None,
    ) -> None:
        """`networks`: (network, source id) pairs, already checked (parse_ranges); `spans`: the same parsed, when
        the caller has them (parsing is most of a load's time)."""
        self.version = version
        self.generated = generated
        self.sources = sources
        self._starts: dict[int, list[int]] = {4: [], 6: []}
        self._ends: dict[int, list[int]] = {4: [], 6: []}
        self._entries: dict[int, list[tuple[str, Source]]] = {4: [], 6: []}
        parsed = spans if spans is not None else [(span(net), sid) for net, sid in networks]
        for (ip_version, start, end, network), source in sorted(parsed):
            self._starts[ip_version].append(start)
            self._ends[ip_version].append(end)
            self._entries[ip_version].append((network, sources[source]))
        # built once: a lookup hands out the same frozen match for every hit of a range
        self._matches = {v: [RangeMatch(n, src.kind, src) for n, src in self._entries[v]] for v in (4, 6)}

    def __len__(self) -> int:
        return len(self._starts[4]) + len(self._starts[6])

    def counts(self) -> dict[str, int]:
        """Networks per source id."""
        counted: dict[str, int] = {}
        for entries in self._entries.values():
            for _, source in entries:
                counted[source.id] = counted.get(source.id, 0) + 1
        return counted

    def by_source(self) -> dict[str, list[str]]:
        """Each source's networks, sources with none included."""
        out: dict[str, list[str]] = {sid: [] for sid in self.sources}
        for version in (4, 6):
            for network, source in self._entries[version]:
                out[source.id].append(network)
        return out

    def lookup(self, ip: str | None) -> RangeMatch | None:
        """The range `ip` falls in, or None (not in any, or not an address)."""
        found = _value(ip)
        if found is None:
            return None
        version, value = found
        at = bisect.bisect_right(self._starts[version], value) - 1
        if at < 0 or value > self._ends[version][at]:
            return None
        return self._matches[version][at]

    def as_data(self) -> dict[str, Any]:
        """The file's content: what `parse_ranges` reads back."""
        return {
            "format": RANGES_FORMAT,
            "version": self.version,
            "generated": self.generated.isoformat(),
            "sources": {
                s.id: {"kind": s.kind, "provider": s.provider, "url": s.url, "published": s.published.isoformat()}
                for s in self.sources.values()
            },
            "ranges": [[net, source.id] for v in (4, 6) for net, source in self._entries[v]],
        }


def _date(value: object, where: str) -> date:
    if not isinstance(value, str):
        raise RangesError(f"{where}: must be a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RangesError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def _text(value: object, where: str, limit: int = 300) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise RangesError(f"{where}: must be text of 1 to {limit} characters")
    return value


def _source(sid: object, raw: object) -> Source:
    where = f"sources.{sid}"
    if not isinstance(sid, str) or not _SOURCE_ID.match(sid):
        raise RangesError(f"{where}: a source id is lower-case letters, digits, '-' and '_' (at most 32)")
    if not isinstance(raw, dict):
        raise RangesError(f"{where}: must be a mapping of kind, provider, url, published")
    unknown = set(raw) - {"kind", "provider", "url", "published"}
    if unknown:
        raise RangesError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    kind = raw.get("kind")
    if kind not in RANGE_KINDS:
        raise RangesError(f"{where}.kind: {kind!r} is not one of {', '.join(RANGE_KINDS)}")
    url = _text(raw.get("url"), f"{where}.url", 2000)
    if not url.startswith(("https://", "http://")):
        raise RangesError(f"{where}.url: must be the http(s) address the list is published at")
    provider = _text(raw.get("provider"), f"{where}.provider")
    return Source(sid, kind, provider, url, _date(raw.get("published"), f"{where}.published"))


def check_networks(
    pairs: list[tuple[str, str]], sources: dict[str, Source], where: str = "ranges"
) -> list[tuple[str, str]]:
    """(network, source id) pairs as written, each a valid network (host bits clear) of a known source and
    none overlapping another; RangesError names the first problem."""
    _checked(pairs, sources, where)
    return pairs


def _checked(pairs: list[tuple[str, str]], sources: dict[str, Source], where: str) -> list[tuple[Span, str]]:
    seen: list[tuple[Span, int]] = []
    for index, (net, sid) in enumerate(pairs):
        if sid not in sources:
            raise RangesError(f"{where}[{index}]: source {sid!r} is not in sources")
        try:
            parsed = span(net)
        except ValueError as exc:
            raise RangesError(f"{where}[{index}]: {net!r} is not a network ({exc})") from None
        if parsed[0] == 6 and _MAPPED_FIRST <= parsed[1] <= _MAPPED_LAST:
            raise RangesError(f"{where}[{index}]: {net}: write IPv4-mapped networks as IPv4")
        seen.append((parsed, index))
    seen.sort(key=lambda p: (p[0][0], p[0][1], -p[0][2]))
    for (low, li), (high, hi) in itertools.pairwise(seen):
        if low[0] == high[0] and high[1] <= low[2]:
            (first, fnet), (second, snet) = sorted([(li, low[3]), (hi, high[3])])
            raise RangesError(
                f"{where}[{first}] {fnet} and {where}[{second}] {snet} overlap: an address must fall in one range"
            )
    return [(parsed, pairs[index][1]) for parsed, index in seen]


def parse_ranges(data: object, where: str = "ranges file") -> MachineRanges:
    """A ranges file's parsed JSON, checked whole; RangesError (prefixed by `where`) names the first problem."""
    try:
        if not isinstance(data, dict):
            raise RangesError("must be a JSON object with format, version, generated, sources and ranges")
        unknown = set(data) - {"format", "version", "generated", "sources", "ranges"}
        if unknown:
            raise RangesError(f"unknown field(s) {', '.join(sorted(unknown))}")
        if data.get("format") != RANGES_FORMAT:
            raise RangesError(f"format: {data.get('format')!r} is not {RANGES_FORMAT}, the format this leadloop reads")
        version = _text(data.get("version"), "version", 64)
        generated = _date(data.get("generated"), "generated")
        raw_sources = data.get("sources")
        if not isinstance(raw_sources, dict) or not raw_sources:
            raise RangesError("sources: must be a non-empty mapping of source id to its description")
        sources = {sid: _source(sid, raw) for sid, raw in raw_sources.items()}
        raw_ranges = data.get("ranges")
        if not isinstance(raw_ranges, list):
            raise RangesError("ranges: must be a list of [network, source id] pairs")
        pairs: list[tuple[str, str]] = []
        for index, item in enumerate(raw_ranges):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise RangesError(f"ranges[{index}]: must be a [network, source id] pair of strings")
            pairs.append((item[0], item[1]))
        return MachineRanges(version, generated, sources, pairs, spans=_checked(pairs, sources, "ranges"))
    except RangesError as exc:
        raise RangesError(f"{where}: {exc}") from None


def load_ranges(path: Path) -> MachineRanges:
    """The ranges file at `path`, checked whole; RangesError names the file and the first problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RangesError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RangesError(f"{path}: not JSON ({exc})") from None
    return parse_ranges(data, str(path))
