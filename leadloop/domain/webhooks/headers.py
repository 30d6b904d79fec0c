"""Reading one request header by name, whatever case the HTTP layer or a test gives it in."""

from collections.abc import Mapping

from leadloop.domain.webhooks.events import WebhookRefused


def header(headers: Mapping[str, str], name: str, provider: str) -> str:
    """The header's value, or WebhookRefused naming the missing header."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted and value:
            return value
    raise WebhookRefused(f"{provider}: missing {name} header")
