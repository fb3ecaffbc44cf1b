"""Payloads as Temporal keeps them: values taken from the environment as ${NAME}, and encrypted with a key."""

from __future__ import annotations

import base64
import json

import pytest
from temporalio.api.common.v1 import Payload

from ratchet import secrets
from ratchet.temporal.codecs import (
    ENCRYPTED,
    EncryptionCodec,
    PayloadKeyError,
    SecretReferenceCodec,
    configured_keys,
    parse_keys,
)


def json_payload(document: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(document).encode())


async def test_a_value_from_the_environment_travels_as_its_reference_and_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = 'pa55"w\\ord-17'  # quotes and backslashes: JSON escapes them
    monkeypatch.setenv("RATCHET_TEST_DB_PASSWORD", password)
    monkeypatch.setenv("RATCHET_TEST_SHORT", "abc")
    secrets.remember({"RATCHET_TEST_DB_PASSWORD", "RATCHET_TEST_SHORT"})
    document = {"url": f"postgresql://shop:{password}@db/shop", "note": "abc stays", "n": 7}
    codec = SecretReferenceCodec()

    [sent] = await codec.encode([json_payload(document)])
    assert password.encode() not in sent.data and json.dumps(password)[1:-1].encode() not in sent.data
    assert b"${RATCHET_TEST_DB_PASSWORD}" in sent.data
    assert b"abc stays" in sent.data  # too short to mask without garbling other text
    [received] = await codec.decode([sent])
    assert json.loads(received.data) == document
    assert secrets.mask_text(f"could not connect to {document['url']}") == (
        "could not connect to postgresql://shop:${RATCHET_TEST_DB_PASSWORD}@db/shop"
    )


async def test_a_reference_is_resolved_from_the_receivers_own_environment_or_secrets_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("RATCHET_TEST_FROM_FILE=token-from-the-file\n")
    monkeypatch.setenv("RATCHET_SECRETS_FILE", str(secrets_file))
    sent = json_payload({"hook": "http://hooks/${RATCHET_TEST_FROM_FILE}", "other": "${RATCHET_TEST_UNSET}"})
    [received] = await SecretReferenceCodec().decode([sent])
    assert json.loads(received.data) == {"hook": "http://hooks/token-from-the-file", "other": "${RATCHET_TEST_UNSET}"}
    # Learnt from the payload: what this process sends on is masked again.
    [again] = await SecretReferenceCodec().encode([received])
    assert b"token-from-the-file" not in again.data


async def test_encrypted_payloads_hold_no_plaintext_and_old_keys_still_decrypt() -> None:
    old = {"k1": bytes(range(32))}
    payload = json_payload({"secret": "plain words"})
    [sealed] = await EncryptionCodec(old).encode([payload])
    assert sealed.metadata["encoding"] == ENCRYPTED and sealed.metadata["encryption-key-id"] == b"k1"
    assert b"plain words" not in sealed.data
    rotated = EncryptionCodec({"k2": bytes(32), **old})  # the new key first, the old one kept after it
    assert (await rotated.decode([sealed])) == [payload]
    [new] = await rotated.encode([payload])
    assert new.metadata["encryption-key-id"] == b"k2"
    with pytest.raises(PayloadKeyError, match="'k2', which is not among"):
        await EncryptionCodec(old).decode([new])


def test_payload_keys_are_read_with_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(bytes(32)).decode()
    assert list(parse_keys(f"new:{key}, old:{key}", "X")) == ["new", "old"]
    with pytest.raises(PayloadKeyError, match="has 3 bytes; AES-256 needs 32"):
        parse_keys("k:AAAA", "RATCHET_PAYLOAD_KEYS")
    with pytest.raises(PayloadKeyError, match="not base64"):
        parse_keys("k:not base64!", "RATCHET_PAYLOAD_KEYS")
    monkeypatch.delenv("RATCHET_PAYLOAD_KEYS", raising=False)
    monkeypatch.delenv("RATCHET_PAYLOAD_KEY_FILE", raising=False)
    assert configured_keys() == {}


def test_logs_show_a_remembered_value_as_its_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    monkeypatch.setenv("RATCHET_TEST_LOGGED_TOKEN", "log-secret-42")
    secrets.remember({"RATCHET_TEST_LOGGED_TOKEN"})
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "cannot reach %s", ("db://u:log-secret-42@h",), None)
    try:
        raise RuntimeError("refused by db://u:log-secret-42@h")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert secrets.MaskingFilter().filter(record)
    assert record.getMessage() == "cannot reach db://u:${RATCHET_TEST_LOGGED_TOKEN}@h"
    assert "log-secret-42" not in (record.exc_text or "") and "${RATCHET_TEST_LOGGED_TOKEN}" in (record.exc_text or "")


