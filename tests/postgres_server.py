"""A throwaway PostgreSQL server for the tests: initdb into a folder, start on 127.0.0.1, stop fast.

Real binaries from the Debian package ``postgresql`` (``make test`` installs it when missing). initdb and the
server refuse to run as root, so under root they run as the ``postgres`` system user (``runuser``) with a
data folder it owns; under any other user they run as that user, in the given folder.

Under root the data folder cannot live in pytest's temporary folders: every pytest session that starts makes
``/tmp/pytest-of-root`` private again (0700), which would cut a running server off its own files. It lives
in a private folder of its own, owned by ``postgres``, removed when the server stops; the server's log is
copied into the given folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

# Settings of a server that lives for one test session: reachable over TCP on loopback only, with
# pg_stat_statements loaded (it needs shared memory at start), and durability traded for speed: a crash
# loses a database nobody keeps.
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "'all'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
_SERVICE_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not on this machine (or cannot run)."""


def server_bindir() -> Path:
    """The folder with initdb, pg_ctl and postgres: RATCHET_PG_BINDIR, else Debian's newest, else PATH."""
    configured = os.environ.get("RATCHET_PG_BINDIR")
    candidates = [Path(configured)] if configured else []

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve())
    for candidate in candidates:
        bindir = candidate if candidate.is_dir() else candidate.parent
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: run `make test`, which installs the "
        "Debian package postgresql, or `apt-get install --no-install-recommends postgresql`; elsewhere set "
        "RATCHET_PG_BINDIR to the folder that holds them"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One PostgreSQL server for ``root`` (its log ends up there), listening on 127.0.0.1:``port``."""

    root: Path
    bindir: Path
    port: int = 0
    home: Path | None = None  # data folder and log while the server exists

    @property
    def data_dir(self) -> Path:
        assert self.home is not None, "initdb() first"
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        assert self.home is not None, "initdb() first"
        return self.home / "server.log"

    def url(self, database: str = "postgres") -> str:
        """A libpq URL of a database on this server (user postgres, trust authentication on loopback)."""
        return f"postgresql://{_SERVICE_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", _SERVICE_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd="/")
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[-2000:]}\n{log}".rstrip()
            )
        return result

    def initdb(self) -> None:
        """Create the cluster: trust authentication (loopback only), UTF-8, no fsync while creating it."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam(_SERVICE_USER)
            self.home = Path(tempfile.mkdtemp(prefix="ratchet-postgres-"))
            os.chown(self.home, account.pw_uid, account.pw_gid)
        else:
            self.home = self.root
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                _SERVICE_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# throwaway test server (tests/postgres_server.py)\n")
            conf.writelines(f"{name} = {value}\n" for name, value in _SETTINGS.items())

    def start(self, *, attempts: int = 3) -> None:
        """Start on a free port; ``pg_ctl -w`` returns once the server accepts connections.

        Another process may take the chosen port between the choice and the bind: then try another.
        """
        for attempt in range(1, attempts + 1):
            self.port = _free_port()
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        f"-p {self.port}",
                        "start",
                    ]
                )
                return
            except PostgresUnavailable:
                if attempt == attempts or "could not bind" not in self.log_file.read_text(errors="replace"):
                    raise

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, the server waits for nothing else. A private home goes."""
        if self.home is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        finally:
            if self.home != self.root:
                with contextlib.suppress(OSError):
                    shutil.copyfile(self.log_file, self.root / "server.log")
                shutil.rmtree(self.home, ignore_errors=True)

    def create_database(self, name: str, *, template: str = "template1") -> str:
        """A new database (pg_stat_statements installed in it); returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        with psycopg.connect(self.url(name), autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the sessions still connected to it (a shop that was just stopped)."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_server(root: Path) -> Iterator[PostgresServer]:
    """A started server in ``root`` for the block's duration, stopped (fast) afterwards."""
    server = PostgresServer(root, server_bindir())
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        server.stop()
