"""The providers' published address lists read into ranges, and a ranges file built from them (pure but for the
atomic write)."""

import csv
import hashlib
import io
import ipaddress
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from leadloop.domain.ranges import RANGE_KINDS, MachineRanges, RangeKind, RangesError, Source, parse_ranges

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Where two kinds claim the same addresses, the earlier one keeps them and the later one's range is cut around
#: them: a gateway's range inside a cloud's is the gateway's (Microsoft's EOP inside Azure's AzureCloud tag).
KIND_PRIORITY: tuple[RangeKind, ...] = ("gateway", "mail_proxy", "private_relay", "apple", "cloud")
#: The header of leadloop's hand-kept CSV of documented ranges (vendors' pages that publish no machine-readable list).
DOCUMENTED_HEADER = ("network", "kind", "source", "provider", "url", "checked")
FORMATS = (
    "AWS ip-ranges.json, Google goog.json or cloud.json, Azure ServiceTags_Public_*.json, the Microsoft 365 "
    "endpoints JSON, Apple's egress-ip-ranges.csv or leadloop's documented-ranges CSV"
)

# the providers' own addresses for their lists: what each source's url says
AWS_URL = "https://ip-ranges.amazonaws.com/ip-ranges.json"
GOOGLE_URL = "https://www.gstatic.com/ipranges/goog.json"
GOOGLE_CLOUD_URL = "https://www.gstatic.com/ipranges/cloud.json"
AZURE_URL = "https://www.microsoft.com/en-us/download/details.aspx?id=56519"
M365_URL = "https://endpoints.office.com/endpoints/worldwide?clientrequestid=b10c5ed1-bad1-445f-b386-b919946339a7"
APPLE_RELAY_URL = "https://mask-api.icloud.com/egress-ip-ranges.csv"


@dataclass(frozen=True)
class SourceRanges:
    """One source's networks as its provider publishes them. `minus`: the source whose networks this one leaves
    out (Google's goog.json holds Google Cloud's ranges too; what is left is Google's own services)."""

    source: Source
    networks: tuple[Network, ...]
    minus: str | None = None


def _network(text: object, where: str) -> Network:
    if not isinstance(text, str):
        raise RangesError(f"{where}: {text!r} is not a network")
    try:
        network = ipaddress.ip_network(text.strip())
    except ValueError as exc:
        raise RangesError(f"{where}: {text!r} is not a network ({exc})") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        raise RangesError(f"{where}: {text}: an IPv4-mapped network; no provider publishes one, write it as IPv4")
    return network


def _day(text: object, where: str, layout: str) -> date:
    try:
        return datetime.strptime(str(text), layout).date()
    except ValueError:
        raise RangesError(f"{where}: {text!r} is not the date the list was published") from None


def _aws(data: dict[str, Any], name: str) -> list[SourceRanges]:
    prefixes, v6 = data.get("prefixes"), data.get("ipv6_prefixes", [])
    if not isinstance(prefixes, list) or not isinstance(v6, list) or not prefixes:
        raise RangesError(f"{name}: an AWS ip-ranges.json needs its prefixes and ipv6_prefixes lists")
    networks = [_network(p.get("ip_prefix"), f"{name}: prefixes[{i}]") for i, p in enumerate(prefixes)]
    networks += [_network(p.get("ipv6_prefix"), f"{name}: ipv6_prefixes[{i}]") for i, p in enumerate(v6)]
    published = _day(str(data.get("createDate", ""))[:10], f"{name}: createDate", "%Y-%m-%d")
    return [SourceRanges(Source("aws", "cloud", "Amazon Web Services", AWS_URL, published), tuple(networks))]


def _google(data: dict[str, Any], name: str) -> list[SourceRanges]:
    prefixes = data.get("prefixes")
    if not isinstance(prefixes, list) or not prefixes:
        raise RangesError(f"{name}: a Google list needs its prefixes")
    networks = []
    for i, p in enumerate(prefixes):
        if not isinstance(p, dict):
            raise RangesError(f"{name}: prefixes[{i}] is not an object")
        networks.append(_network(p.get("ipv4Prefix", p.get("ipv6Prefix")), f"{name}: prefixes[{i}]"))
    published = _day(str(data.get("creationTime", ""))[:10], f"{name}: creationTime", "%Y-%m-%d")
    if any("service" in p for p in prefixes):  # cloud.json names each prefix's service and scope; goog.json does not
        source = Source("google-cloud", "cloud", "Google Cloud", GOOGLE_CLOUD_URL, published)
        return [SourceRanges(source, tuple(networks))]
    source = Source("google", "mail_proxy", "Google (Gmail image proxy and prefetch)", GOOGLE_URL, published)
    return [SourceRanges(source, tuple(networks), minus="google-cloud")]


