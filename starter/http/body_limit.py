"""ASGI middleware that refuses a request body over its limit with 413, before or while it is read."""

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """A body over its limit gets 413 before it is read (declared Content-Length), or as soon as the chunks
    that arrived pass the limit; the app's own answer to a body cut short never goes out."""

    def __init__(self, app: "ASGIApp", limit: int, prefixes: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.prefixes = prefixes or {}

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.prefixes.items() if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: "Scope", receive: "Receive", send: "Send") -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"").strip()
        if declared and (not declared.isdigit() or int(declared) > limit):
            await self.refuse(send, limit)
            return
        received, cut, started = 0, False, False

        async def capped() -> "Message":
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut = True  # the app sees the client go away, and reads no further
                    return {"type": "http.disconnect"}
            return message

        async def unless_cut(message: "Message") -> None:
            nonlocal started
            if cut and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped, unless_cut)
        except Exception:
            if not cut or started:
                raise
        if cut and not started:
            await self.refuse(send, limit)

    @staticmethod
    async def refuse(send: "Send", limit: int) -> None:
        body = json.dumps({"detail": f"the body is larger than {limit} bytes"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
