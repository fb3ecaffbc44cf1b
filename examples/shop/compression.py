"""gzip for responses, switched on and off at run time by a flag (checked per request)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Level 6 (zlib's own default) rather than Starlette's 9: nearly the same size at a fraction of the CPU.
COMPRESS_LEVEL = 6
MINIMUM_SIZE = 1024


class SwitchableGZipMiddleware:
    """Starlette's GZipMiddleware while ``enabled()`` is true, a pass-through otherwise.

    Responses that already carry a Content-Encoding (e.g. pre-compressed assets) are left as they are.
    """

    def __init__(self, app: ASGIApp, enabled: Callable[[], bool]) -> None:
        self.app = app
        self.enabled = enabled
        self.gzip = GZipMiddleware(app, minimum_size=MINIMUM_SIZE, compresslevel=COMPRESS_LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route the request through gzip or straight to the app, as the flag says now."""
        if scope["type"] == "http" and self.enabled():
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
