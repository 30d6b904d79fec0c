"""Tracking in emails: every link through /c/, the pixel, the honeypot; the unsubscribe link left direct."""

import re

from leadloop.domain.tokens import Signer
from leadloop.domain.tracking import TrackingLinks, track_html, track_text, tracked_links

LINKS = TrackingLinks(Signer(["k"]), "https://t.example", 5, "lead-5.c0.tips", 1_700_000_000)


def test_html_links_are_rewritten_and_pixel_and_honeypot_added() -> None:
    html = (
        '<html><body><a href="https://site.example/pricing?a=1&amp;b=2">Pricing</a>'
        f'<a href="{LINKS.unsubscribe_url}">Unsubscribe</a><a href="mailto:x@y.example">mail</a></body></html>'
    )
    out = track_html(html, LINKS)
    hrefs = re.findall(r'href="([^"]+)"', out)
    clicks = [h for h in hrefs if h.startswith("https://t.example/c/")]
    assert len(clicks) == 2  # the pricing link and the hidden honeypot
    token = clicks[0].rsplit("/", 1)[1]
    assert LINKS.signer.verify(token).url == "https://site.example/pricing?a=1&b=2"
    assert LINKS.signer.verify(clicks[1].rsplit("/", 1)[1]).extra == "h"
    assert LINKS.unsubscribe_url in hrefs and "mailto:x@y.example" in hrefs
    assert out.index(LINKS.open_url) < out.index("</body>")
    assert "display:none" in out


def test_text_urls_are_rewritten_but_not_unsubscribe() -> None:
    text = f"Pricing: https://site.example/pricing.\nUnsubscribe: {LINKS.unsubscribe_url}\n"
    out = track_text(text, LINKS)
    assert "https://site.example/pricing" not in out
    assert out.count("https://t.example/c/") == 1 and out.splitlines()[0].endswith(".")
    assert LINKS.unsubscribe_url in out


def test_tracked_links_counts_each_link_once_and_not_the_honeypot() -> None:
    html = track_html(
        '<body><a href="https://site.example/pricing">P</a><a href="https://site.example/demo">D</a>'
        '<a href="https://site.example/pricing">P again</a></body>',
        LINKS,
    )
    text = track_text("Pricing https://site.example/pricing\nDemo https://site.example/demo\n", LINKS)
    # a link walker following every link clicks two: pricing and demo, in either part
    assert tracked_links(LINKS, html, text) == 2
    assert tracked_links(LINKS, track_html("<body>no links</body>", LINKS)) == 0  # the honeypot alone


def test_urls_a_lead_typed_never_become_signed_redirects() -> None:
    from leadloop.domain.tracking import urls_in

    typed = urls_in(["Evil Corp https://phish.example/login.", None, "Ann"])
    assert typed == {"https://phish.example/login"}
    text = "Hello Evil Corp https://phish.example/login.\nPricing: https://site.example/pricing\n"
    out = track_text(text, LINKS, typed)
    assert "https://phish.example/login." in out and out.count("https://t.example/c/") == 1
    html = '<p>Evil Corp <a href="https://phish.example/login">x</a></p>'
    assert 'href="https://phish.example/login"' in track_html(html, LINKS, typed)


def test_a_visit_path_with_ideographic_dots_is_not_a_host() -> None:
    from leadloop.domain.visits import shown_page

    shown = shown_page("https://site.example/evil\u3002example/x\uff0ey\uff61z", frozenset({"https://site.example"}))
    assert shown == "/evil\u2024example/x\u2024y\u2024z"
