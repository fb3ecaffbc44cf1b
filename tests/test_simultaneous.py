"""A burst whose requests are all in progress at once: the server below answers none until all have arrived,
so a client that waited for one answer before sending the next would never finish."""

from __future__ import annotations

import asyncio

import pytest

from ratchet.simultaneous import get_at_once
from tests.conftest import free_port

BURST = 8


@pytest.mark.asyncio(loop_scope="session")
async def test_every_request_of_a_burst_is_in_progress_before_any_is_answered() -> None:
    arrived: list[str] = []
    everyone = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        arrived.append(head.split(b" ", 2)[1].decode())
        if len(arrived) == BURST:
            everyone.set()
        await everyone.wait()
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        requests = [(f"/item/{n}", {"x-burst": "1"}) for n in range(BURST)]
        statuses = await get_at_once(f"http://127.0.0.1:{port}/base", requests, timeout_s=10)
    assert statuses == [204] * BURST
    assert sorted(arrived) == sorted(f"/base/item/{n}" for n in range(BURST))


@pytest.mark.asyncio(loop_scope="session")
async def test_a_burst_to_a_closed_port_fails_at_once() -> None:
    with pytest.raises(OSError):
        await get_at_once(f"http://127.0.0.1:{free_port()}", [("/", {})] * 3, timeout_s=10)
