"""The trace detectors on hand-built traces: what is on the critical path, and which patterns count."""

from __future__ import annotations

import itertools
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from ratchet.analysis.traces import analyze_burst, analyze_run
from ratchet.analysis.traces.concurrency import InProgress, max_concurrency
from ratchet.analysis.traces.critical_path import annotate, path_template
from ratchet.analysis.traces.detectors import repeated_block
from ratchet.config.playbook import Detection
from ratchet.database.statements import reads_the_catalog
from ratchet.traces.columnar import SPAN_SCHEMA

MS = 1_000_000
_ids = itertools.count(1)


class TraceBuilder:
    """Spans of one request: a server root and what it did, times in ms from the request's start."""

    def __init__(self, rows: list[dict[str, Any]], endpoint: str, start_ms: float, root_ms: float) -> None:
        self.rows, self.endpoint, self.t0 = rows, endpoint, start_ms
        self.trace_id = f"{next(_ids):032x}"
        self.root = self.span("remote-parent", "GET /x", "server", 0, root_ms)

    def span(self, parent: str, name: str, kind: str, start: float, end: float, **attributes: Any) -> str:
        span_id = f"{next(_ids):016x}"
        row = {column: None for column in SPAN_SCHEMA.names}
        row |= {
            "trace_id": self.trace_id,
            "span_id": span_id,
            "parent_span_id": parent,
            "name": name,
            "kind": kind,
            "service": attributes.pop("service", "shop"),
            "start_ns": int((self.t0 + start) * MS),
            "end_ns": int((self.t0 + end) * MS),
            "duration_ms": end - start,
            "status": "unset",
            "endpoint": self.endpoint,
        } | attributes
        self.rows.append(row)
        return span_id

    def query(self, sql: str, start: float, end: float) -> str:
        return self.span(self.root, "SELECT", "client", start, end, statement=sql, db_system="sqlite")

    def call(self, url: str, start: float, end: float, served: tuple[float, float] | None = None) -> str:
        span_id = self.span(self.root, "GET", "client", start, end, url=url, http_method="GET")
        if served is not None:
            self.span(span_id, "GET /x", "server", *served, service=url.split("/")[2])
        return span_id


def table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = SPAN_SCHEMA.append(pa.field("endpoint", pa.string()))
    return pa.Table.from_pylist(rows, schema=schema)


RULES = Detection(min_traces=3)


def shop_like() -> list[dict[str, Any]]:
    """Four requests of each kind: an N+1, sequential calls, concurrent calls, and a clean endpoint."""
    rows: list[dict[str, Any]] = []
    for n in range(4):
        t = TraceBuilder(rows, "history", n * 1000, 100)
        t.query("SELECT * FROM orders WHERE customer_id = ?", 0, 5)
        for i in range(10):
            t.query(f"SELECT * FROM products WHERE id = {i}", 5 + i * 5, 9 + i * 5)  # literals: normalized
        t = TraceBuilder(rows, "availability", n * 1000, 100)
        for i, host in enumerate(("stock:1", "price:2", "ship:3")):
            t.call(f"http://{host}/items/{n}{i}", i * 30, i * 30 + 28)
        t = TraceBuilder(rows, "parallel", n * 1000, 40)
        for host in ("stock:1", "price:2", "ship:3"):
            t.call(f"http://{host}/items/7", 1, 30)
        t = TraceBuilder(rows, "product", n * 1000, 2)
        t.query("SELECT * FROM products WHERE id = ?", 0.2, 0.5)
    return rows


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def test_critical_path_keeps_the_last_finishing_of_concurrent_children(con: duckdb.DuckDBPyConnection) -> None:
    rows: list[dict[str, Any]] = []
    t = TraceBuilder(rows, "e", 0, 100)
    early = t.call("http://a:1/x", 0, 20)
    short = t.call("http://b:1/x", 25, 40)  # overlaps the long one, ends before it: off the path
    long = t.call("http://c:1/x", 22, 60)
    after = t.query("SELECT 1", 70, 80)
    con.register("spans", table(rows))
    annotate(con, "spans")
    on_path = dict(con.execute("SELECT span_id, on_path FROM sp").fetchall())
    assert on_path[t.root] and on_path[early] and on_path[long] and on_path[after]
    assert not on_path[short]


