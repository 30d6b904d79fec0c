"""The codec server: the Temporal UI (and `temporal --codec-endpoint`) decode encrypted payloads here.

Protocol (Temporal's remote codec): POST {endpoint}/decode or /encode with `{"payloads": [Payload JSON]}`
and the `X-Namespace` header; the answer has the same shape. Authenticated by the codec token, sent as
`Authorization: Bearer <token>`, or, for a UI that sends no header (the dev server's `--ui-codec-endpoint`),
as the endpoint's last path segment: `/codec/<token>/decode`. Browsers may call it only from the configured
UI origins (CORS). Off (404) unless encryption keys and a codec token are configured. A body larger than
LEADLOOP_CODEC_MAX_BODY_BYTES gets 413 (the app's BodyLimit refuses it before it is read)."""

import json
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payloads

from leadloop.infra.codec import AesGcmCodec, CodecError
from leadloop.infra.settings import Settings
from leadloop.infra.temporal import codec
from starter.http.keys import key_ok


class CodecServer:
    """The codec server's keys, token and allowed origins, and what it answers."""

    def __init__(self, settings: Settings) -> None:
        self.max_body = settings.codec_max_body_bytes
        self.sealer = codec(settings)
        self.token = settings.codec_token.get_secret_value() if settings.codec_token else None
        self.origins = set(settings.codec_cors_origins)

    def cors(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin is None or origin not in self.origins:
            return {"Vary": "Origin"}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}

    def check(self, request: Request, path_token: str | None, authorization: str | None) -> AesGcmCodec:
        if self.sealer is None or self.token is None:
            raise HTTPException(404, "the codec server is off: set LEADLOOP_ENCRYPTION_KEYS and LEADLOOP_CODEC_TOKEN")
        given = path_token
        if given is None and authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        if not key_ok(given, [self.token]):
            raise HTTPException(401, "missing or wrong codec token", headers=self.cors(request))
        return self.sealer

    async def convert(self, request: Request, path_token: str | None, authorization: str | None, op: str) -> Response:
        """Decode or encode the body's payloads."""
        sealer = self.check(request, path_token, authorization)
        body = await request.body()
        if len(body) > self.max_body:
            raise HTTPException(413, f"at most {self.max_body} bytes", headers=self.cors(request))
        try:
            given = json.loads(body)
            if not isinstance(given, dict):
                raise ValueError("not a JSON object")
            payloads = ParseDict(given, Payloads())
        except (ValueError, TypeError, AttributeError, ParseError) as exc:  # protobuf's parser trips in several ways
            raise HTTPException(400, f'expected {{"payloads": [...]}}: {exc}', headers=self.cors(request)) from None
        try:
            done = await (sealer.decode if op == "decode" else sealer.encode)(list(payloads.payloads))
        except CodecError as exc:
            raise HTTPException(422, str(exc), headers=self.cors(request)) from None
        answer: dict[str, Any] = MessageToDict(Payloads(payloads=done))
        answer.setdefault("payloads", [])
        return JSONResponse(answer, headers=self.cors(request))

    def preflight(self, request: Request) -> Response:
        """A browser's CORS preflight: allowed for the configured UI origins only."""
        headers = self.cors(request)
        if "Access-Control-Allow-Origin" not in headers:
            return Response(status_code=403, headers=headers)
        headers |= {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "content-type, x-namespace, authorization",
            "Access-Control-Max-Age": "600",
        }
        return Response(status_code=204, headers=headers)