def _azure(data: dict[str, Any], name: str, downloaded: date) -> list[SourceRanges]:
    values = data.get("values")
    if not isinstance(values, list):
        raise RangesError(f"{name}: Azure service tags need their values list")
    tag = next((v for v in values if isinstance(v, dict) and v.get("name") == "AzureCloud"), None)
    if tag is None:
        raise RangesError(f"{name}: no AzureCloud tag (the tag of all of Azure's public addresses)")
    prefixes = tag.get("properties", {}).get("addressPrefixes")
    if not isinstance(prefixes, list) or not prefixes:
        raise RangesError(f"{name}: the AzureCloud tag has no addressPrefixes")
    networks = tuple(_network(p, f"{name}: AzureCloud[{i}]") for i, p in enumerate(prefixes))
    source = Source("azure", "cloud", "Microsoft Azure", AZURE_URL, downloaded)
    return [SourceRanges(source, networks)]


def _m365(data: list[Any], name: str, downloaded: date) -> list[SourceRanges]:
    networks: list[Network] = []
    for entry in data:
        # Exchange Online's entries: its front ends (ids 1, 2) and Exchange Online Protection (9, 10), whose
        # Safe Links and attachment detonation fetch what a message links to
        if isinstance(entry, dict) and entry.get("serviceArea") == "Exchange":
            where = f"{name}: id {entry.get('id')}"
            networks += [_network(ip, where) for ip in entry.get("ips", [])]
    if not networks:
        raise RangesError(f"{name}: no Exchange entry with addresses in the Microsoft 365 endpoints")
    provider = "Microsoft 365 (Exchange Online Protection, Defender Safe Links)"
    return [SourceRanges(Source("microsoft-365", "gateway", provider, M365_URL, downloaded), tuple(networks))]


def _rows(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]


def _apple_relay(rows: list[list[str]], name: str, downloaded: date) -> list[SourceRanges]:
    networks = []
    for line, row in enumerate(rows, start=1):
        if len(row) != 5:
            raise RangesError(
                f"{name}: line {line}: {len(row)} fields, not Apple's 5 (network, country, region, city, "
                "empty): cut short?"
            )
        networks.append(_network(row[0], f"{name}: line {line}"))
    source = Source("apple-private-relay", "private_relay", "iCloud Private Relay", APPLE_RELAY_URL, downloaded)
    return [SourceRanges(source, tuple(networks))]


