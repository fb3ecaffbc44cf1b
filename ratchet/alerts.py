"""Webhook alerts: which to send and the Slack-compatible JSON body of each. Pure: the posting is in
``activities/alerts.py``.

The body is Slack's incoming-webhook message: ``text`` (the notification, and the whole message for
receivers that do not read blocks, such as Mattermost) and ``blocks`` (a header, the text, the facts as
fields, a context line naming the campaign).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ratchet.config.playbook import AlertKind, Alerts
from ratchet.contracts import AlertRequest

# Slack refuses a message whose blocks pass these limits (400 invalid_blocks), so they are cut to fit.
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10

KIND_LABELS: dict[AlertKind, str] = {
    AlertKind.REGRESSION: "regression",
    AlertKind.GUARD_BREACHED: "deployment guard breached",
    AlertKind.VALIDATION_FAILED: "validation failed",
    AlertKind.GATE_WAITING: "waiting for approval",
    AlertKind.ESCALATION: "escalated: architecture-level problem",
    AlertKind.DEGRADATION: "lasting degradation",
    AlertKind.WEEKLY_REPORT: "weekly report",
}
assert set(KIND_LABELS) == set(AlertKind), "every kind of alert needs its label"


def alert_request(
    alerts: Alerts,
    *,
    campaign_id: str,
    kind: AlertKind,
    title: str,
    text: str = "",
    fields: dict[str, str] | None = None,
) -> AlertRequest | None:
    """The request for an alert of this kind, or None when the playbook does not want it (no webhook, or
    ``on`` leaves the kind out)."""
    if not alerts.wants(kind):
        return None
    assert alerts.webhook_url is not None
    return AlertRequest(
        campaign_id=campaign_id,
        kind=kind,
        title=title,
        text=text,
        fields=dict(fields or {}),
        mention=alerts.mention,
        webhook_url=alerts.webhook_url,
        timeout_s=alerts.timeout.total_seconds(),
    )


def escape(text: str) -> str:
    """Slack's escaping of the three characters its mrkdwn gives a meaning to (links, mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_mention(mention: str, text: str) -> str:
    return f"{mention} {text}" if mention and text else mention or text


def slack_body(request: AlertRequest) -> dict[str, Any]:
    """The JSON body to post: ``text`` as the fallback, ``blocks`` as the message Slack shows."""
    title = " ".join(request.title.split()) or KIND_LABELS[request.kind]
    text = escape(request.text.strip())
    facts = [(escape(name), escape(value)) for name, value in request.fields.items()]
    if len(facts) > MAX_FIELDS:
        left_out = len(facts) - (MAX_FIELDS - 1)
        facts = [*facts[: MAX_FIELDS - 1], ("more", f"{left_out} facts left out")]

    fallback_lines = [f"{title} ({KIND_LABELS[request.kind]}, campaign {escape(request.campaign_id)})"]
    if text:
        fallback_lines.append(text)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, HEADER_LIMIT), "emoji": True}}
    ]
    section = _with_mention(request.mention, text)
    if section:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(section, SECTION_LIMIT)}})
    if facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": _cut(f"*{name}*\n{value}", FIELD_LIMIT)} for name, value in facts
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _cut(
                        f"Ratchet · {KIND_LABELS[request.kind]} · campaign `{escape(request.campaign_id)}`",
                        SECTION_LIMIT,
                    ),
                }
            ],
        }
    )
    fallback = _cut(_with_mention(request.mention, "\n".join(fallback_lines)), SECTION_LIMIT)
    return {"text": fallback, "blocks": blocks}


def webhook_host(url: str) -> str:
    """The part of a webhook URL that may be shown: scheme, host and port (the path is the secret)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the webhook"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
