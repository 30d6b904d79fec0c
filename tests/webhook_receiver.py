"""A real receiving CRM for the webhook tests: uvicorn on a free loopback port, verifying each delivery with
standardwebhooks and de-duplicating by webhook-id, as the README's receiver example does."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import free_port


@dataclass
class Received:
    message_id: str
    type: str
    lead_id: int
    body: str
    data: dict[str, Any]


@dataclass
class Receiver:
    """Answers 2xx to a verified delivery; 401 when the signature does not verify; `answer` (503, 410...) to all
    while it is set; `hold` keeps requests waiting until it is set."""

    secret: str = ""
    port: int = field(default_factory=free_port)
    answer: int | None = None
    hold: asyncio.Event | None = None
    received: list[Received] = field(default_factory=list)  # verified and new, in arrival order
    duplicates: int = 0
    refused: int = 0  # answered 401: the signature did not verify
    requests: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set at each request
    _server: uvicorn.Server | None = None
    _task: "asyncio.Task[None] | None" = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/leadloop"

    def ids(self) -> list[str]:
        return [r.message_id for r in self.received]

    def of_lead(self, lead_id: int) -> list[str]:
        return [r.type for r in self.received if r.lead_id == lead_id]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests += 1
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = self.answer or self.take(body, headers)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": f"answer {status}".encode()})
        self.arrived.set()

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            self.refused += 1
            return 401
        message_id = headers["webhook-id"]
        if message_id in self.ids():
            self.duplicates += 1
            return 200
        data = payload["data"]
        self.received.append(Received(message_id, payload["type"], data["lead_id"], body.decode(), data))
        return 200

    async def start(self) -> None:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop listening: connections are refused until `start` again (on the same port)."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    async def wait_for(self, count: int, seconds: float = 60) -> None:
        """Until `count` distinct deliveries arrived, verified."""
        async with asyncio.timeout(seconds):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


def parsed(body: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(body)
    return value
