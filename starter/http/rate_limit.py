"""The public links' pace: a token bucket per client address (and signed link), refused with 429."""

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import HTTPException, Request

from starter.http.hits import client_ip


class RateLimiter:
    """A token bucket per client address, kept for the `max_clients` most recently seen (idle ones go first)."""

    def __init__(
        self, per_minute: int, burst: int, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """0 when the client may go on (one token taken), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if not wait else tokens, now)  # most recently seen last
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def limit_key(request: Request, signed: Callable[[str], bool]) -> str:
    """The client's address (IPv6: its /64), and the link's token when it is validly `signed`."""
    address = client_ip(request) or ""
    try:
        network = ipaddress.ip_address(address)
    except ValueError:
        network = None
    if isinstance(network, ipaddress.IPv6Address):  # one host holds a whole /64
        address = str(ipaddress.IPv6Network(f"{network}/64", strict=False))
    token = request.path_params.get("token")
    if token and signed(token):
        return f"{address} {token}"
    return address


def enforce(limiter: RateLimiter, request: Request, signed: Callable[[str], bool]) -> None:
    """Raise 429 (with Retry-After) when the request's bucket is empty.

    Per client address and link for a validly signed link (an HMAC check, no database) — a mail provider's
    image proxy, a company's NAT or a mailbox provider's one-click unsubscribe fetch many people's links from
    one address and must not lose them — and per address (IPv6: its /64) for everything else.
    """
    wait = limiter.take(limit_key(request, signed))
    if wait:
        raise HTTPException(
            429, "too many requests from this address; slow down", headers={"Retry-After": str(math.ceil(wait))}
        )
