"""Tracking in emails: the open pixel, click links through /c/, the honeypot and unsubscribe links (pure)."""

import html
import re
from dataclasses import dataclass

from leadloop.domain.tokens import Signer, Token, TokenKind

_HREF = re.compile(r"""href=(["'])(https?://[^"'\s>]+)\1""", re.IGNORECASE)
_TEXT_URL = re.compile(r"""https?://[^\s<>"')\]]+""")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class TrackingLinks:
    """Signed links for one email (one outbox key)."""

    signer: Signer
    public_url: str
    lead_id: int
    outbox_key: str
    issued_at: int

    def _token(self, kind: TokenKind, url: str = "", extra: str = "") -> str:
        return self.signer.sign(
            Token(kind=kind, lead_id=self.lead_id, key=self.outbox_key, issued_at=self.issued_at, url=url, extra=extra)
        )

    @property
    def open_url(self) -> str:
        return f"{self.public_url}/o/{self._token('open')}.gif"

    @property
    def unsubscribe_url(self) -> str:
        return f"{self.public_url}/u/{self._token('unsubscribe')}"

    def click_url(self, url: str) -> str:
        return f"{self.public_url}/c/{self._token('click', url)}"

    @property
    def honeypot_url(self) -> str:
        return f"{self.public_url}/c/{self._token('click', self.public_url + '/healthz', 'h')}"


def _ours(url: str, links: TrackingLinks) -> bool:
    """A tracking link already (the unsubscribe link stays a direct link)."""
    return url.startswith(tuple(f"{links.public_url}/{p}/" for p in ("o", "c", "u")))


def urls_in(values: list[str | None]) -> frozenset[str]:
    """URLs a lead typed into its own fields: never turned into signed redirects through our domain."""
    return frozenset(u.rstrip(".,;:!?") for v in values if v for u in _TEXT_URL.findall(v))


def track_html(body: str, links: TrackingLinks, skip: frozenset[str] = frozenset()) -> str:
    """Every http(s) link rewritten through /c/ (but `skip`); the pixel and a hidden honeypot before </body>."""

    def rewrite(match: re.Match[str]) -> str:
        url = html.unescape(match.group(2))
        if _ours(url, links) or url in skip:
            return match.group(0)
        return f'href="{html.escape(links.click_url(url))}"'

    out = _HREF.sub(rewrite, body)
    extra = (
        f'<a href="{html.escape(links.honeypot_url)}" style="display:none;font-size:0;color:transparent" '
        f'aria-hidden="true" tabindex="-1">&#8203;</a>'
        f'<img src="{html.escape(links.open_url)}" width="1" height="1" alt="" '
        f'style="display:block;width:1px;height:1px;border:0">'
    )
    ends = list(_BODY_END.finditer(out))
    if not ends:
        return out + extra
    cut = ends[-1].start()
    return out[:cut] + extra + out[cut:]


def track_text(body: str, links: TrackingLinks, skip: frozenset[str] = frozenset()) -> str:
    """Bare URLs in the text part rewritten through /c/ (not the unsubscribe link, not `skip`)."""

    def rewrite(match: re.Match[str]) -> str:
        url = match.group(0).rstrip(".,;:!?")
        tail = match.group(0)[len(url) :]
        return url + tail if _ours(url, links) or url in skip else links.click_url(url) + tail

    return _TEXT_URL.sub(rewrite, body)


def tracked_links(links: TrackingLinks, *parts: str) -> int:
    """How many links the email's parts send through /c/ (one link in both parts counted once, the honeypot not
    counted): what a link walker that follows every link would click."""
    found = re.findall(re.escape(f"{links.public_url}/c/") + r"[A-Za-z0-9_-]+", "\n".join(parts))
    return len(set(found) - {links.honeypot_url})
