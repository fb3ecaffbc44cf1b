"""Shared fixtures: a real Temporal dev server, real workers, the real demo shop on a real SQLite file or on a
real PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import selectors
import shutil
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from examples.shop.seed import seed_database
from ratchet.config.common import Role
from ratchet.settings import Settings
from ratchet.temporal.client import connect
from ratchet.temporal.server import start_server, stop_server
from ratchet.temporal.worker import build_workers, run_workers
from ratchet.traces.serve import READY_LINE
from tests import slowest_first
from tests.postgres_server import PostgresServer, running_server
from tests.webhook_receiver import receiver  # noqa: F401  (a fixture for every test module)

ROOT = Path(__file__).resolve().parents[1]
TEST_PLAYBOOK = ROOT / "tests" / "playbooks" / "fast.yaml"
SHOP_TARGET = ROOT / "examples" / "shop" / "target.yaml"
LIBRARY_TARGET = ROOT / "examples" / "library" / "target.yaml"
_UNWATCHED = "watch:\n  after_partial: false\n"


def playbook_with_watch_defaults() -> str:
    """The test playbook without its `watch:` section (which keeps the campaign tests' partial results from
    being watched): for the tests of the watch, which add their own."""
    text = TEST_PLAYBOOK.read_text()
    assert _UNWATCHED in text
    return text.replace(_UNWATCHED, "")


SHOP_ORDERS = 500_000
SMALL_ORDERS = 20_000

# The fast tier (`make test-fast`) leaves out every test that starts a real part: Temporal, a worker, the trace
# receiver, the demo shop, PostgreSQL. Marked here by the fixtures they ask for, so a new test lands in the right
# tier by what it uses; a test that starts a real part by itself is marked `real` by hand.
REAL_PARTS = {
    "temporal_home",
    "client",
    "worker",
    "trace_receiver",
    "shop",
    "shop_template",
    "postgres",
    "pg_shop",
    "pg_database",
    "pg_shop_template",
    "start_shop",
    "small_db",
    "db_copy",
    "shop_db",
    "library_template",
    "library",
    "pipeline",
}


def pytest_configure(config: pytest.Config) -> None:
    """With RATCHET_PIN_CPUS=1, each pytest-xdist worker and everything it starts (Temporal, the worker, the
    shop, k6, PostgreSQL) keeps to a core of its own. Two real tests side by side on two cores then never take
    each other's CPU: unpinned, a neighbour's load run moved their latency verdicts (three CI runs failed on
    three different verdicts). A campaign test waits on its load runs most of the time, and on one core it
    took what it takes alone (the happy path: 176 s pinned beside another, 172 s alone)."""
    config.pluginmanager.register(slowest_first.SlowestFirst())  # the longest tests first (see the module)
    if os.environ.get("RATCHET_STORE_DURATIONS") == "1" and not hasattr(config, "workerinput"):
        config.pluginmanager.register(slowest_first.DurationRecorder())
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if os.environ.get("RATCHET_PIN_CPUS") != "1" or not worker.startswith("gw"):
        return
    cores = sorted(os.sched_getaffinity(0))
    core = {cores[int(worker.removeprefix("gw")) % len(cores)]}
    for thread in os.listdir("/proc/self/task"):  # every thread (execnet's too): Linux pins threads one by one
        os.sched_setaffinity(int(thread), core)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_PARTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def restartable_port() -> int:
    """A free port below the kernel's ephemeral range, for a server restarted on the same port: a port from
    ``free_port`` can be handed to some outgoing connection while its server is down (CI, 2026-12-06: the
    restarted Temporal server found its UI port taken)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.Random().sample(range(max(1024, low - 12_000), low), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {low}")


@pytest.fixture(scope="session")
def temporal_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A file-backed Temporal dev server for the whole session (the same code as `ratchet server start`)."""
    home = tmp_path_factory.mktemp("temporal")
    address = f"127.0.0.1:{free_port()}"
    start_server(home, address=address, ui_port=free_port())
    (home / "address").write_text(address)
    yield home
    stop_server(home)


@pytest.fixture(scope="session")
def fake_tier_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server for the fast tier's workflows on fake activities (it starts in about a second); its
    address. Separate from `temporal_home`, which marks a test as one of the real tier."""
    home = tmp_path_factory.mktemp("temporal-fast")
    address = f"127.0.0.1:{free_port()}"
    start_server(home, address=address, ui_port=free_port())
    yield address
    stop_server(home)


@pytest.fixture
def settings(temporal_home: Path, tmp_path: Path) -> Settings:
    """Settings of one test: its own data folder and task queues on the shared server."""
    return Settings(
        home=tmp_path / "ratchet",
        temporal_address=(temporal_home / "address").read_text(),
        task_queue_prefix=f"t{uuid.uuid4().hex[:8]}",
        otlp_port=free_port(),
    )


@pytest.fixture
def trace_receiver(settings: Settings) -> Iterator[str]:
    """`ratchet traces serve` for this test (its own data folder and port); yields its URL."""
    env = os.environ | {"RATCHET_HOME": str(settings.home), "RATCHET_OTLP_PORT": str(settings.otlp_port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "traces", "serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert READY_LINE in line, f"trace receiver did not start: {line!r}"
    yield settings.otlp_url
    process.terminate()
    process.wait(timeout=10)


@pytest_asyncio.fixture
async def client(settings: Settings) -> Client:
    return await connect(settings)


@contextlib.asynccontextmanager
async def running_workers(client: Client, settings: Settings, roles: list[Role] | None = None) -> AsyncIterator[None]:
    """Workers for the campaign queue and every role, in this process, for the block's duration."""
    stop = asyncio.Event()
    workers = build_workers(client, settings, roles or list(Role))
    task = asyncio.create_task(run_workers(workers, stop))
    try:
        yield
    finally:
        stop.set()
        await task


@pytest_asyncio.fixture
async def worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    async with running_workers(client, settings):
        yield


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded shop database, built once per session (copied for every test that changes it)."""
    path = tmp_path_factory.mktemp("shop-template") / "shop.db"
    subprocess.run(
        [sys.executable, "-m", "examples.shop", "--db", str(path), "--orders", str(SHOP_ORDERS), "--seed-only"],
        check=True,
        cwd=ROOT,
    )
    return path


def copy_durably(source: Path, destination: Path) -> None:
    """Copy a database and write it to disk now: otherwise the kernel writes the copy's hundreds of MB back
    while the test's first load test runs, and that baseline reads slower than the runs after it."""
    shutil.copyfile(source, destination)
    with destination.open("rb+") as copy:
        os.fsync(copy.fileno())


class Shop:
    """A running demo shop on its own copy of the database (a SQLite file, or a PostgreSQL URL)."""

    def __init__(self, url: str, database: Path | str, process: subprocess.Popen[str]) -> None:
        self.url, self.database, self.process = url, database, process

    def indexes(self) -> list[tuple[str, str]]:
        """(name, sql) of every index on the shop's tables: what a rollback must restore exactly."""
        if isinstance(self.database, str):
            import psycopg

            with psycopg.connect(self.database) as connection:
                rows = connection.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname"
                ).fetchall()
        else:
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.database)) as connection:
                rows = connection.execute(
                    "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'index' ORDER BY name"
                ).fetchall()
        return [(str(n), str(s)) for n, s in rows]


