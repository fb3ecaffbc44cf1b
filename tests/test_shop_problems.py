"""The demo shop's planted problems, measured from outside with real requests and the shop's own spans, and the
target's levers that fix them, pulled with Ratchet's lever code: idempotent, checked, undone exactly.

Structure only (span counts, overlap, headers, bytes), never milliseconds: timing goals belong in bench/.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from temporalio.testing import ActivityEnvironment

from activities.levers import LeverActivities
from activities.probing import ProbeActivities
from examples.shop.catalog import CATALOG
from examples.shop.orders_api import ORDER_HISTORY, ORDER_PRODUCT, order_products_sql
from examples.shop.recommendations import PURCHASED_PRODUCTS
from ratchet.analysis.decisions import bytes_verdict
from ratchet.config.loading import load_target
from ratchet.config.playbook import Validation
from ratchet.config.target import Target
from ratchet.contracts import LeverCall, LeverOutcome, Verdict, WireBytesRequest
from ratchet.settings import Settings
from ratchet.traces.serve import READY_LINE
from tests.conftest import ROOT, SHOP_TARGET, StartShop, free_port, wait_for_line
from tests.shop_traces import (
    SpanReceiver,
    TracedShop,
    children,
    max_concurrency,
    new_trace,
    service_servers,
    shop_servers,
    statements,
    wait_complete,
)

PullLever = Callable[..., LeverOutcome]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpanReceiver]:
    """`ratchet traces serve` for this module, on its own folder and port."""
    home = tmp_path_factory.mktemp("traces")
    port = free_port()
    env = os.environ | {"RATCHET_HOME": str(home), "RATCHET_OTLP_PORT": str(port)}
    command = [sys.executable, "-m", "ratchet.cli", "traces", "serve"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        line = wait_for_line(process, timeout=60)
        assert READY_LINE in line, f"trace receiver did not start: {line!r}"
        yield SpanReceiver(url=f"http://127.0.0.1:{port}", incoming=home / "spans" / "incoming")
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def shop(shop_db: Path, start_shop: StartShop, receiver: SpanReceiver) -> TracedShop:
    """The shop on its own database, exporting its spans (and its services') to the receiver every 0.1 s."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    return TracedShop(url=start_shop(shop_db, env=env), receiver=receiver)


@pytest.fixture
def target(shop: TracedShop, shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> Target:
    """The shop's target file, pointed at this test's shop."""
    monkeypatch.setenv("SHOP_URL", shop.url)
    monkeypatch.setenv("SHOP_DB", str(shop_db))
    return load_target(SHOP_TARGET)


@pytest.fixture
def pull(target: Target, tmp_path: Path) -> PullLever:
    """``pull(lever_name, "apply" | "rollback")`` through Ratchet's own lever activity code."""
    activities = LeverActivities(Settings(home=tmp_path / "ratchet").resolved_store_url)
    levers = {lever.name: lever for lever in target.levers}

    def act(name: str, action: str, parameter: float | None = None) -> LeverOutcome:
        call = LeverCall(
            campaign_id="shop-problems", change_id=name, lever=levers[name], target=target, parameter=parameter
        )
        return activities._act(call, action)

    return act


def pulled_twice(pull: PullLever, name: str, action: str) -> None:
    """Pull a lever twice: the first changes the shop (checked), the second finds it done and changes nothing."""
    first, again = pull(name, action), pull(name, action)
    assert (first.changed, first.verified) == (True, True), first.detail
    assert (again.changed, again.verified) == (False, True), again.detail


def busiest_customer(database: Path) -> int:
    """The customer with the longest order history (the history lists 50 at most)."""
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT customer_id FROM orders GROUP BY customer_id HAVING count(*) <= 50 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()
    return int(row[0])


# --- a query per listed order ----------------------------------------------------------------------------


def test_order_history_queries_each_order_product_until_batched(
    shop: TracedShop, shop_db: Path, pull: PullLever
) -> None:
    customer = busiest_customer(shop_db)
    path = f"/customers/{customer}/orders"

    def history() -> tuple[dict, list[str]]:
        response, spans = shop.get(path)
        assert response.status_code == 200
        [server] = shop_servers(spans)
        return response.json(), statements(children(spans, server))

    body, shipped = history()
    orders = body["count"]
    assert orders >= 20
    # The list first, then one query per order, each after the other.
    assert shipped.count(ORDER_HISTORY) == 1 and shipped.count(ORDER_PRODUCT) == orders
    assert shipped.index(ORDER_HISTORY) < shipped.index(ORDER_PRODUCT)

    pulled_twice(pull, "batch-order-products", "apply")
    batched_body, batched = history()
    distinct = len({order["product"]["id"] for order in body["orders"]})
    assert ORDER_PRODUCT not in batched and batched.count(order_products_sql(distinct)) == 1
    assert len(batched) == 3  # customer, history, every product at once
    assert batched_body == body

    pulled_twice(pull, "batch-order-products", "rollback")
    restored_body, restored = history()
    assert restored.count(ORDER_PRODUCT) == orders and restored_body == body


# --- downstream calls one after another ------------------------------------------------------------------


def test_availability_calls_its_services_one_after_another_until_parallel(shop: TracedShop, pull: PullLever) -> None:
    services = {"inventory": 1, "pricing": 1, "shipping": 1}

    def calls() -> tuple[dict, list[dict]]:
        response, spans = shop.get("/products/77/availability", downstream=services)
        assert response.status_code == 200
        [server] = shop_servers(spans)
        outbound = [s for s in children(spans, server) if s["kind"] == "client" and s["url"]]  # not the query
        # Each call reached its service: the service's own server span sits under the shop's client span.
        for service in services:
            [answered] = service_servers(spans, service)
            assert answered["parent_span_id"] in {call["span_id"] for call in outbound}
        return response.json(), outbound

    answer, sequential = calls()
    assert sorted(urlsplit(call["url"]).path for call in sequential) == ["/estimates/77", "/prices/77", "/stock/77"]
    assert max_concurrency(sequential) == 1  # none starts before the previous one ended

    pulled_twice(pull, "parallel-availability-lookups", "apply")
    parallel_answer, parallel = calls()
    assert len(parallel) == 3 and max_concurrency(parallel) == 3
    assert parallel_answer == answer

    pulled_twice(pull, "parallel-availability-lookups", "rollback")
    restored_answer, restored = calls()
    assert max_concurrency(restored) == 1 and restored_answer == answer


# --- the same costly answer recomputed on every request --------------------------------------------------


def test_recommendations_are_recomputed_on_every_repeat_until_cached(shop: TracedShop, pull: PullLever) -> None:
    def repeats(times: int) -> list[tuple[dict, bool]]:
        """(answer, computed?) per request: a computed answer read the customer's purchases."""
        answers = []
        for _ in range(times):
            response, spans = shop.get("/recommendations/1234")
            assert response.status_code == 200
            [server] = shop_servers(spans)
            answers.append((response.json(), PURCHASED_PRODUCTS in statements(children(spans, server))))
        return answers

    shipped = repeats(3)
    answer = shipped[0][0]
    assert len(answer["products"]) == 10
    assert shipped == [(answer, True)] * 3  # the same answer, computed every time

    pulled_twice(pull, "cache-recommendations", "apply")
    assert repeats(3) == [(answer, True), (answer, False), (answer, False)]

    pulled_twice(pull, "cache-recommendations", "rollback")
    assert repeats(2) == [(answer, True)] * 2


# --- a large JSON document sent uncompressed -------------------------------------------------------------


def test_catalog_export_is_over_a_megabyte_uncompressed_until_gzip(shop: TracedShop, pull: PullLever) -> None:
    gzip_ok = {"Accept-Encoding": "gzip"}
    with httpx.Client(base_url=shop.url, timeout=60) as client:
        plain = client.get("/catalog/export", headers=gzip_ok)
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        assert int(plain.headers["content-length"]) == len(plain.content) >= 1_000_000
        assert plain.json()["count"] == 2_000

        pulled_twice(pull, "gzip-responses", "apply")
        packed = client.get("/catalog/export", headers=gzip_ok)
        assert packed.headers["content-encoding"] == "gzip"
        assert int(packed.headers["content-length"]) * 4 < len(plain.content)
        assert packed.content == plain.content  # httpx decodes: the same document
        # A client that does not accept gzip still gets the plain document.
        identity = client.get("/catalog/export", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in identity.headers and identity.content == plain.content

        pulled_twice(pull, "gzip-responses", "rollback")
        restored = client.get("/catalog/export", headers=gzip_ok)
        assert "content-encoding" not in restored.headers and restored.content == plain.content


async def test_the_campaign_measures_the_bytes_gzip_saves_on_the_export(
    target: Target, pull: PullLever, tmp_path: Path
) -> None:
    """What validation judges a payload change on: the wire bytes of the export, without and with gzip."""
    measure = ProbeActivities(Settings(home=tmp_path / "ratchet")).measure_wire_bytes
    request = WireBytesRequest(campaign_id="bytes", target=target, endpoints=["catalog-export", "health"])
    without = await ActivityEnvironment().run(measure, request)
    pulled_twice(pull, "gzip-responses", "apply")
    with_gzip = await ActivityEnvironment().run(measure, request)
    pulled_twice(pull, "gzip-responses", "rollback")

    assert without.bytes["catalog-export"] >= 1_000_000
    saved = bytes_verdict(
        "catalog-export", without.bytes["catalog-export"], with_gzip.bytes["catalog-export"], Validation()
    )
    assert saved.verdict == Verdict.IMPROVED and saved.ratio < 0.25, saved.explanation
    # A tiny answer is below gzip's 1 KiB threshold: the same bytes either way.
    assert with_gzip.bytes["health"] == without.bytes["health"]


def test_catalog_export_is_rebuilt_on_every_request_until_cached(shop: TracedShop, pull: PullLever) -> None:
    def export(encoding: str = "gzip") -> tuple[httpx.Response, bool]:
        """The answer, and whether the shop read the catalogue from its database for it."""
        response, spans = shop.get("/catalog/export", headers={"Accept-Encoding": encoding})
        assert response.status_code == 200
        [server] = shop_servers(spans)
        return response, CATALOG in statements(children(spans, server))

    shipped = [export() for _ in range(2)]
    document = shipped[0][0].content
    assert [read for _, read in shipped] == [True, True]

    pulled_twice(pull, "cache-catalog-export", "apply")
    cached = [export() for _ in range(3)]
    assert [read for _, read in cached] == [True, False, False]
    assert all(response.content == document for response, _ in cached)
    # With gzip on, the kept document goes out compressed to a client that accepts it, as it is to others.
    pull("gzip-responses", "apply")
    packed, read = export()
    assert not read and packed.headers["content-encoding"] == "gzip" and packed.content == document
    plain, _ = export("identity")
    assert "content-encoding" not in plain.headers and plain.content == document
    pull("gzip-responses", "rollback")

    pulled_twice(pull, "cache-catalog-export", "rollback")
    assert [read for _, read in (export(), export())] == [True, True]


# --- a page behind large, blocking, uncompressed, uncached assets ----------------------------------------


class _HeadAssets(HTMLParser):
    """The scripts and style sheets a page's <head> loads (outside <noscript>), with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.in_head = self.in_noscript = False
        self.assets: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "noscript"):
            setattr(self, f"in_{tag}", True)
        elif self.in_head and not self.in_noscript and tag in ("script", "link"):
            self.assets.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "noscript"):
            setattr(self, f"in_{tag}", False)


def head_assets(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _HeadAssets()
    parser.feed(page)
    return parser.assets


def blocking(assets: list[tuple[str, dict[str, str | None]]]) -> list[str]:
    """URLs the browser must load before it can render: plain scripts and style sheets in the head."""
    found = []
    for tag, attrs in assets:
        if tag == "script" and attrs.get("src") and "defer" not in attrs and "async" not in attrs:
            found.append(str(attrs["src"]))
        if tag == "link" and attrs.get("rel") == "stylesheet":
            found.append(str(attrs["href"]))
    return found


def test_storefront_blocks_on_large_uncompressed_uncached_assets_until_the_pipeline(
    shop: TracedShop, pull: PullLever
) -> None:
    gzip_ok = {"Accept-Encoding": "gzip"}
    with httpx.Client(base_url=shop.url, timeout=60, headers=gzip_ok) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert sorted(blocking(head_assets(page.text))) == ["/static/app.css", "/static/app.js"]
        originals = {}
        for url in ("/static/app.js", "/static/app.css"):
            asset = client.get(url)
            assert len(asset.content) >= 500_000 and "content-encoding" not in asset.headers
            assert "cache-control" not in asset.headers
            originals[urlsplit(url).path] = asset.content

        pulled_twice(pull, "storefront-asset-pipeline", "apply")
        assets = head_assets(client.get("/").text)
        assert blocking(assets) == []
        [script] = [attrs for tag, attrs in assets if tag == "script"]
        [styles] = [attrs for tag, attrs in assets if tag == "link" and attrs.get("as") == "style"]
        assert "defer" in script and styles["rel"] == "preload"
        for url in (str(script["src"]), str(styles["href"])):
            asset = client.get(url)
            assert asset.headers["content-encoding"] == "gzip"
            assert int(asset.headers["content-length"]) * 4 < len(asset.content)
            assert (
                "immutable" in asset.headers["cache-control"] and "max-age=31536000" in asset.headers["cache-control"]
            )
            assert asset.content == originals[urlsplit(url).path]  # the same bytes, once decoded

        pulled_twice(pull, "storefront-asset-pipeline", "rollback")
        assert sorted(blocking(head_assets(client.get("/").text))) == ["/static/app.css", "/static/app.js"]
        restored = client.get("/static/app.js")
        assert "content-encoding" not in restored.headers and "cache-control" not in restored.headers


# --- a one-connection pool that queues concurrent requests -----------------------------------------------


def test_invoices_queue_for_a_single_tax_connection_until_the_pool_grows(shop: TracedShop, pull: PullLever) -> None:
    orders = [7, 4242, 123456, 250000, 499999, 31337, 77777, 424242]

    def concurrency() -> tuple[int, int]:
        """Send every invoice request at once: how many calls to the tax service were in progress at the same
        time at most, as the shop saw them (its client spans) and as the tax service served them."""
        traces = [new_trace() for _ in orders]

        def one(order: int, headers: dict[str, str]) -> int:
            return httpx.get(f"{shop.url}/orders/{order}/invoice", headers=headers, timeout=60).status_code

        with ThreadPoolExecutor(len(orders)) as pool:
            statuses = list(pool.map(one, orders, [headers for _, headers in traces]))
        assert statuses == [200] * len(orders)
        spans = wait_complete(shop.receiver, [trace for trace, _ in traces], {"tax": len(orders)})
        calls = [s for s in spans if s["kind"] == "client" and s["service"] == "demo-shop" and s["url"]]
        assert len(calls) == len(orders)
        return max_concurrency(calls), max_concurrency(service_servers(spans, "tax"))

    calling, served = concurrency()
    assert calling >= 2 and served == 1  # the calls were made together, and waited for the one connection

    pulled_twice(pull, "tax-client-pool", "apply")
    assert concurrency()[1] >= 2

    pulled_twice(pull, "tax-client-pool", "rollback")
    assert concurrency()[1] == 1

    # A tunable lever: each value is set, checked, and set only once; a rollback restores the baseline.
    pool = lambda: httpx.get(f"{shop.url}/admin/flags").json()["tax_client_connections"]  # noqa: E731
    first, again, other = pull("tax-client-pool", "apply", 4), pull("tax-client-pool", "apply", 4), None
    assert (first.changed, first.verified, again.changed, pool()) == (True, True, False, 4), first.detail
    other = pull("tax-client-pool", "apply", 6.4)  # whole numbers only: 6
    assert other.changed and pool() == 6 and "range value 6" in other.detail
    assert pull("tax-client-pool", "rollback").changed and pool() == 1


# --- the trap: a cache that serves stale order histories -------------------------------------------------


def test_order_history_cache_hides_an_order_just_placed(shop: TracedShop, shop_db: Path, pull: PullLever) -> None:
    customer = busiest_customer(shop_db)
    with httpx.Client(base_url=shop.url, timeout=60) as client:

        def history_ids() -> list[int]:
            response = client.get(f"/customers/{customer}/orders")
            assert response.status_code == 200
            return [order["id"] for order in response.json()["orders"]]

        def place() -> int:
            placed = client.post("/orders", json={"customer_id": customer, "product_id": 77, "quantity": 2})
            assert placed.status_code == 201, placed.text
            return int(placed.json()["id"])

        first = place()
        assert history_ids()[0] == first  # as shipped, the newest order leads the history at once

        pulled_twice(pull, "order-history-cache", "apply")
        cached = history_ids()
        second = place()
        assert history_ids() == cached and second not in cached  # the order just placed is missing
        by_email = client.get("/orders", params={"customer_email": f"customer{customer}@example.com"}).json()
        assert second in [order["id"] for order in by_email["orders"]]  # though the shop has it

        pulled_twice(pull, "order-history-cache", "rollback")
        assert history_ids()[:2] == [second, first]


# --- levers: durable, idempotent, and the defaults come back ---------------------------------------------


NOT_LEVERS = {"injected_slowdown", "injected_slowdown_traces", "rollout_percent"}


def test_flag_levers_survive_a_restart_and_rollback_restores_the_defaults(
    shop: TracedShop, shop_db: Path, start_shop: StartShop, target: Target, pull: PullLever
) -> None:
    defaults = httpx.get(f"{shop.url}/admin/flags").json()
    # Every flag has its lever, but two that are no optimization: a benchmark's injected slowdown, and the
    # rollout's shares of requests (a lever sets it for its own flag).
    optimizations = {flag: value for flag, value in defaults.items() if flag not in NOT_LEVERS}
    flag_levers = [lever.name for lever in target.levers if lever.kind == "http"]
    assert len(flag_levers) == len(optimizations)
    for name in flag_levers:
        pulled_twice(pull, name, "apply")
    applied = httpx.get(f"{shop.url}/admin/flags").json()
    assert all(applied[flag] != value for flag, value in optimizations.items())

    # The flags live in the shop's database: a shop started on it later has them all in effect.
    again = start_shop(shop_db)
    assert httpx.get(f"{again}/admin/flags").json() == applied

    for name in reversed(flag_levers):
        pulled_twice(pull, name, "rollback")
    assert httpx.get(f"{shop.url}/admin/flags").json() == defaults


# --- clean endpoints -------------------------------------------------------------------------------------


def test_clean_endpoints_run_one_query_and_answer_small(shop: TracedShop) -> None:
    for path in ("/products/77", "/customers/1234", "/health"):
        response, spans = shop.get(path, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200
        [server] = shop_servers(spans)
        [query] = children(spans, server)
        assert query["statement"] and query["kind"] == "client"  # one database call, no outbound HTTP
        assert len(response.content) < 1024  # nothing worth compressing or caching in transit


# --- the downstream services' process --------------------------------------------------------------------


def test_downstream_services_stop_with_the_shop_even_when_it_is_killed(db_copy: Path) -> None:
    for stop in ("terminate", "kill"):
        command = [sys.executable, "-m", "examples.shop", "--db", str(db_copy), "--port", "0"]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=environment)
        try:
            assert "shop listening" in wait_for_line(process, timeout=60)
            [services] = psutil.Process(process.pid).children()
            assert "examples.shop.downstream" in " ".join(services.cmdline())
            getattr(process, stop)()  # SIGKILL leaves the shop no chance to stop them itself
            process.wait(timeout=30)
            _, alive = psutil.wait_procs([services], timeout=30)
            assert alive == [], f"downstream services outlived the shop ({stop})"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
