"""Signed approvals: an answer at a gate carries an ed25519 signature by the approver's own key.

What is signed is the answer's meaning, canonically encoded: the campaign, the action (approve, reject,
auto-approve), the phase, the approver, the recommendations chosen, and when it was signed. A signature is
therefore good for one answer to one campaign's gate, by one person, for a short while; the campaign also
refuses one it has already taken (a replay). Public keys are not secrets: they travel in the playbook (and the
workflow's input); private keys stay with their owners (``$RATCHET_HOME/keys/NAME.key`` by default).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ratchet.errors import RatchetError

if TYPE_CHECKING:
    from ratchet.config.playbook import Approvals


class SigningKeyError(RatchetError):
    """A private key that cannot be read or used."""


def signed_message(
    *,
    campaign_id: str,
    action: str,
    phase: str,
    approver: str,
    only: list[str] | None,
    signed_at: datetime,
) -> bytes:
    """The bytes a signature covers: the answer's meaning as canonical JSON."""
    fields = {
        "action": action,
        "approver": approver,
        "campaign": campaign_id,
        "only": sorted(only) if only is not None else None,
        "phase": phase,
        "signed_at": signed_at.isoformat(),
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def public_key_text(key: Ed25519PublicKey) -> str:
    """The form a playbook holds: the raw 32 bytes, base64."""
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def public_key_problem(text: str) -> str | None:
    """Why ``text`` is not a public key as a playbook holds it, or None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return "not base64"
    if len(raw) != 32:
        return f"{len(raw)} bytes, an ed25519 public key has 32"
    return None


def verify(public_key: str, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64) is the holder of ``public_key``'s over ``message``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def create_key(path: Path) -> str:
    """A new private key in ``path`` (PKCS#8 PEM, readable by its owner only); returns its public key text."""
    if path.exists():
        raise SigningKeyError(f"{path} exists: keep it, or remove it first to make a new key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return public_key_text(key.public_key())


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: no such key file (make one with `ratchet keys create NAME`)") from None
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an ed25519 key")
    return key


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def default_key_path(home: Path, name: str) -> Path:
    """Where ``ratchet keys create NAME`` keeps NAME's private key."""
    return home / "keys" / f"{name}.key"


def signing_key_path(home: Path, name: str, given: Path | None) -> Path | None:
    """The key to sign NAME's answers with: the one given, else NAME's default key when it exists."""
    if given is not None:
        return given
    default = default_key_path(home, name)
    return default if default.is_file() else None


def sign_answer(
    key_path: Path, *, campaign_id: str, action: str, phase: str, approver: str, only: list[str] | None
) -> tuple[datetime, str]:
    """Sign one answer now: its time and signature, for the answer's ``signed_at`` and ``signature``."""
    signed_at = datetime.now(UTC).replace(microsecond=0)
    message = signed_message(
        campaign_id=campaign_id, action=action, phase=phase, approver=approver, only=only, signed_at=signed_at
    )
    return signed_at, sign(load_key(key_path), message)


def answer_refusal(
    rules: Approvals,
    taken: set[str],
    now: datetime,
    *,
    campaign_id: str,
    action: str,
    phase: str,
    approver: str,
    only: list[str] | None,
    signed_at: datetime | None,
    signature: str | None,
) -> str | None:
    """Why a signed answer cannot be taken (unsigned, replayed, forged, stale), or None; always None when the
    playbook's approvals are plain. Pure (a workflow passes its own clock as ``now``, and what it has taken)."""
    if rules.mode != "signed":
        return None
    if not signature or signed_at is None:
        return (
            "unsigned: this campaign's playbook requires signed approvals; `ratchet approve`/`reject` sign with the "
            "approver's key (`ratchet keys create NAME`), or pass signed_at and signature in the input"
        )
    if signature in taken:
        return "replayed: this signed answer was already taken"
    key = rules.keys.get(approver)
    if key is None:
        return f"no public key for {approver!r} in the playbook's approvals.keys"
    message = signed_message(
        campaign_id=campaign_id, action=action, phase=phase, approver=approver, only=only, signed_at=signed_at
    )
    if not verify(key, message, signature):
        return (
            f"forged: the signature is not {approver}'s over this answer (campaign {campaign_id}, {action}, "
            f"phase {phase or 'any'}, its recommendations and time)"
        )
    moment = signed_at if signed_at.tzinfo is not None else signed_at.replace(tzinfo=UTC)
    if abs(now - moment) > rules.max_age:
        return f"stale: signed at {moment:%Y-%m-%d %H:%M:%S %Z}, more than {rules.max_age} from now"
    return None
