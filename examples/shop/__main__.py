"""Seed the shop database if needed, then serve the shop.

    python -m examples.shop (--db PATH | --database-url URL) [--port PORT] [--host HOST] [--orders N]
                            [--seed-only] [--pid-file FILE]

``--database-url`` takes ``postgresql://user@host:port/dbname`` (the database must exist; the shop creates its
tables in it) or ``sqlite:///path``.

Prints exactly one line on stdout, ``shop listening on http://HOST:PORT``, once the socket accepts
connections (``--port 0`` picks a free port; the line shows the real one). SIGTERM and SIGINT shut it down
gracefully with exit status 0; during seeding they abort it, leaving no half-seeded database.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from examples.shop.app import create_app
from examples.shop.db import POSTGRES_SCHEMES
from examples.shop.seed import seed_database


class _AnnouncingServer(uvicorn.Server):
    """Prints the "listening" line once the socket is bound, so starters wait on it rather than sleeping."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then announce the bound address on stdout."""
        await super().startup(sockets)
        if not self.started:
            return
        host = self.config.host
        port = self.servers[0].sockets[0].getsockname()[1]  # the real port, also when asked for port 0
        shown = f"[{host}]" if ":" in host else host  # IPv6 literals need brackets in a URL
        print(f"shop listening on http://{shown}:{port}", flush=True)


class _Signals:
    """SIGTERM/SIGINT handling for the whole life of the process.

    uvicorn installs its own handlers while serving, shuts down gracefully, restores ours and then
    re-raises the signal it caught; with Python's defaults that re-raise would end the process with a
    KeyboardInterrupt traceback or a "killed by SIGTERM" status. Ours turn it into a clean exit.
    """

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None

    def install(self) -> None:
        """Route SIGTERM and SIGINT to this object."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Abort seeding (by raising), or ask the server to stop (its handlers may not be in place yet)."""
        if self.server is None:
            # Seeding: unwinding through seed_database removes its temporary file. 128+N is the shell's
            # convention for "ended by signal N".
            raise SystemExit(128 + signum)
        self.server.should_exit = True  # harmless if uvicorn has already shut down and re-raised


def command_line() -> argparse.ArgumentParser:
    """The shop's flags (docker-compose.yml's command is checked against them)."""
    parser = argparse.ArgumentParser(prog="python -m examples.shop", description="Seed and serve the shop.")
    add = parser.add_argument
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="SQLite file (seeded when missing or incomplete)")
    where.add_argument(
        "--database-url",
        help="postgresql://user@host:port/dbname (an existing database, seeded when incomplete) or sqlite:///path",
    )
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add("--port", type=int, default=8800, help="0 picks a free port (default: %(default)s)")
    add("--orders", type=int, default=500_000, help="rows in the orders table (default: %(default)s)")
    add("--seed-only", action="store_true", help="seed the database and exit")
    add("--pid-file", type=Path, help="write this process's id here while it runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, seed, serve until signalled; returns the exit status."""
    parser = command_line()
    args = parser.parse_args(argv)
    database: Path | str = args.db if args.db is not None else args.database_url
    if isinstance(database, str) and not database.startswith(("sqlite:///", *POSTGRES_SCHEMES)):
        parser.error(f"--database-url {database!r}: must start with postgresql://, postgres:// or sqlite:///")

    signals = _Signals()
    signals.install()
    pid = str(os.getpid())
    if args.pid_file:
        # Written before seeding (which takes seconds) so a supervisor can stop us at any point.
        args.pid_file.write_text(pid)
    try:
        seed_database(database, orders=args.orders)
        if args.seed_only:
            return 0
        app = create_app(database)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
        signals.server = server = _AnnouncingServer(config)
        server.run()
        # uvicorn reports a failed bind or startup by raising SystemExit itself, so reaching here is a
        # requested shutdown.
        return 0
    finally:
        if args.pid_file:
            with contextlib.suppress(OSError):
                if args.pid_file.read_text() == pid:  # do not delete a successor's pid file
                    args.pid_file.unlink()


if __name__ == "__main__":
    sys.exit(main())