async def test_the_codec_server_decrypts_for_the_ui_and_answers_its_origin_only() -> None:
    import httpx
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    from ratchet.temporal.codec_server import encryption_app

    keys = {"k1": bytes(range(32))}
    payload = json_payload({"phase": "planning", "hook": "${RATCHET_TEST_HOOK}"})
    [sealed] = await EncryptionCodec(keys).encode([payload])
    body = json_format.MessageToJson(Payloads(payloads=[sealed]))
    app = encryption_app(keys, "http://127.0.0.1:8233")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec") as client:
        answer = await client.post("/decode", content=body, headers={"Origin": "http://127.0.0.1:8233"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
        [shown] = json_format.Parse(answer.text, Payloads()).payloads
        # Decrypted, and a reference stays a reference: the UI never shows a secret's value.
        assert json.loads(shown.data) == {"phase": "planning", "hook": "${RATCHET_TEST_HOOK}"}
        elsewhere = await client.options(
            "/decode", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in elsewhere.headers
        assert (await client.post("/decode", content=b"{not json")).status_code == 400


def test_only_secrets_are_kept_out_a_base_url_is_expanded_as_written(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("SHOP_ADMIN_PASS_PHRASE_X=zzzzzzzz\nPLAIN_LOOKING=filed-so-secret\n")
    monkeypatch.setenv("RATCHET_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("RATCHET_SECRET_NAMES", "^MY_ODD_")
    assert (
        secrets.is_secret("SHOP_DATABASE_URL") and secrets.is_secret("ALERT_WEBHOOK") and secrets.is_secret("API_KEY")
    )
    assert secrets.is_secret("PLAIN_LOOKING") and secrets.is_secret("MY_ODD_ONE")
    assert not secrets.is_secret("SHOP_URL") and not secrets.is_secret("PIPELINE_TASK_QUEUE")


def test_a_worker_without_the_secret_still_reads_the_payload_that_references_it() -> None:
    """A workflow worker needs no secret: a reference it cannot resolve stays, and the models take it."""
    from ratchet.config.playbook import Alerts
    from ratchet.config.target import Database

    assert Database(url="${RATCHET_TEST_ABSENT_DATABASE_URL}").url == "${RATCHET_TEST_ABSENT_DATABASE_URL}"
    hook = "https://hooks.example/${RATCHET_TEST_ABSENT_WEBHOOK}"
    assert Alerts(webhook_url=hook).webhook_url == hook
    with pytest.raises(ValueError, match="must start with sqlite"):
        Database(url="mysql://nope")


async def test_a_credential_is_kept_out_whatever_its_variable_is_called(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A database URL, a webhook, a header: their values are secrets under any name; a URL with a password is
    one anywhere; the host and port a URL starts with are not (workers elsewhere need them as written)."""
    from ratchet.config.loading import read_yaml

    values = {
        "RATCHET_T_PG": "postgresql://u:longpassword99@db.internal/shop",
        "RATCHET_T_HOOK": "https://hooks.example/T0/B0/secrettokenxyz",
        "RATCHET_T_BEARER": "Bearer abcdefgh123",
        "RATCHET_T_MIRROR": "postgresql://ro:readonly-pass@mirror/shop",
        "RATCHET_T_HOST": "http://127.0.0.1:8800",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "target.yaml"
    path.write_text(
        "database: {url: '${RATCHET_T_PG}'}\n"
        "alerts: {webhook_url: '${RATCHET_T_HOOK}'}\n"
        "levers: [{apply: [{url: '${RATCHET_T_HOST}/flags', headers: {Authorization: '${RATCHET_T_BEARER}'}}]}]\n"
        "note: '${RATCHET_T_MIRROR}'\n"
        "other: {webhook_url: '${RATCHET_T_HOST}/hooks/a'}\n"
    )
    read_yaml(path)
    sent = await SecretReferenceCodec().encode([json_payload(values)])
    text = sent[0].data.decode()
    for name in ("RATCHET_T_PG", "RATCHET_T_HOOK", "RATCHET_T_BEARER", "RATCHET_T_MIRROR"):
        assert values[name] not in text and f"${{{name}}}" in text, text
    assert values["RATCHET_T_HOST"] in text  # an address, expanded as written


def test_a_secret_too_short_to_mask_is_said_when_the_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "book.yaml"
    path.write_text("name: x\napprovers: [a]\nalerts: {webhook_url: 'http://127.0.0.1:9/${RATCHET_T_SHORT_TOKEN}'}\n")
    env = {"RATCHET_T_SHORT_TOKEN": "abc12", "PATH": "/usr/bin:/bin"}
    said = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "playbook", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert said.returncode == 0, said.stderr
    assert "RATCHET_T_SHORT_TOKEN's value is under 6 characters" in " ".join(said.stderr.split()), said.stderr
    keyed = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "playbook", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env | {"RATCHET_PAYLOAD_KEYS": f"k1:{base64.b64encode(bytes(range(32))).decode()}"},
    )
    assert keyed.returncode == 0 and "under 6 characters" not in keyed.stderr, keyed.stderr  # encrypted anyway


def test_server_start_with_a_payload_key_points_the_ui_at_the_codec_server(tmp_path) -> None:
    """The Temporal UI's own settings name `ratchet codec-server`'s address: its holders read payloads there."""
    import os
    import subprocess
    import sys

    import httpx

    from tests.conftest import free_port

    ui_port, codec_port = free_port(), free_port()
    env = os.environ | {
        "RATCHET_HOME": str(tmp_path),
        "RATCHET_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "RATCHET_TEMPORAL_UI_PORT": str(ui_port),
        "RATCHET_CODEC_PORT": str(codec_port),
        "RATCHET_PAYLOAD_KEYS": f"k1:{base64.b64encode(bytes(range(32))).decode()}",
    }

    def ratchet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ratchet.cli", *args], capture_output=True, text=True, env=env, timeout=120
        )

    started = ratchet("server", "start")
    try:
        assert started.returncode == 0, started.stderr
        assert f"the UI decodes them at http://127.0.0.1:{codec_port}" in started.stdout, started.stdout
        settings = httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=30).json()
        assert settings["Codec"]["Endpoint"] == f"http://127.0.0.1:{codec_port}", settings
    finally:
        stopped = ratchet("server", "stop")
    assert stopped.returncode == 0, stopped.stderr