def launch_shop(database_args: list[str], trace_receiver: str) -> tuple[str, subprocess.Popen[str]]:
    """``python -m examples.shop`` on a free port, sending its spans to ``trace_receiver``; (url, process)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.shop", *database_args, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ | {"OTEL_EXPORTER_OTLP_ENDPOINT": trace_receiver},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening" in line, f"shop did not start: {line!r}"
    return f"http://127.0.0.1:{port}", process


def stop_shop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="session")
def index_only_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop's target without its flag levers. Tests of the saga, verdicts and durability apply the one
    generated index change only; the shop's other problems are still found and become manual advice."""
    import yaml

    data = yaml.safe_load(SHOP_TARGET.read_text())
    data["levers"] = [lever for lever in data["levers"] if lever["kind"] != "http"]
    # A lighter API contract check (3 generated cases per operation, not 10): these tests are not about the
    # contract, and schemathesis runs twice per campaign (before and after the changes).
    data["behaviour"]["api"]["max_examples"] = 3

    class IndentedLists(yaml.SafeDumper):
        """Lists indented under their key, as in the shop's file (tests append levers to it as text)."""

        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)

    path = tmp_path_factory.mktemp("targets") / "shop-index-only.yaml"
    path.write_text(yaml.dump(data, Dumper=IndentedLists, sort_keys=False))
    return path


