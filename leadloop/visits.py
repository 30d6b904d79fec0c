"""Site visits as a rep reads them: the path on the site's own origin, as text no mail client links (pure)."""

import re
from urllib.parse import unquote, urlsplit

from leadloop.settings import site_origin

#: What a page outside the site shows instead of its address (stored before visits were bound to their site).
ELSEWHERE = "a page outside the site (address not shown)"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff\ud800-\udfff]")
# A path is written by whoever sent the beacon: mail clients link anything that looks like a host, an address
# or a scheme ("/www.evil.example/login"); these look the same to a reader and are never linked.
_UNLINKABLE = str.maketrans({".": "\u2024", ":": "\ua789", "@": "\uff20"})
MAX_SHOWN = 120


def shown_page(url: str, origins: frozenset[str]) -> str:
    """The visited page's path, unlinkable; ELSEWHERE when `url` is not on one of the site's `origins`."""
    if site_origin(url, address=True) not in origins:
        return ELSEWHERE
    path = _CONTROL.sub("", unquote(urlsplit(url).path, errors="replace")) or "/"
    if len(path) > MAX_SHOWN:
        path = path[: MAX_SHOWN - 1] + "…"
    return path.translate(_UNLINKABLE)
