"""Site visits as a rep reads them: the path on the site's own origin, as text no mail client links (pure)."""

import re
from urllib.parse import unquote, urlsplit

from leadloop.domain.text import UNSHOWABLE

_HOST = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\]")


def site_origin(url: str, *, address: bool = False) -> str | None:
    """'HTTPS://WWW.Example.com:443/' -> 'https://www.example.com'; None when it is not an http(s) origin
    without user info; `address`: the origin of any http(s) address (path, query and fragment allowed)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.netloc.rpartition("@")[2].rpartition(":")[0] if port is not None else parts.netloc).lower()
    if (
        parts.scheme.lower() not in ("http", "https")
        or "@" in parts.netloc
        or not _HOST.fullmatch(host)
        or (not address and (parts.query or parts.fragment or parts.path not in ("", "/")))
    ):
        return None
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


#: What a page outside the site shows instead of its address (stored before visits were bound to their site).
ELSEWHERE = "a page outside the site (address not shown)"
# A path is written by whoever sent the beacon: mail clients link anything that looks like a host, an address
# or a scheme ("/www.evil.example/login"); these look the same to a reader and are never linked.
_UNLINKABLE = str.maketrans(
    {
        ".": "\u2024",
        ":": "\ua789",
        "@": "\uff20",
        # what IDNA reads as dots: "evil。example" is a host to some clients
        "\u3002": "\u2024",
        "\uff0e": "\u2024",
        "\uff61": "\u2024",
    }
)
MAX_SHOWN = 120
#: The longest page title stored; a rep sees at most MAX_SHOWN_TITLE characters of it.
MAX_TITLE = 200
MAX_SHOWN_TITLE = 80


def clean_title(raw: object) -> str | None:
    """A page title as the beacon reported it, stored as one line of text: control characters out, white space
    folded, at most MAX_TITLE characters; None when there is none. ValueError when it is not text."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError("title must be the page's title as text")
    title = " ".join(UNSHOWABLE.sub(" ", raw).split())
    return title[:MAX_TITLE] or None


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def shown_page(url: str, origins: frozenset[str], title: str | None = None) -> str:
    """The visited page's path and title, unlinkable; ELSEWHERE when `url` is not on one of the site's `origins`
    (a title then says nothing: it came with a page that is not the site's)."""
    if site_origin(url, address=True) not in origins:
        return ELSEWHERE
    path = _cut(UNSHOWABLE.sub("", unquote(urlsplit(url).path, errors="replace")) or "/", MAX_SHOWN)
    shown = clean_title(title)
    if shown:
        path = f"{path} — “{_cut(shown, MAX_SHOWN_TITLE)}”"
    return path.translate(_UNLINKABLE)
