"""Sending a webhook alert: the Slack-compatible body of ``ratchet.alerts`` posted with httpx.

Temporal's retry policy does the retrying: an answer worth trying again (a 5xx, 408, 429, no answer at all)
raises a retryable ApplicationError, a refusal (another 4xx, a redirect, a malformed URL) a non-retryable
one, since the same body would be refused again. The campaign catches either: an alert never fails it.
Messages name the webhook's host only, never its path, which is the secret.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ratchet.alerts import slack_body, webhook_host
from ratchet.contracts import AlertRequest, AlertResult

# Answers that say "not now" rather than "not this": worth another attempt.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
# A Retry-After longer than this is not waited for (the retry policy's own backoff applies).
MAX_RETRY_AFTER = timedelta(minutes=5)


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    if not value.isdigit():
        return None  # an HTTP date, rare on webhooks: the retry policy's backoff is good enough
    delay = timedelta(seconds=int(value))
    return delay if delay <= MAX_RETRY_AFTER else None


def _answer(response: httpx.Response) -> str:
    """The start of the webhook's answer on one line (Slack says why: invalid_payload, no_service...)."""
    text = " ".join(response.text.split())
    return text[:200] + ("…" if len(text) > 200 else "") if text else "no body"


class AlertActivities:
    """send_alert, served by the perf-optimizer role. ``transport`` swaps httpx's network I/O (tests pass
    none: they post to a real local receiver)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport

    @activity.defn(name="send_alert")
    async def send_alert(self, request: AlertRequest) -> AlertResult:
        """Post one alert to its webhook; raise ApplicationError when it was not delivered (see the module)."""
        where = f"{request.kind} alert to {webhook_host(request.webhook_url)}"
        body = slack_body(request)
        try:
            async with httpx.AsyncClient(
                timeout=request.timeout_s, transport=self.transport, headers={"User-Agent": "ratchet-alerts"}
            ) as client:
                response = await client.post(request.webhook_url, json=body)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ApplicationError(
                f"{where}: not sent, the webhook URL is not usable ({exc})",
                None,
                type="AlertRefused",
                non_retryable=True,
            ) from None
        except httpx.TimeoutException:
            raise ApplicationError(
                f"{where}: no answer within {request.timeout_s:g}s", None, type="AlertNotDelivered"
            ) from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise ApplicationError(f"{where}: not delivered ({reason})", None, type="AlertNotDelivered") from None

        status = response.status_code
        if response.is_success:
            activity.logger.info("%s: delivered (%d)", where, status)
            return AlertResult(delivered=True, status=status, detail=f"{where}: delivered ({status})")
        if status >= 500 or status in RETRYABLE_STATUSES:
            raise ApplicationError(
                f"{where}: the webhook answered {status} ({_answer(response)}); will be retried",
                status,
                type="AlertNotDelivered",
                next_retry_delay=_retry_after(response),
            )
        refusal = f"redirected to another place ({status})" if response.is_redirect else f"refused ({status})"
        raise ApplicationError(
            f"{where}: {refusal}: {_answer(response)}", status, type="AlertRefused", non_retryable=True
        )
