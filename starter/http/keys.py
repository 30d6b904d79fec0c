"""Shared keys (API, site, metrics token) compared in constant time."""

import hmac


def key_ok(given: str | None, accepted: list[str]) -> bool:
    """Constant-time comparison against every accepted key."""
    if not given:
        return False
    found = False
    for key in accepted:
        found |= hmac.compare_digest(given.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))
    return found


def site_for(given: str | None, sites: dict[str, frozenset[str]]) -> frozenset[str] | None:
    """The origins of the site key given, compared in constant time against every key; None for a wrong key."""
    found = None
    for key, origins in sites.items():
        if key_ok(given, [key]):
            found = origins
    return found
