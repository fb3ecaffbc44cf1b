"""An injected slowdown: named routes answer a set share slower than they would (for benchmarks and tests of
Ratchet's verdicts, which must catch a 20% regression of one endpoint and nothing in an unchanged shop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class InjectedSlowdownMiddleware:
    """Holds back a response's start by ``share`` x the time the handler took, for the routes in ``shares()``
    (route path template, e.g. ``/products/{product_id}`` -> 0.2). Proportional, so the endpoint's whole
    distribution shifts by that share, as a real regression of its code would."""

    def __init__(
        self, app: ASGIApp, shares: Callable[[], dict[str, float]], traces: Callable[[], list[str]] = list
    ) -> None:
        self.app = app
        self.shares = shares
        self.traces = traces

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.shares() or not self._in_scope(scope):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_late(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The router has matched by now and left the route in the (shared) scope.
                route = getattr(scope.get("route"), "path", None)
                share = self.shares().get(route or "", 0.0)
                if share > 0:
                    await asyncio.sleep((time.perf_counter() - started) * share)
            await send(message)

        await self.app(scope, receive, send_late)

    def _in_scope(self, scope: Scope) -> bool:
        """Whether the slowdown holds for this request: always, or when its trace id has a chosen prefix (a test
        slows one load run's requests, whatever the clock says)."""
        prefixes = self.traces()
        if not prefixes:
            return True
        header = dict(scope.get("headers") or []).get(b"traceparent", b"").decode("latin-1")
        parts = header.split("-")
        return len(parts) > 1 and parts[1].startswith(tuple(prefixes))