@pytest.fixture
def shop(shop_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trace_receiver: str) -> Iterator[Shop]:
    """The demo shop on a fresh copy of the seeded database, on a free port, sending its spans to the test's
    trace receiver; SHOP_URL/SHOP_DB point at it."""
    database = tmp_path / "shop" / "shop.db"
    database.parent.mkdir()
    copy_durably(shop_template, database)
    url, process = launch_shop(["--db", str(database)], trace_receiver)
    monkeypatch.setenv("SHOP_URL", url)
    monkeypatch.setenv("SHOP_DB", str(database))
    yield Shop(url, database, process)
    stop_shop(process)


# --- PostgreSQL ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (Debian's binaries, pg_stat_statements loaded), on 127.0.0.1.

    Missing binaries fail the tests that need it, with what to install: never a skip.
    """
    with running_server(tmp_path_factory.mktemp("postgres")) as server:
        yield server


PG_SHOP_TEMPLATE = "shop_template"


@pytest.fixture(scope="session")
def pg_shop_template(postgres: PostgresServer) -> str:
    """The shop seeded once on PostgreSQL (the same rows as the SQLite template); tests get copies of it."""
    url = postgres.create_database(PG_SHOP_TEMPLATE)
    subprocess.run(
        [sys.executable, "-m", "examples.shop", "--database-url", url, "--orders", str(SHOP_ORDERS), "--seed-only"],
        check=True,
        cwd=ROOT,
    )
    return PG_SHOP_TEMPLATE


@pytest.fixture
def pg_database(postgres: PostgresServer, pg_shop_template: str) -> Iterator[str]:
    """This test's own copy of the seeded PostgreSQL shop database; yields its URL."""
    name = f"shop_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(name, template=pg_shop_template)
    yield url
    postgres.drop_database(name)


@pytest.fixture
def pg_shop(pg_database: str, monkeypatch: pytest.MonkeyPatch, trace_receiver: str) -> Iterator[Shop]:
    """The demo shop on this test's PostgreSQL copy, on a free port, its spans to the test's trace receiver;
    SHOP_URL/SHOP_DATABASE_URL point at it (the shop's target file then reaches PostgreSQL)."""
    url, process = launch_shop(["--database-url", pg_database], trace_receiver)
    monkeypatch.setenv("SHOP_URL", url)
    monkeypatch.setenv("SHOP_DATABASE_URL", pg_database)
    yield Shop(url, pg_database, process)
    stop_shop(process)


# --- the shop on a small database, started as `python -m examples.shop` ---------------------------------


@pytest.fixture(scope="session")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded shop with 20,000 orders, shared read-only by the session (copy it to change it)."""
    path = tmp_path_factory.mktemp("shop") / "shop.db"
    seed_database(path, orders=SMALL_ORDERS)
    return path


@pytest.fixture
def shop_db(shop_template: Path, tmp_path: Path) -> Path:
    """This test's own copy of the full-size shop (500,000 orders: realistic order histories)."""
    path = tmp_path / "shop" / "shop.db"
    path.parent.mkdir()
    copy_durably(shop_template, path)
    return path


@pytest.fixture
def db_copy(small_db: Path, tmp_path: Path) -> Path:
    """This test's own copy of the small shop database."""
    path = tmp_path / "shop.db"
    copy_durably(small_db, path)
    return path


def seeded_orders(database: Path) -> int | None:
    """How many orders a seeded shop database holds (its seed_info); None when it is not one."""
    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            row = connection.execute("SELECT orders FROM seed_info").fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else int(row[0])


def wait_for_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line of ``process``; waits on the pipe (no sleeping), fails after ``timeout`` s."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output from the shop within {timeout} s")
    return process.stdout.readline()


StartShop = Callable[..., str]