def test_patterns_are_found_where_they_are_and_nowhere_else(con: duckdb.DuckDBPyConnection) -> None:
    con.register("spans", table(shop_like()))
    analysis = analyze_run(con, "spans", RULES)
    found = {(f.type.value, f.endpoint): f for f in analysis.findings}
    assert set(found) == {("n-plus-one", "history"), ("sequential-calls", "availability")}

    n1 = found[("n-plus-one", "history")]
    assert n1.evidence["calls_per_request"] == 10 and n1.evidence["statement"] == "SELECT * FROM products WHERE id = ?"
    assert n1.evidence["traces"] == 4 and len(n1.evidence["trace_ids"]) == 3
    sequential = found[("sequential-calls", "availability")]
    # Three 28 ms calls one after another: at once they would take 28 ms, saving 56 of the request's 100.
    assert sequential.evidence["saved_ms"] == pytest.approx(56)
    assert sorted(sequential.evidence["targets"]) == [
        "GET price:2/items/{id}",
        "GET ship:3/items/{id}",
        "GET stock:1/items/{id}",
    ]
    assert sequential.severity == "high" and sequential.impact == pytest.approx(0.56 * 0.25, abs=1e-3)
    # The parallel endpoint's three calls overlap: one is on the path, nothing to find.
    assert analysis.server_p95_ms["product"] == pytest.approx(2)
    # What a request waits on most: the parallel endpoint, the one of its calls on the path (29 of 40 ms).
    waits = analysis.dependencies["parallel"]
    assert waits.median_ms == pytest.approx(29) and waits.share == pytest.approx(29 / 40)
    assert waits.dest.endswith("/items/{id}") and "product" not in analysis.dependencies


def test_a_pattern_must_recur(con: duckdb.DuckDBPyConnection) -> None:
    rows = [r for r in shop_like() if r["start_ns"] < 2000 * MS]  # two requests of each kind only
    con.register("spans", table(rows))
    assert analyze_run(con, "spans", RULES).findings == []
    con.register("spans", table(rows))
    assert analyze_run(con, "spans", RULES.model_copy(update={"min_traces": 2})).findings != []


def test_fast_repeats_are_not_an_n_plus_one_when_they_cost_nothing(con: duckdb.DuckDBPyConnection) -> None:
    rows: list[dict[str, Any]] = []
    for n in range(4):
        t = TraceBuilder(rows, "fine", n * 1000, 100)
        for i in range(6):
            t.query("SELECT 1", 1 + i * 0.1, 1.05 + i * 0.1)  # 0.6 ms of a 100 ms request
    con.register("spans", table(rows))
    assert analyze_run(con, "spans", RULES).findings == []


def test_calls_waiting_for_one_connection_are_queueing(con: duckdb.DuckDBPyConnection) -> None:
    rows: list[dict[str, Any]] = []
    for n in range(6):  # six calls made at once; the service serves them one at a time, 10 ms each
        t = TraceBuilder(rows, "invoice", 0, 80)
        t.call("http://tax:9/quotes", 1, 12 + n * 10, served=(1 + n * 10, 11 + n * 10))
    con.register("spans", table(rows))
    mix = analyze_run(con, "spans", RULES).mix
    [finding] = analyze_burst(con, "spans", RULES, mix)
    assert finding.type.value == "saturation" and finding.endpoint == "invoice"
    assert finding.evidence["max_called_at_once"] == 6 and finding.evidence["max_served_at_once"] == 1
    assert finding.evidence["waiting_calls"] == 5  # the first call did not wait


