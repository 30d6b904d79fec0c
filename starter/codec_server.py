"""The codec server: the Temporal UI (and `temporal --codec-endpoint`) decode encrypted payloads here.

Protocol (Temporal's remote codec): POST {endpoint}/decode or /encode with `{"payloads": [Payload JSON]}`
and the `X-Namespace` header; the answer has the same shape. Authenticated by the codec token, sent as
`Authorization: Bearer <token>`, or, for a UI that sends no header (the dev server's `--ui-codec-endpoint`),
as the endpoint's last path segment: `/codec/<token>/decode`. Browsers may call it only from the configured
UI origins (CORS). Off (404) unless encryption keys and a codec token are configured. A body larger than
LEADLOOP_CODEC_MAX_BODY_BYTES gets 413 (the app's BodyLimit refuses it before it is read)."""

import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payloads

from leadloop.infra.codec import AesGcmCodec, CodecError
from leadloop.infra.settings import Settings
from leadloop.infra.temporal import codec

_PROBLEM = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
_PAYLOAD = {  # Temporal's Payload as JSON: metadata and data, base64
    "type": "object",
    "properties": {
        "metadata": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "data": {"type": "string", "format": "byte"},
    },
}
_PAYLOADS = {"type": "object", "properties": {"payloads": {"type": "array", "items": _PAYLOAD}}}
ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"schema": schema}}}
    for status, text, schema in (
        (200, 'the payloads, {"payloads": [...]}', _PAYLOADS),
        (400, 'not {"payloads": [...]}', _PROBLEM),
        (401, "missing or wrong codec token", _PROBLEM),
        (404, "the codec server is off (no LEADLOOP_ENCRYPTION_KEYS or LEADLOOP_CODEC_TOKEN)", _PROBLEM),
        (413, "the body is larger than LEADLOOP_CODEC_MAX_BODY_BYTES", _PROBLEM),
        (422, "a payload this server cannot open or seal", _PROBLEM),
    )
}
_BODY = {"requestBody": {"content": {"application/json": {"schema": _PAYLOADS}}}}


def codec_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/codec", tags=["ops"])
    max_body = settings.codec_max_body_bytes
    sealer = codec(settings)
    token = settings.codec_token.get_secret_value() if settings.codec_token else None
    origins = set(settings.codec_cors_origins)

    def cors(request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin is None or origin not in origins:
            return {"Vary": "Origin"}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}

    def check(request: Request, path_token: str | None, authorization: str | None) -> AesGcmCodec:
        if sealer is None or token is None:
            raise HTTPException(404, "the codec server is off: set LEADLOOP_ENCRYPTION_KEYS and LEADLOOP_CODEC_TOKEN")
        given = path_token
        if given is None and authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong codec token", headers=cors(request))
        return sealer

    async def convert(request: Request, path_token: str | None, authorization: str | None, op: str) -> Response:
        sealer = check(request, path_token, authorization)
        body = await request.body()
        if len(body) > max_body:
            raise HTTPException(413, f"at most {max_body} bytes", headers=cors(request))
        try:
            given = json.loads(body)
            if not isinstance(given, dict):
                raise ValueError("not a JSON object")
            payloads = ParseDict(given, Payloads())
        except (ValueError, TypeError, AttributeError, ParseError) as exc:  # protobuf's parser trips in several ways
            raise HTTPException(400, f'expected {{"payloads": [...]}}: {exc}', headers=cors(request)) from None
        try:
            done = await (sealer.decode if op == "decode" else sealer.encode)(list(payloads.payloads))
        except CodecError as exc:
            raise HTTPException(422, str(exc), headers=cors(request)) from None
        answer: dict[str, Any] = MessageToDict(Payloads(payloads=done))
        answer.setdefault("payloads", [])
        return JSONResponse(answer, headers=cors(request))

    def preflight(request: Request) -> Response:
        headers = cors(request)
        if "Access-Control-Allow-Origin" not in headers:
            return Response(status_code=403, headers=headers)
        headers |= {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "content-type, x-namespace, authorization",
            "Access-Control-Max-Age": "600",
        }
        return Response(status_code=204, headers=headers)

    auth = Annotated[str | None, Header()]

    @router.post("/decode", summary="decrypt payloads (Bearer token)", responses=ANSWERS, openapi_extra=_BODY)
    async def decode(request: Request, authorization: auth = None) -> Response:
        return await convert(request, None, authorization, "decode")

    @router.post("/encode", summary="encrypt payloads (Bearer token)", responses=ANSWERS, openapi_extra=_BODY)
    async def encode(request: Request, authorization: auth = None) -> Response:
        return await convert(request, None, authorization, "encode")

    @router.post("/{path_token}/decode", include_in_schema=False)
    async def decode_for_ui(path_token: str, request: Request) -> Response:
        return await convert(request, path_token, None, "decode")

    @router.post("/{path_token}/encode", include_in_schema=False)
    async def encode_for_ui(path_token: str, request: Request) -> Response:
        return await convert(request, path_token, None, "encode")

    for path in ("/decode", "/encode", "/{path_token}/decode", "/{path_token}/encode"):
        router.add_api_route(path, preflight, methods=["OPTIONS"], include_in_schema=False)
    return router
