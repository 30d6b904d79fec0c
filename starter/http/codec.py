"""The codec server's routes under /codec: decode and encode payloads for the Temporal UI and CLI."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from starter.codec_server import CodecServer
from starter.http.answers import PROBLEM, Answers
from starter.http.deps import AppState

_PAYLOAD = {  # Temporal's Payload as JSON: metadata and data, base64
    "type": "object",
    "properties": {
        "metadata": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "data": {"type": "string", "format": "byte"},
    },
}
_PAYLOADS = {"type": "object", "properties": {"payloads": {"type": "array", "items": _PAYLOAD}}}
ANSWERS: Answers = {
    status: {"description": text, "content": {"application/json": {"schema": schema}}}
    for status, text, schema in (
        (200, 'the payloads, {"payloads": [...]}', _PAYLOADS),
        (400, 'not {"payloads": [...]}', PROBLEM),
        (401, "missing or wrong codec token", PROBLEM),
        (404, "the codec server is off (no LEADLOOP_ENCRYPTION_KEYS or LEADLOOP_CODEC_TOKEN)", PROBLEM),
        (413, "the body is larger than LEADLOOP_CODEC_MAX_BODY_BYTES", PROBLEM),
        (422, "a payload this server cannot open or seal", PROBLEM),
    )
}
_BODY = {"requestBody": {"content": {"application/json": {"schema": _PAYLOADS}}}}


def _codec(state: AppState) -> CodecServer:
    return state.codec


Codec = Annotated[CodecServer, Depends(_codec)]
Authorization = Annotated[str | None, Header()]

router = APIRouter(prefix="/codec", tags=["ops"])


@router.post("/decode", summary="decrypt payloads (Bearer token)", responses=ANSWERS, openapi_extra=_BODY)
async def decode(request: Request, codec: Codec, authorization: Authorization = None) -> Response:
    return await codec.convert(request, None, authorization, "decode")


@router.post("/encode", summary="encrypt payloads (Bearer token)", responses=ANSWERS, openapi_extra=_BODY)
async def encode(request: Request, codec: Codec, authorization: Authorization = None) -> Response:
    return await codec.convert(request, None, authorization, "encode")


@router.post("/{path_token}/decode", include_in_schema=False)
async def decode_for_ui(path_token: str, request: Request, codec: Codec) -> Response:
    return await codec.convert(request, path_token, None, "decode")


@router.post("/{path_token}/encode", include_in_schema=False)
async def encode_for_ui(path_token: str, request: Request, codec: Codec) -> Response:
    return await codec.convert(request, path_token, None, "encode")


async def preflight(request: Request, codec: Codec) -> Response:
    return codec.preflight(request)


for _path in ("/decode", "/encode", "/{path_token}/decode", "/{path_token}/encode"):
    router.add_api_route(_path, preflight, methods=["OPTIONS"], include_in_schema=False)
