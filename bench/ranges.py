"""The benchmark's range phase: µs per `MachineRanges.lookup` over the shipped ranges file, hits in and out of its
ranges (IPv4, IPv6, IPv4-mapped), against a linear scan over `ipaddress` networks; the issue's target is < 20 µs.

Run alone: `PYTHONPATH=. .venv/bin/python bench/ranges.py` (prints the figures as JSON)."""

import ipaddress
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leadloop.domain.ranges import PACKAGED_RANGES, MachineRanges, load_ranges

TARGET_US = 20.0
BATCHES = 5


def sample_hits(ranges: MachineRanges, count: int, seed: int = 19) -> dict[str, list[str]]:
    """`count` client addresses of each sort: inside a range (v4, v6, v4 written IPv4-mapped) and outside every range
    (v4, v6), drawn from the file's own networks with a fixed seed."""
    rng = random.Random(seed)
    networks = [ipaddress.ip_network(n) for nets in ranges.by_source().values() for n in nets]
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]

    def inside(pool: list[Any]) -> str:
        net = rng.choice(pool)
        return str(net[rng.randrange(net.num_addresses)])

    def outside(bits: int) -> str:
        while True:
            value = rng.getrandbits(bits)
            text = str(ipaddress.IPv4Address(value) if bits == 32 else ipaddress.IPv6Address(value))
            if ranges.lookup(text) is None:
                return text

    return {
        "in_v4": [inside(v4) for _ in range(count)],
        "in_v6": [inside(v6) for _ in range(count)],
        "in_v4_mapped": [f"::ffff:{inside(v4)}" for _ in range(count)],
        "out_v4": [outside(32) for _ in range(count)],
        "out_v6": [outside(128) for _ in range(count)],
    }


def per_hit_us(lookup: Callable[[str], object], hits: list[str]) -> float:
    """Median over BATCHES of the µs one hit takes."""
    times = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for ip in hits:
            lookup(ip)
        times.append((time.perf_counter() - start) / len(hits) * 1e6)
    return statistics.median(times)


def linear_scan(ranges: MachineRanges) -> Callable[[str], object]:
    """The obvious way: every network an `ipaddress` object, tried in turn until one holds the address."""
    networks = [(ipaddress.ip_network(n), sid) for sid, nets in ranges.by_source().items() for n in nets]

    def lookup(ip: str) -> object:
        address = ipaddress.ip_address(ip)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network, sid in networks:
            if address.version == network.version and address in network:
                return sid
        return None

    return lookup


def range_lookups(hits: int, naive_hits: int = 100, path: Path = PACKAGED_RANGES) -> dict[str, Any]:
    """The phase's figures: the file, its load time, µs per hit per sort of address, and the linear scan's."""
    start = time.perf_counter()
    ranges = load_ranges(path)
    load_s = time.perf_counter() - start
    samples = sample_hits(ranges, hits)
    naive = linear_scan(ranges)
    every = [ip for sort in samples.values() for ip in sort]
    disagree = [ip for ip in every[:: max(1, len(every) // naive_hits)] if _id(ranges.lookup(ip)) != naive(ip)]
    lookup_us = {sort: per_hit_us(ranges.lookup, ips) for sort, ips in samples.items()}
    naive_sample = [ip for sort in samples.values() for ip in sort[: max(1, naive_hits // len(samples))]]
    return {
        "file": str(path),
        "version": ranges.version,
        "networks": len(ranges),
        "load_s": load_s,
        "hits_per_sort": hits,
        "lookup_us": lookup_us,
        "lookup_us_worst": max(lookup_us.values()),
        "linear_scan_us": per_hit_us(naive, naive_sample),
        "linear_scan_hits": len(naive_sample),
        "disagreements": disagree,
        "target_us": TARGET_US,
    }


def _id(match: Any) -> str | None:
    return match.source.id if match is not None else None


if __name__ == "__main__":
    print(json.dumps(range_lookups(10_000), indent=1))
