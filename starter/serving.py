"""How uvicorn serves the HTTP service: an access log without tokens, client addresses only from trusted proxies."""

import copy
import ipaddress
import logging
import re
from typing import TYPE_CHECKING, Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

REDACTED = "[redacted]"
# /o/<token>.gif, /c/<token>, /u/<token>, /r/<token>, /codec/<token>/decode: a token opens what it names (an
# unsubscribe, a rep's decision, the codec), so it stays out of the logs; so does the visitor id (?ll=)
_TOKEN_IN_PATH = re.compile(r"^(/(?:o|c|u|r)/)[^/?#]+|^(/codec/)[^/?#]+(?=/(?:de|en)code\b)")
_VISITOR_IN_QUERY = re.compile(r"(?<=[?&]ll=)[^&#]*")


def redact_path(path: str) -> str:
    """A request path (with its query) as the access log shows it: every token replaced by [redacted]."""
    path = _TOKEN_IN_PATH.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, path, count=1)
    return _VISITOR_IN_QUERY.sub(REDACTED, path)


class RedactTokens(logging.Filter):
    """For uvicorn's access log: its records carry (client, method, path, HTTP version, status) as args."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_path(args[2]), args[3], args[4])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, with the access log's paths redacted."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    config["handlers"]["access"].setdefault("filters", []).append("redact_tokens")
    return config


def uvicorn_options() -> dict[str, Any]:
    """What every uvicorn that runs the HTTP service is given (`leadloop api`, `leadloop demo`).

    uvicorn's own proxy headers stay off: by default it believes X-Forwarded-For from 127.0.0.1 and from
    FORWARDED_ALLOW_IPS; the app's ForwardedFor believes LEADLOOP_TRUSTED_PROXIES and no one else.
    """
    return {"log_config": log_config(), "proxy_headers": False}


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ForwardedFor:
    """ASGI middleware: uvicorn's ProxyHeadersMiddleware for the peers in LEADLOOP_TRUSTED_PROXIES only (none
    by default: X-Forwarded-For is then nobody's to set), and a forwarded client that is not an IP address is
    ignored: the request keeps its peer's address, so a made-up value can neither dodge nor aim the rate limit."""

    _PEER = "leadloop.peer"

    def __init__(self, app: "ASGIApp", trusted: list[str]) -> None:
        self.app = app
        self.proxy = ProxyHeadersMiddleware(self._checked, trusted_hosts=trusted) if trusted else None  # type: ignore[arg-type]

    async def __call__(self, scope: "Scope", receive: "Receive", send: "Send") -> None:
        if self.proxy is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[self._PEER] = scope.get("client")
        await self.proxy(scope, receive, send)  # type: ignore[arg-type]

    async def _checked(self, scope: "Scope", receive: "Receive", send: "Send") -> None:
        client = scope.get("client")
        if client is not None and client != scope[self._PEER] and not _is_address(client[0]):
            scope["client"] = scope[self._PEER]
        await self.app(scope, receive, send)
