"""GET requests that reach a service at the same instant: every connection is opened first, then every request
is written in one pass with nothing awaited between them.

An HTTP client sending "concurrent" requests still builds, connects and writes them one after another in its
event loop: against the library they reached the service over 80-90 ms, a few ms apart, and on a busy two-core
host further apart still. A limit on concurrency (a pool, a worker count) only shows when more requests are in
progress than it admits, so a burst must arrive as one.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import h11

_READ_BYTES = 65536


async def get_at_once(base_url: str, requests: list[tuple[str, dict[str, str]]], *, timeout_s: float) -> list[int]:
    """Send each (path, headers) GET on a connection of its own to ``base_url``, all written at once; the
    status codes in order. The bodies are read to their end and dropped."""
    parts = urlsplit(base_url)
    secure = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    prefix = parts.path.rstrip("/")
    authority = parts.netloc.rsplit("@", 1)[-1]
    context = ssl.create_default_context() if secure else None
    async with asyncio.timeout(timeout_s):
        opened = await asyncio.gather(
            *(asyncio.open_connection(host, port, ssl=context) for _ in requests), return_exceptions=True
        )
        streams = [stream for stream in opened if not isinstance(stream, BaseException)]
        failed = next((stream for stream in opened if isinstance(stream, BaseException)), None)
        if failed is not None:  # the connections that did open are closed, not left to the garbage collector
            for _, writer in streams:
                writer.close()
            raise failed
        try:
            connections = [h11.Connection(h11.CLIENT) for _ in requests]
            wires = [
                connection.send(h11.Request(method="GET", target=prefix + path, headers=_headers(authority, headers)))
                + (connection.send(h11.EndOfMessage()) or b"")
                for connection, (path, headers) in zip(connections, requests, strict=True)
            ]
            for (_, writer), wire in zip(streams, wires, strict=True):
                writer.write(wire)  # buffered by the transport: the pass takes microseconds
            await asyncio.gather(*(writer.drain() for _, writer in streams))
            return list(
                await asyncio.gather(
                    *(_status(connection, reader) for connection, (reader, _) in zip(connections, streams, strict=True))
                )
            )
        finally:
            for _, writer in streams:
                writer.close()


def _headers(authority: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    given = {name.lower(): value for name, value in headers.items()}
    return [("host", authority), ("connection", "close"), *given.items()]


async def _status(connection: h11.Connection, reader: asyncio.StreamReader) -> int:
    """Read one answer to its end; its status code."""
    status = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(_READ_BYTES))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return status