@pytest.fixture
def start_shop(tmp_path: Path) -> Iterator[StartShop]:
    """Starts ``python -m examples.shop`` on a database (on a free port) and returns its base URL.

    ``start(database, env={...})`` adds variables to the shop's environment (e.g. an OTLP endpoint). Every
    shop started is sent SIGTERM at teardown and must then exit cleanly (status 0, pid file gone).
    """
    started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(database: Path, env: dict[str, str] | None = None) -> str:
        pid_file = tmp_path / f"shop-{len(started)}.pid"
        # --port 0: the kernel picks a free port and the shop prints it, so there is no pick-then-bind race.
        command = [sys.executable, "-m", "examples.shop", "--db", str(database), "--port", "0"]
        # The size it was seeded with: the shop rebuilds a database of another size (its default is 500,000
        # orders), which would turn the session's small database into a large one for every later test.
        orders = seeded_orders(database) if database.is_file() else None
        command += ["--orders", str(orders)] if orders is not None else []
        command += ["--pid-file", str(pid_file)]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | (env or {})
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=environment)
        started.append((process, pid_file))
        line = wait_for_line(process, timeout=60)
        assert line.startswith("shop listening on http://127.0.0.1:"), f"shop did not start: {line!r}"
        assert pid_file.read_text() == str(process.pid)
        return line.split()[-1]

    yield start
    # Signal every shop before judging any, so one failed check never leaves another server running.
    for process, _ in started:
        process.terminate()
    statuses = []
    for process, _ in started:
        try:
            statuses.append(process.wait(timeout=15))
        except subprocess.TimeoutExpired:
            process.kill()
            statuses.append(process.wait())
        if process.stdout is not None:
            process.stdout.close()
    assert statuses == [0] * len(started), "the shop must exit cleanly on SIGTERM"
    assert not any(pid_file.exists() for _, pid_file in started), "the shop removes its pid file on exit"


# --- the library (examples/library): Flask, SQLAlchemy, gunicorn, on PostgreSQL ------------------------------


@dataclass
class Library:
    """A running library on this test's own database copy."""

    url: str
    database: str
    home: Path


@pytest.fixture(scope="session")
def library_template(postgres: PostgresServer) -> str:
    """The library seeded once on the session's PostgreSQL; tests get copies of it."""
    url = postgres.create_database("library_template")
    subprocess.run(
        [sys.executable, "-m", "examples.library", "--database-url", url, "--seed-only"], check=True, cwd=ROOT
    )
    settle_writes(postgres)
    return "library_template"


@pytest.fixture
def library(
    postgres: PostgresServer,
    library_template: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trace_receiver: str,
) -> Iterator[Library]:
    """The library on a copy of the seeded database, on free ports, its spans to the test's trace receiver;
    LIBRARY_URL, LIBRARY_DATABASE_URL and LIBRARY_HOME point its target file at it."""
    name = f"library_{uuid.uuid4().hex[:10]}"
    database = postgres.create_database(name, template=library_template)
    home = tmp_path / "library"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.library",
            "--database-url",
            database,
            "--port",
            str(port),
            "--rates-port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ | {"OTEL_EXPORTER_OTLP_ENDPOINT": trace_receiver, "LIBRARY_HOME": str(home)},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening" in line, f"library did not start: {line!r}"
    url = f"http://127.0.0.1:{port}"
    for variable, value in (("LIBRARY_URL", url), ("LIBRARY_DATABASE_URL", database), ("LIBRARY_HOME", str(home))):
        monkeypatch.setenv(variable, value)
    yield Library(url, database, home)
    stop_shop(process)
    postgres.drop_database(name)
    settle_writes(postgres)


def settle_writes(postgres: PostgresServer) -> None:
    """Write what PostgreSQL and the kernel hold dirty now: hundreds of MB written back during the next test's
    load would slow that test's requests (as with ``copy_durably``)."""
    import psycopg

    with psycopg.connect(postgres.url(), autocommit=True) as connection:
        connection.execute("CHECKPOINT")
    os.sync()


@dataclass(frozen=True)
class Pipeline:
    admin_url: str
    task_queue: str
    home: Path
    namespace: str = "default"


@contextlib.contextmanager
def running_pipeline(address: str, home: Path, queue: str, namespace: str = "default") -> Iterator[Pipeline]:
    """The example document pipeline (its worker, its two providers, its admin API) on a Temporal server."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "examples.pipeline", "--temporal-address", address, "--namespace", namespace,
            "--task-queue", queue, "--admin-port", str(port), "--home", str(home),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("pipeline ready"), f"the pipeline did not start: {line!r}"
        yield Pipeline(f"http://127.0.0.1:{port}", queue, home, namespace)
    finally:
        stop_shop(process)


@pytest.fixture
def pipeline(temporal_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """The example pipeline on the session's Temporal server, with a task queue of its own; PIPELINE_ADMIN_URL
    and PIPELINE_TASK_QUEUE point its target at it."""
    queue = f"pipeline-{uuid.uuid4().hex[:8]}"
    with running_pipeline((temporal_home / "address").read_text(), tmp_path / "pipeline", queue) as started:
        monkeypatch.setenv("PIPELINE_ADMIN_URL", started.admin_url)
        monkeypatch.setenv("PIPELINE_TASK_QUEUE", queue)
        yield started