def test_requests_waiting_for_one_database_connection_are_a_saturation_inside_the_service(
    con: duckdb.DuckDBPyConnection,
) -> None:
    rows: list[dict[str, Any]] = []
    for n in range(8):  # eight requests at once; one connection: each holds it 8 ms, from its statement to its end
        t = TraceBuilder(rows, "report", 0, 2 + n * 8 + 8)
        t.query("SELECT genre, count(*) FROM books GROUP BY genre", 2 + n * 8, 2 + n * 8 + 6)
    con.register("spans", table(rows))
    mix = analyze_run(con, "spans", RULES).mix
    [finding] = analyze_burst(con, "spans", RULES, mix)
    assert finding.type.value == "saturation" and finding.endpoint == "report"
    assert finding.evidence["max_called_at_once"] == 8 and finding.evidence["max_served_at_once"] == 1
    assert finding.evidence["where"] == "inside the service" and finding.evidence["destination"] == "sqlite connections"
    # Requests 2-8 waited 10-58 ms before their statement (2 ms of their own work, then the connection).
    assert finding.evidence["waiting_calls"] == 7 and finding.evidence["median_wait_ms"] == pytest.approx(34)


def test_a_busy_cpu_that_delays_every_request_is_not_a_pool(con: duckdb.DuckDBPyConnection) -> None:
    rows: list[dict[str, Any]] = []
    for n in range(8):  # eight requests at once, each waits its turn for the CPU, then all run together
        t = TraceBuilder(rows, "product", 0, 60 + n)
        t.query("SELECT * FROM products WHERE id = ?", 30 + n * 2, 35 + n * 2)
    con.register("spans", table(rows))
    mix = analyze_run(con, "spans", RULES).mix
    assert analyze_burst(con, "spans", RULES, mix) == []


