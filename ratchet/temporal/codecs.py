"""What Ratchet's payloads look like in Temporal: secrets as references, and (with a key) encrypted.

Two codecs, in this order on the way out (and the reverse on the way in), on every client and worker:

- ``SecretReferenceCodec``: a value the target or playbook took from the environment is written as its
  ``${NAME}`` (``ratchet.secrets``); a receiving process puts its own value back.
- ``EncryptionCodec`` (when ``RATCHET_PAYLOAD_KEYS`` or ``RATCHET_PAYLOAD_KEY_FILE`` names keys): each payload
  is AES-256-GCM encrypted under the first key, its id in the metadata, so older keys still decrypt what they
  encrypted (rotation: put the new key first, keep the old ones after it). ``ratchet codec-server`` serves the
  same codecs to the Temporal UI, for those who hold a key.

Failures' messages and stack traces travel as payloads too (encoded common attributes), so an error that quotes
a connection string is masked and encrypted like the rest.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from ratchet import secrets
from ratchet.errors import RatchetError

ENCRYPTED = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_JSON_ENCODINGS = (b"json/plain", b"json/protobuf")


class PayloadKeyError(RatchetError):
    """Payload keys that cannot be read, or a payload whose key is not among them."""


class SecretReferenceCodec(PayloadCodec):
    """Values taken from the environment leave as ``${NAME}`` and come back as this process's value."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._map(payload, secrets.mask_json) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._map(payload, secrets.unmask_json) for payload in payloads]

    @staticmethod
    def _map(payload: Payload, change: object) -> Payload:
        if payload.metadata.get("encoding") not in _JSON_ENCODINGS:
            return payload
        data = change(payload.data)  # type: ignore[operator]
        return payload if data == payload.data else Payload(metadata=dict(payload.metadata), data=data)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM under the first key; any listed key decrypts what it encrypted."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise PayloadKeyError("no payload key given")
        self.keys = keys
        self.current = next(iter(keys))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = AESGCM(self.keys[self.current])
        encoded = []
        for payload in payloads:
            nonce = os.urandom(12)
            sealed = nonce + cipher.encrypt(nonce, payload.SerializeToString(), None)
            encoded.append(Payload(metadata={"encoding": ENCRYPTED, KEY_ID: self.current.encode()}, data=sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCRYPTED:
                decoded.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            key = self.keys.get(key_id)
            if key is None:
                raise PayloadKeyError(
                    f"a payload was encrypted with key {key_id!r}, which is not among RATCHET_PAYLOAD_KEYS "
                    f"({', '.join(self.keys)}): add it (old keys stay listed after the current one)"
                )
            plain = AESGCM(key).decrypt(payload.data[:12], payload.data[12:], None)
            decoded.append(Payload.FromString(plain))
        return decoded


class ChainCodec(PayloadCodec):
    """Codecs applied in order on the way out, in reverse order on the way in."""

    def __init__(self, codecs: Sequence[PayloadCodec]) -> None:
        self.codecs = list(codecs)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        result = list(payloads)
        for codec in self.codecs:
            result = await codec.encode(result)
        return result

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        result = list(payloads)
        for codec in reversed(self.codecs):
            result = await codec.decode(result)
        return result


def parse_keys(text: str, where: str) -> dict[str, bytes]:
    """``id:base64key`` entries separated by commas or lines (the first encrypts); each key 32 bytes."""
    keys: dict[str, bytes] = {}
    for entry in (part.strip() for part in text.replace("\n", ",").split(",")):
        if not entry or entry.startswith("#"):
            continue
        key_id, _, encoded = entry.partition(":")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise PayloadKeyError(f"{where}: key {key_id.strip()!r} is not base64 (id:base64key)") from None
        if len(key) != 32:
            raise PayloadKeyError(f"{where}: key {key_id.strip()!r} has {len(key)} bytes; AES-256 needs 32")
        keys[key_id.strip()] = key
    return keys


def configured_keys() -> dict[str, bytes]:
    """The payload keys this process was given (none: payloads are not encrypted)."""
    text = os.environ.get("RATCHET_PAYLOAD_KEYS", "")
    if text:
        return parse_keys(text, "RATCHET_PAYLOAD_KEYS")
    key_file = os.environ.get("RATCHET_PAYLOAD_KEY_FILE")
    if key_file:
        try:
            return parse_keys(Path(key_file).read_text(), key_file)
        except OSError as exc:
            raise PayloadKeyError(f"RATCHET_PAYLOAD_KEY_FILE: cannot read {key_file}: {exc.strerror}") from None
    return {}


def payload_codec() -> ChainCodec:
    keys = configured_keys()
    return ChainCodec([SecretReferenceCodec(), *([EncryptionCodec(keys)] if keys else [])])


def data_converter() -> DataConverter:
    """Pydantic payloads, secrets as references, encrypted when keys are configured; failures encoded too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=payload_codec(),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def new_key_text(key_id: str) -> str:
    """A fresh key entry for RATCHET_PAYLOAD_KEYS."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"