def _documented(rows: list[list[str]], name: str) -> list[SourceRanges]:
    grouped: dict[str, tuple[Source, list[Network]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        where = f"{name}: line {line}"
        if len(row) != len(DOCUMENTED_HEADER):
            raise RangesError(
                f"{where}: {len(row)} fields, not {len(DOCUMENTED_HEADER)} ({', '.join(DOCUMENTED_HEADER)})"
            )
        net, kind, sid, provider, url, checked = (cell.strip() for cell in row)
        if kind not in RANGE_KINDS:
            raise RangesError(f"{where}: kind {kind!r} is not one of {', '.join(RANGE_KINDS)}")
        source = Source(sid, kind, provider, url, _day(checked, f"{where}: checked", "%Y-%m-%d"))
        network = _network(net, where)
        if sid in grouped:
            first = grouped[sid][0]
            if (first.kind, first.provider) != (source.kind, source.provider):
                raise RangesError(f"{where}: source {sid} has another kind or provider on an earlier line")
            # a source published on the day its newest row was checked; each row's own page is its url
            if source.published > first.published:
                grouped[sid] = (source, grouped[sid][1])
            grouped[sid][1].append(network)
        else:
            grouped[sid] = (source, [network])
    if not grouped:
        raise RangesError(f"{name}: no ranges under the header")
    return [SourceRanges(source, tuple(networks)) for source, networks in grouped.values()]


def read_source(name: str, raw: bytes, downloaded: date) -> list[SourceRanges]:
    """The sources in one downloaded provider file, its format told by its content; `downloaded` dates those whose
    format carries no date of its own (Azure, Microsoft 365, Apple). RangesError names `name` and the problem."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RangesError(f"{name}: not text; leadloop reads {FORMATS}") from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RangesError(f"{name}: not whole JSON, cut short? ({exc})") from None
        if isinstance(data, dict) and "syncToken" in data and "createDate" in data:
            return _aws(data, name)
        if isinstance(data, dict) and "syncToken" in data and "creationTime" in data:
            return _google(data, name)
        if isinstance(data, dict) and "changeNumber" in data and "values" in data:
            return _azure(data, name, downloaded)
        if isinstance(data, list) and data and all(isinstance(e, dict) and "serviceArea" in e for e in data):
            return _m365(data, name, downloaded)
        raise RangesError(f"{name}: a JSON file leadloop cannot place; it reads {FORMATS}")
    try:
        rows = _rows(text)
    except csv.Error as exc:
        raise RangesError(f"{name}: not CSV ({exc})") from None
    if rows and tuple(cell.strip() for cell in rows[0]) == DOCUMENTED_HEADER:
        return _documented(rows, name)
    # Apple's egress list: network, country, region, city and an empty field, no header
    if rows and len(rows[0]) == 5 and "/" in rows[0][0]:
        return _apple_relay(rows, name, downloaded)
    raise RangesError(f"{name}: not a format leadloop reads; it reads {FORMATS}")


def _intervals(networks: Iterable[Network]) -> dict[int, list[tuple[int, int]]]:
    """First and last address of each collapsed run, per IP version, sorted."""
    out: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for version in (4, 6):
        nets = [n for n in networks if n.version == version]
        for net in ipaddress.collapse_addresses(nets):  # type: ignore[type-var]
            start, end = int(net.network_address), int(net.broadcast_address)
            if out[version] and out[version][-1][1] + 1 >= start:
                out[version][-1] = (out[version][-1][0], max(end, out[version][-1][1]))
            else:
                out[version].append((start, end))
    return out


def _subtract(runs: list[tuple[int, int]], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`runs` less every address in `taken` (both sorted, non-overlapping)."""
    out: list[tuple[int, int]] = []
    at = 0
    for start, end in runs:
        while at < len(taken) and taken[at][1] < start:
            at += 1
        cursor, probe = start, at
        while probe < len(taken) and taken[probe][0] <= end:
            if taken[probe][0] > cursor:
                out.append((cursor, taken[probe][0] - 1))
            cursor = max(cursor, taken[probe][1] + 1)
            probe += 1
        if cursor <= end:
            out.append((cursor, end))
    return out


def _merge(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(a + b):
        if out and out[-1][1] + 1 >= start:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def _networks(version: int, runs: list[tuple[int, int]]) -> list[Network]:
    address = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return [net for s, e in runs for net in ipaddress.summarize_address_range(address(s), address(e))]


def build(base: MachineRanges | None, given: list[SourceRanges], generated: date) -> MachineRanges:
    """A new ranges file: `base`'s sources that `given` does not replace, and `given`'s. Overlaps inside a source are
    collapsed; where sources overlap, KIND_PRIORITY (then the source id) decides who keeps the addresses and the other's
    range is cut around them. Checked whole (parse_ranges) before it is returned."""
    ids = [g.source.id for g in given]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise RangesError(f"source {', '.join(twice)} given by more than one file")
    pool: dict[str, SourceRanges] = {}
    if base is not None:
        for sid, nets in base.by_source().items():
            pool[sid] = SourceRanges(base.sources[sid], tuple(ipaddress.ip_network(n) for n in nets))
    pool.update({g.source.id: g for g in given})
    runs = {sid: _intervals(entry.networks) for sid, entry in pool.items()}
    for sid, entry in pool.items():
        if entry.minus is not None:
            if entry.minus not in pool:
                raise RangesError(
                    f"{sid} leaves out {entry.minus}'s ranges: give {entry.minus}'s file too "
                    "(Google's goog.json with its cloud.json)"
                )
            runs[sid] = {v: _subtract(runs[sid][v], runs[entry.minus][v]) for v in (4, 6)}
    order = sorted(pool, key=lambda sid: (KIND_PRIORITY.index(pool[sid].source.kind), sid))
    taken: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    pairs: list[tuple[str, str]] = []
    for sid in order:
        for version in (4, 6):
            kept = _subtract(runs[sid][version], taken[version])
            taken[version] = _merge(taken[version], kept)
            pairs += [(str(net), sid) for net in _networks(version, kept)]
    sources = {sid: pool[sid].source for sid in order}
    digest = hashlib.sha256("\n".join(f"{n} {s}" for n, s in sorted(pairs)).encode()).hexdigest()[:8]
    draft = MachineRanges(f"{generated.isoformat()}.{digest}", generated, sources, pairs)
    return parse_ranges(draft.as_data(), "the built ranges")


def dump(ranges: MachineRanges) -> str:
    """The file's text: its head as indented JSON, then one [network, source] pair a line (diffs read well)."""
    data = ranges.as_data()
    pairs = data.pop("ranges")
    head = json.dumps(data, indent=1, ensure_ascii=False)
    lines = ",\n".join(f"  {json.dumps(pair)}" for pair in pairs)
    return f'{head[:-2]},\n "ranges": [\n{lines}\n ]\n}}\n'


def write_ranges(ranges: MachineRanges, path: Path) -> None:
    """Write `ranges` to `path` atomically: a temporary file beside it, renamed over it once whole."""
    text = dump(ranges)
    parse_ranges(json.loads(text), str(path))  # what is written reads back
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private; the ranges file is read by the services, as the file it replaces was
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