def test_calls_a_starved_service_gets_to_one_after_another_are_not_a_limit(con: duckdb.DuckDBPyConnection) -> None:
    """A service whose host CPU is taken by others (CI, a core shared with the shop, k6 and Temporal): sixteen
    calls at once, its event loop gets to one every 4 ms and serves each 25 ms. At most 7 are served at once
    (under half of 16) and the later calls wait long, but the number served rose while they waited: the
    service was getting to them, not held. The same calls held at 7 by a pool are a limit."""
    rows: list[dict[str, Any]] = []
    for n in range(16):
        t = TraceBuilder(rows, "availability", 0, 40 + n * 4)
        t.call("http://inventory:9/stock/1", 1, 28 + n * 4, served=(2 + n * 4, 27 + n * 4))
    con.register("spans", table(rows))
    mix = analyze_run(con, "spans", RULES).mix
    assert analyze_burst(con, "spans", RULES, mix) == []
    rows = []
    for n in range(16):  # the eighth starts as the first ends, and so on
        start = 2 + (n // 7) * 25
        t = TraceBuilder(rows, "availability", 0, 40 + start)
        t.call("http://inventory:9/stock/1", 1, start + 26, served=(start, start + 25))
    con.register("spans", table(rows))
    [finding] = analyze_burst(con, "spans", RULES, mix)
    assert finding.evidence["max_served_at_once"] == 7
    assert finding.evidence["held_waits"] == finding.evidence["long_waits"] == 9  # the first seven did not wait


def test_a_pool_per_process_is_a_limit_while_one_process_drains_its_queue_alone(con: duckdb.DuckDBPyConnection) -> None:
    """Two worker processes, one database connection each (CI, the library's reporting engine): of sixteen
    requests at once one worker took fifteen, the other one. Once the second is done the first goes on alone:
    one connection held of the two there are (for most of every wait), its requests held back by its pool."""
    rows: list[dict[str, Any]] = []
    for worker, requests in enumerate((15, 1)):
        for n in range(requests):  # each holds its worker's connection 5 ms, from its statement to its end
            first = 2 + worker + n * 5
            t = TraceBuilder(rows, "shelf-usage", 0, first + 5)
            t.query("SELECT shelf, count(*) FROM loans GROUP BY shelf", first, first + 4)
    con.register("spans", table(rows))
    mix = analyze_run(con, "spans", RULES).mix
    [finding] = analyze_burst(con, "spans", RULES, mix)
    assert finding.evidence["where"] == "inside the service" and finding.evidence["max_served_at_once"] == 2
    # Waits of 10 ms and more: the first worker's 3rd to 15th, all held.
    assert finding.evidence["held_waits"] == finding.evidence["long_waits"] == 13


def test_in_progress_at_an_instant() -> None:
    in_progress = InProgress([(0, 10), (5, 20), (15, 30)])
    assert [in_progress.at(t) for t in (-1, 0, 5, 9, 10, 15, 20, 29, 30)] == [0, 1, 2, 2, 1, 2, 1, 1, 0]
    assert InProgress([(0, 10), (10, 20)]).at(10) == 1  # one ending as another starts: not both


def test_path_templates_and_concurrency() -> None:
    assert path_template("http://127.0.0.1:8/stock/42?x=1") == "127.0.0.1:8/stock/{id}"
    assert path_template("https://api/v1/users/5f0c6a2e-1111-2222-3333-444455556666/cart") == "api/v1/users/{id}/cart"
    assert max_concurrency([(0, 10), (10, 20)]) == 1 and max_concurrency([(0, 10), (5, 20), (6, 7)]) == 3


def test_a_group_of_queries_per_item_is_one_repeated_group_not_two_n_plus_ones(con: duckdb.DuckDBPyConnection) -> None:
    rows: list[dict[str, Any]] = []
    for n in range(4):
        t = TraceBuilder(rows, "orders", n * 1000, 120)
        t.query("SELECT * FROM orders WHERE customer_id = ?", 0, 4)
        for i in range(10):  # per order: its product, then its shipment
            t.query(f"SELECT * FROM products WHERE id = {i}", 5 + i * 10, 9 + i * 10)
            t.query(f"SELECT * FROM shipments WHERE order_id = {i}", 10 + i * 10, 14 + i * 10)
    con.register("spans", table(rows))
    [group] = [f for f in analyze_run(con, "spans", RULES).findings if f.type.value == "n-plus-one"]
    assert group.evidence["statements"] == [
        "SELECT * FROM products WHERE id = ?",
        "SELECT * FROM shipments WHERE order_id = ?",
    ]
    assert group.evidence["calls_per_request"] == 10 and group.evidence["window_ms"] == pytest.approx(99)
    assert "a group of 2 queries runs 10 times" in group.summary


def test_repeated_block_finds_the_longest_run_of_a_group() -> None:
    a, b, c = "A", "B", "C"
    assert repeated_block([c, a, b, a, b, a, b, a, b, a, b, c], 5) == (1, 2, 5)
    assert repeated_block([a, b, c] * 6, 5) == (0, 3, 6)
    assert repeated_block([a, a, a, a, a, a], 5) is None  # one statement: the plain N+1's
    assert repeated_block([a, b, a, b, c, a, b, a, b], 5) is None  # interrupted: no run of 5


@pytest.mark.parametrize(
    "catalog",
    [
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'orders'",
        "PRAGMA table_info(orders)",
        "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname = 'orders'",
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'",
    ],
)
def test_the_databases_own_catalog_never_makes_a_finding(con: duckdb.DuckDBPyConnection, catalog: str) -> None:
    # An ORM asking about the schema ten times a request looks like an N+1, and costs the service like one: still
    # not the service's data access, and no batching lever of the service fixes it.
    rows: list[dict[str, Any]] = []
    for n in range(4):
        t = TraceBuilder(rows, "history", n * 1000, 100)
        for i in range(10):
            t.query(catalog, 5 + i * 5, 9 + i * 5)
    con.register("spans", table(rows))
    assert analyze_run(con, "spans", RULES).findings == []
    assert reads_the_catalog(catalog)


def test_the_services_own_statements_are_not_the_catalog() -> None:
    for statement in (
        "SELECT * FROM orders WHERE customer_email = ?",
        "SELECT pg_sleep(0.1)",
        "SELECT * FROM pages JOIN page_views ON pages.id = page_views.page_id",
        "UPDATE settings SET value = 'information' WHERE key = 'schema'",
    ):
        assert not reads_the_catalog(statement), statement
