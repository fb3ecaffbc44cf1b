"""Webhook alerts: the playbook's ``alerts`` section, the Slack-compatible body, and the send_alert activity
posting to a real HTTP receiver on 127.0.0.1 (its answer chosen by the path: /hook/500 answers 500)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.alerts import AlertActivities
from ratchet.alerts import MAX_FIELDS, alert_request, slack_body, webhook_host
from ratchet.config.loading import load_playbook
from ratchet.config.playbook import AlertKind, Alerts, Playbook
from ratchet.contracts import AlertRequest
from ratchet.errors import ConfigError
from tests.webhook_receiver import Receiver


def request_to(url: str, **changes: Any) -> AlertRequest:
    values: dict[str, Any] = {
        "campaign_id": "shop-2024-05-01",
        "kind": AlertKind.REGRESSION,
        "title": "Regression on orders-by-email",
        "text": "p95 rose from 42 ms to 180 ms (x4.3) in validation.\nThe change is rolled back.",
        "fields": {"target": "demo-shop", "phase": "validation", "p95": "42 ms -> 180 ms"},
        "webhook_url": url,
        "timeout_s": 5.0,
    }
    return AlertRequest(**(values | changes))


async def send(request: AlertRequest) -> Any:
    return await ActivityEnvironment().run(AlertActivities().send_alert, request)


# ---------------------------------------------------------------- the body


def test_body_has_slack_text_and_blocks() -> None:
    body = slack_body(request_to("https://hooks.example.com/x", mention="<!here>"))
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("<!here> Regression on orders-by-email (regression, campaign shop-2024-05-01)")
    assert "p95 rose from 42 ms to 180 ms" in body["text"]

    header, section, facts, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Regression on orders-by-email", "emoji": True},
    }
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith("<!here> p95 rose from 42 ms to 180 ms (x4.3) in validation.\nThe change")
    assert facts["type"] == "section"
    assert [f["text"] for f in facts["fields"]] == [
        "*target*\ndemo-shop",
        "*phase*\nvalidation",
        "*p95*\n42 ms -&gt; 180 ms",
    ]
    assert all(f["type"] == "mrkdwn" for f in facts["fields"])
    assert context["type"] == "context"
    assert "campaign `shop-2024-05-01`" in context["elements"][0]["text"]
    json.dumps(body)  # plain JSON all the way down


def test_body_escapes_data_keeps_the_mention_and_fits_slack_limits() -> None:
    many = {f"endpoint {i}": f"/orders?a={i}&b=<{i}>" for i in range(14)}
    body = slack_body(request_to("https://h/x", title="T " * 200, text="a < b & c", fields=many, mention="<@U0123ABC>"))
    header, section, facts, _ = body["blocks"]
    assert len(header["text"]["text"]) == 150
    assert header["text"]["text"].endswith("…")
    assert section["text"]["text"] == "<@U0123ABC> a &lt; b &amp; c"
    assert len(facts["fields"]) == MAX_FIELDS
    assert facts["fields"][0]["text"] == "*endpoint 0*\n/orders?a=0&amp;b=&lt;0&gt;"
    assert facts["fields"][-1]["text"] == "*more*\n5 facts left out"


def test_body_without_text_or_fields_has_header_and_context_only() -> None:
    body = slack_body(request_to("https://h/x", kind=AlertKind.GATE_WAITING, title="", text="", fields={}))
    assert [b["type"] for b in body["blocks"]] == ["header", "context"]
    assert body["blocks"][0]["text"]["text"] == "waiting for approval"
    assert body["text"] == "waiting for approval (waiting for approval, campaign shop-2024-05-01)"


def test_webhook_host_leaves_the_secret_path_and_credentials_out() -> None:
    assert webhook_host("https://user:pw@hooks.slack.com:443/services/T/B/XYZ") == "https://hooks.slack.com:443"
    assert webhook_host("http://[::1/services/T/B/XYZ") == "the webhook"


# ---------------------------------------------------------------- the activity


async def test_send_alert_posts_the_body(receiver: Receiver) -> None:
    request = request_to(receiver.url(200))
    result = await send(request)
    assert result.delivered
    assert result.status == 200
    assert "regression alert to http://127.0.0.1:" in result.detail
    assert "secret-token" not in result.detail
    [got] = receiver.received
    assert got.path == "/services/T000/B000/secret-token/200"
    assert got.headers["Content-Type"] == "application/json"
    assert got.body == slack_body(request)


async def test_server_error_is_retryable(receiver: Receiver) -> None:
    with pytest.raises(ApplicationError) as caught:
        await send(request_to(receiver.url(500)))
    error = caught.value
    assert not error.non_retryable
    assert error.type == "AlertNotDelivered"
    assert error.details == (500,)
    assert "answered 500 (server_error)" in error.message
    assert "secret-token" not in error.message
    assert len(receiver.received) == 1


async def test_rate_limit_is_retried_after_the_asked_delay(receiver: Receiver) -> None:
    with pytest.raises(ApplicationError) as caught:
        await send(request_to(receiver.url(429)))
    assert not caught.value.non_retryable
    assert caught.value.next_retry_delay == timedelta(seconds=7)


@pytest.mark.parametrize(("status", "says"), [(400, "refused (400): invalid_payload"), (404, "no_service")])
async def test_refusal_is_not_retryable(receiver: Receiver, status: int, says: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        await send(request_to(receiver.url(status)))
    error = caught.value
    assert error.non_retryable
    assert error.type == "AlertRefused"
    assert error.details == (status,)
    assert says in error.message
    assert "secret-token" not in error.message


async def test_redirect_is_not_followed_and_not_retryable(receiver: Receiver) -> None:
    with pytest.raises(ApplicationError) as caught:
        await send(request_to(receiver.url(302)))
    assert caught.value.non_retryable
    assert "redirected" in caught.value.message
    assert len(receiver.received) == 1


async def test_unusable_url_is_not_retryable() -> None:
    with pytest.raises(ApplicationError) as caught:
        await send(request_to("ftp://hooks.example.com/services/T/B/secret-token"))
    assert caught.value.non_retryable
    assert caught.value.type == "AlertRefused"
    assert "secret-token" not in caught.value.message


async def test_no_listener_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    with pytest.raises(ApplicationError) as caught:
        await send(request_to(f"http://127.0.0.1:{port}/hook"))
    assert not caught.value.non_retryable
    assert caught.value.type == "AlertNotDelivered"
    assert "not delivered" in caught.value.message


async def test_no_answer_within_the_timeout_is_retryable() -> None:
    # A socket that listens but never accepts: the kernel completes the handshake, nobody ever answers.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        with pytest.raises(ApplicationError) as caught:
            await send(request_to(f"http://127.0.0.1:{port}/hook", timeout_s=0.2))
    assert not caught.value.non_retryable
    assert "no answer within 0.2s" in caught.value.message


# ---------------------------------------------------------------- the playbook's alerts section


def write_playbook(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text("name: x\napprovers: [a]\nalerts:\n" + alerts)
    return path


def test_alerts_section_loads_with_on_as_a_key(tmp_path: Path) -> None:
    # `on` is a boolean in YAML 1.1; the loader reads keys as written.
    path = write_playbook(
        tmp_path,
        "  webhook_url: https://hooks.slack.com/services/T/B/X\n  on: [regression, gate-waiting]\n"
        "  timeout: 3s\n  mention: <!here>\n",
    )
    alerts = load_playbook(path).alerts
    assert alerts.on == [AlertKind.REGRESSION, AlertKind.GATE_WAITING]
    assert alerts.timeout == timedelta(seconds=3)
    assert alerts.wants(AlertKind.GATE_WAITING)
    assert not alerts.wants(AlertKind.GUARD_BREACHED)


def test_by_default_no_webhook_and_every_kind() -> None:
    playbook = Playbook(name="x", approvers=["a"])
    assert playbook.alerts.webhook_url is None
    assert playbook.alerts.on == list(AlertKind)
    assert not any(playbook.alerts.wants(kind) for kind in AlertKind)
    hooked = Alerts(webhook_url="http://127.0.0.1:9/hook")
    assert all(hooked.wants(kind) for kind in AlertKind)
    assert not Alerts(webhook_url="http://127.0.0.1:9/hook", on=[]).wants(AlertKind.REGRESSION)


def test_alert_request_follows_the_playbook() -> None:
    alerts = Alerts(
        webhook_url="https://hooks.example.com/x", on=[AlertKind.GUARD_BREACHED], timeout="2s", mention="<!here>"
    )
    assert alert_request(alerts, campaign_id="c", kind=AlertKind.REGRESSION, title="t") is None
    request = alert_request(
        alerts, campaign_id="c", kind=AlertKind.GUARD_BREACHED, title="Guard breached", fields={"p95": "300 ms"}
    )
    assert request is not None
    assert (request.webhook_url, request.timeout_s, request.mention) == ("https://hooks.example.com/x", 2.0, "<!here>")
    assert request.fields == {"p95": "300 ms"}
    assert alert_request(Alerts(), campaign_id="c", kind=AlertKind.GATE_WAITING, title="t") is None


@pytest.mark.parametrize(
    ("alerts", "fragments"),
    [
        (
            "  webhook_url: ftp://hooks.example.com/x\n",
            ["x.yaml:4", "alerts.webhook_url", "http:// or https://", "'ftp'"],
        ),
        ("  webhook_url: hooks.slack.com/services/T/B/X\n", ["x.yaml:4", "alerts.webhook_url", "no scheme"]),
        ("  webhook_url: 'https://'\n", ["alerts.webhook_url", "host name"]),
        ("  on: [regression, fire]\n", ["x.yaml:4", "alerts.on.1", "'guard-breached'"]),
        ("  timeout: 0s\n", ["x.yaml:4", "alerts.timeout", "more than 0s"]),
        ("  webhook: https://h/x\n", ["x.yaml:4", "alerts.webhook", "unknown field", "webhook_url"]),
    ],
)
def test_bad_alerts_section_names_the_field(tmp_path: Path, alerts: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_playbook(write_playbook(tmp_path, alerts))
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    assert "services/T/B" not in message  # the webhook's secret path is never echoed
