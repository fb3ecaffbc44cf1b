"""The shop's side of its downstream services: the process that runs them, their URLs, the HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import httpx

from examples.shop.downstream import READY_LINE, SERVICES

_START_TIMEOUT_S = 60
# Generous: under a load test the tax pool may queue many requests, and a queued request is not an error.
_TIMEOUT = httpx.Timeout(10.0, pool=60.0)


class Outbound:
    """Starts the downstream services with the shop, and holds the clients that call them.

    ``urls`` names each service's base URL; ``client`` is the shared client (httpx's default pool) for
    inventory, pricing and shipping; ``tax_client(n)`` is a client whose pool holds ``n`` connections.
    """

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._client: httpx.AsyncClient | None = None
        self._tax_clients: dict[int, httpx.AsyncClient] = {}

    async def start(self) -> None:
        """Run ``python -m examples.shop.downstream`` and wait for the line that gives its URLs."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "examples.shop.downstream",
            stdin=asyncio.subprocess.PIPE,  # held open for the services' whole life: its end is their end
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = (await asyncio.wait_for(self._process.stdout.readline(), _START_TIMEOUT_S)).decode()
        if not line.startswith(READY_LINE):
            await self.stop()
            raise RuntimeError(f"the downstream services did not start: {line!r}")
        self.urls = dict(pair.split("=", 1) for pair in line.removeprefix(READY_LINE).split())
        missing = set(SERVICES) - set(self.urls)
        if missing:
            await self.stop()
            raise RuntimeError(f"the downstream services did not announce {sorted(missing)}: {line!r}")
        self._client = httpx.AsyncClient(timeout=_TIMEOUT)

    @property
    def client(self) -> httpx.AsyncClient:
        """The client for inventory, pricing and shipping."""
        if self._client is None:
            raise RuntimeError("the downstream services are not started")
        return self._client

    def tax_client(self, connections: int) -> httpx.AsyncClient:
        """A client to the tax service whose pool holds at most ``connections`` connections."""
        client = self._tax_clients.get(connections)
        if client is None:
            limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
            client = self._tax_clients[connections] = httpx.AsyncClient(
                base_url=self.urls["tax"], limits=limits, timeout=_TIMEOUT
            )
        return client

    async def stop(self) -> None:
        """Close the clients and stop the services (they also stop by themselves if the shop dies)."""
        clients = [c for c in (self._client, *self._tax_clients.values()) if c is not None]
        self._client, self._tax_clients = None, {}
        for client in clients:
            await client.aclose()
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()  # end of input: the services shut down
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
