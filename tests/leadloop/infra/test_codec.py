"""AES-GCM payload codec: round trip, key ids and rotation, tampering, settings that cannot work."""

import base64
import os
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from leadloop.infra.codec import KEY_ID, AesGcmCodec, CodecError
from leadloop.infra.temporal import codec, data_converter

K1, K2 = os.urandom(32), os.urandom(16)
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email": "maria@example.gr"}')


async def test_a_payload_round_trips_and_carries_its_key_id_but_no_plaintext() -> None:
    sealer = AesGcmCodec({"k1": K1}, "k1")
    (sealed,) = await sealer.encode([PLAIN])
    assert sealed.metadata[KEY_ID] == b"k1" and sealed.metadata["encoding"] == b"binary/encrypted"
    assert b"maria" not in sealed.SerializeToString() and b"json/plain" not in sealed.SerializeToString()
    (other,) = await sealer.encode([PLAIN])
    assert other.data != sealed.data  # a fresh nonce each time
    assert await sealer.decode([sealed]) == [PLAIN]


async def test_rotation_opens_old_payloads_and_seals_new_ones_with_the_current_key() -> None:
    (old,) = await AesGcmCodec({"k1": K1}, "k1").encode([PLAIN])
    rotated = AesGcmCodec({"k1": K1, "k2": K2}, "k2")
    (new,) = await rotated.encode([PLAIN])
    assert new.metadata[KEY_ID] == b"k2"
    assert await rotated.decode([old, new]) == [PLAIN, PLAIN]
    with pytest.raises(CodecError, match="key 'k1', which is not configured"):
        await AesGcmCodec({"k2": K2}, "k2").decode([old])


async def test_tampering_and_a_forged_key_id_are_refused_and_plain_payloads_pass() -> None:
    sealer = AesGcmCodec({"k1": K1, "k2": K2}, "k1")
    (sealed,) = await sealer.encode([PLAIN])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(CodecError, match="does not open"):
        await sealer.decode([flipped])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID] = b"k2"  # the key id is bound into the ciphertext
    with pytest.raises(CodecError, match="does not open"):
        await sealer.decode([relabelled])
    assert await sealer.decode([PLAIN]) == [PLAIN]  # written before encryption was turned on


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"encryption_keys": {"k1": "not base64!"}}, "is not base64"),
        ({"encryption_keys": {"k1": b64(b"short")}}, "is 5 bytes"),
        ({"encryption_keys": {"bad id": b64(K1)}}, "key id 'bad id'"),
        ({"encryption_keys": {"k1": b64(K1), "k2": b64(K2)}}, "name the current one"),
        ({"encryption_keys": {"k1": b64(K1)}, "encryption_key_id": "k9"}, "'k9' is not among"),
    ],
)
def test_settings_that_cannot_encrypt_are_refused(make_settings: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(**values)


def test_the_client_factory_encrypts_only_when_keys_are_configured(make_settings: Any) -> None:
    assert codec(make_settings()) is None and data_converter(make_settings()).payload_codec is None
    one = make_settings(encryption_keys={"2026-11": b64(K1)})
    assert one.encryption_key_id == "2026-11"
    sealer = data_converter(one).payload_codec
    assert isinstance(sealer, AesGcmCodec) and sealer.key_id == "2026-11"


def test_the_dev_servers_ui_is_pointed_at_the_codec_server_only_when_payloads_are_encrypted(make_settings: Any) -> None:
    from starter.devserver import dev_server_args, ui_codec_endpoint

    assert ui_codec_endpoint(make_settings()) is None
    assert ui_codec_endpoint(make_settings(encryption_keys={"k1": b64(K1)})) is None  # no token: no codec server
    on = make_settings(encryption_keys={"k1": b64(K1)}, codec_token="tok", public_url="http://127.0.0.1:8000")
    endpoint = ui_codec_endpoint(on)
    assert endpoint == "http://127.0.0.1:8000/codec/tok"
    args = dev_server_args(None, codec_endpoint=endpoint)
    assert args[args.index("--ui-codec-endpoint") + 1] == endpoint
    assert "--ui-codec-endpoint" not in dev_server_args(None)
