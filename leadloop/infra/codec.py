"""AES-GCM payload encryption: lead data (profiles, event URLs, notes, summaries) never reaches Temporal in
plaintext. Search attributes stay readable (they carry no PII); workflow ids are `lead-<id>`.

Each payload is sealed whole (its metadata and data) with a fresh 96-bit nonce; the key id travels in the
clear in the payload's metadata and is bound into the ciphertext as associated data, so a key can be
rotated: new payloads use the current key, histories written under older keys still open as long as those
keys are configured. A payload that is not encrypted (written before encryption was turned on) passes
through decode unchanged."""

import base64
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class CodecError(Exception):
    """A payload cannot be opened: its key is not configured, or it was tampered with."""


class AesGcmCodec(PayloadCodec):
    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"the current key {current!r} is not among the keys")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current

    @classmethod
    def from_base64(cls, keys: Mapping[str, str], current: str) -> "AesGcmCodec":
        return cls({key_id: base64.b64decode(key) for key_id, key in keys.items()}, current)

    @property
    def key_id(self) -> str:
        return self._current

    def seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._current.encode()
        sealed = self._ciphers[self._current].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(f"payload sealed with key {key_id!r}, which is not configured")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise CodecError(f"payload sealed with key {key_id!r} does not open: altered, or a different key") from None
        opened = Payload()
        opened.ParseFromString(plain)
        return opened

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]
