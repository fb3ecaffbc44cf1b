"""Detectors over a run's spans (after ``critical_path.annotate``): N+1 queries, sequential queries and calls,
N+1 API calls, calls queueing for a connection, requests waiting for a database connection, and the
statements that dominate an endpoint.

Each detector finds a pattern per request (trace), then keeps it only when it recurs: in at least
``min_traces`` traces and in ``min_trace_share`` of the endpoint's traced requests (queueing, which only
shows under concurrency, needs the first only). Only spans on the critical path count, except for N+1 API
calls (made concurrently, they still cost the service a call each). Thresholds: the playbook's ``detection``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import duckdb

from ratchet.analysis.traces.concurrency import InProgress, max_concurrency
from ratchet.config.common import FindingType
from ratchet.config.playbook import Detection
from ratchet.contracts import Finding

_EXAMPLE_TRACES = 3


@dataclass(frozen=True)
class Traffic:
    """Traced requests per endpoint and each endpoint's share of them (the run's mix)."""

    requests: dict[str, int]

    def share(self, endpoint: str) -> float:
        total = sum(self.requests.values()) or 1
        return self.requests.get(endpoint, 0) / total


@dataclass(frozen=True)
class StatementCandidate:
    """A statement that takes a large share of an endpoint's critical path: worth a plan."""

    endpoint: str
    statement: str
    db_system: str
    calls_per_request: float
    median_ms: float
    share: float
    trace_ids: list[str]


def traffic(con: duckdb.DuckDBPyConnection) -> Traffic:
    rows = con.execute("SELECT endpoint, count(*) FROM req GROUP BY endpoint").fetchall()
    return Traffic({str(e): int(n) for e, n in rows})


def severity(share: float) -> str:
    """How much of a request the pattern costs: the share a fix could take off."""
    if share >= 0.75:
        return "critical"
    if share >= 0.5:
        return "high"
    return "medium" if share >= 0.2 else "low"


Rows = list[tuple[Any, ...]]


def _group(rows: Rows) -> dict[tuple[str, str], Rows]:
    """Per-trace matches (endpoint, key, trace_id, ...) grouped by (endpoint, key), trace order kept."""
    groups: dict[tuple[str, str], Rows] = {}
    for row in rows:
        groups.setdefault((row[0], row[1]), []).append(row)
    return groups


def _recurring_groups(rows: Rows, mix: Traffic, rules: Detection) -> Iterator[tuple[str, str, Rows]]:
    """(endpoint, key, matches) of the patterns found in ``min_traces`` traces and in ``min_trace_share`` of
    the endpoint's traced requests."""
    for (endpoint, key), group in _group(rows).items():
        if len(group) >= rules.min_traces and len(group) >= rules.min_trace_share * mix.requests.get(endpoint, 0):
            yield endpoint, key, group


def _finding(
    kind: FindingType,
    endpoint: str,
    share: float,
    gain_ms: float,
    mix: Traffic,
    summary: str,
    evidence: dict[str, Any],
) -> Finding:
    return Finding(
        id="",
        type=kind,
        endpoint=endpoint,
        severity=severity(share),  # type: ignore[arg-type]
        impact=round(share * mix.share(endpoint), 4),
        estimated_gain_ms=round(gain_ms, 2),
        summary=summary,
        evidence=evidence | {"fingerprint": f"{kind.value}|{endpoint}|{evidence.get('key', '')}"},
    )


def n_plus_one(con: duckdb.DuckDBPyConnection, mix: Traffic, rules: Detection) -> list[Finding]:
    """One statement run again and again, one after another, under one parent.

    Its cost is the window from the first run's start to the last one's end: the queries and the work done
    per item between them (fetching, mapping rows), all of which one batched query removes.
    """
    rows = con.execute(
        """
        SELECT request_endpoint, norm, any_value(trace_id) AS trace_id, count(*) AS n,
               (max(end_ns) - min(start_ns)) / 1e6 AS window_ms, any_value(root_ms), sum(duration_ms) AS db_ms
        FROM sp WHERE norm IS NOT NULL AND on_path
        GROUP BY request_endpoint, norm, pid HAVING count(*) >= ?
        ORDER BY request_endpoint, norm, trace_id
        """,
        [rules.n_plus_one_min_repeats],
    ).fetchall()
    findings = []
    for endpoint, norm, group in _recurring_groups(rows, mix, rules):
        calls = statistics.median(r[3] for r in group)
        total = statistics.median(r[4] for r in group)
        share = statistics.median(r[4] / r[5] for r in group if r[5])
        if total < rules.n_plus_one_min_total_ms and share < rules.n_plus_one_min_share:
            continue
        per_call = total / calls
        findings.append(
            _finding(
                FindingType.N_PLUS_ONE,
                endpoint,
                share,
                total - per_call,
                mix,
                f"{endpoint}: the same query runs {calls:g} times one after another per request "
                f"({total:.1f} ms, {share:.0%} of the request); one query with IN (...) would do",
                {
                    "key": norm,
                    "statement": norm,
                    "calls_per_request": calls,
                    "window_ms": round(total, 3),
                    "db_ms": round(statistics.median(r[6] for r in group), 3),
                    "share_of_request": round(share, 4),
                    "traces": len(group),
                    "trace_ids": [r[2] for r in group[:_EXAMPLE_TRACES]],
                },
            )
        )
    return findings


_MAX_GROUP = 6  # statements in a repeated group; longer blocks are rare and costly to search for


def repeated_block(sequence: list[str], min_repeats: int) -> tuple[int, int, int] | None:
    """(start, block length, repeats) of the longest run of a block of 2 or more distinct statements repeated
    back to back at least ``min_repeats`` times (A B A B A B ...), or None."""
    best: tuple[int, int, int] | None = None
    for size in range(2, _MAX_GROUP + 1):
        for start in range(len(sequence) - size * min_repeats + 1):
            block = sequence[start : start + size]
            if len(set(block)) != size:
                continue
            repeats = 1
            while sequence[start + repeats * size : start + (repeats + 1) * size] == block:
                repeats += 1
            if repeats >= min_repeats and (best is None or repeats * size > best[1] * best[2]):
                best = (start, size, repeats)
    return best


def repeated_query_groups(con: duckdb.DuckDBPyConnection, mix: Traffic, rules: Detection) -> list[Finding]:
    """MN+1: a group of statements run once per item, item after item (for each order: its product, then its
    shipment), under one parent. One batched query per statement of the group, before the loop, would do."""
    # Only parents under which two statements or more each repeat often enough can hold a group: the plain
    # N+1s (one statement repeated) never reach the search below.
    parents = con.execute(
        """
        WITH repeats AS (
            SELECT pid, norm FROM sp WHERE norm IS NOT NULL AND on_path GROUP BY ALL HAVING count(*) >= $min
        ), candidates AS (
            SELECT pid FROM repeats GROUP BY ALL HAVING count(*) >= 2
        )
        SELECT request_endpoint, any_value(trace_id) AS trace_id, list(norm ORDER BY start_ns),
               list(start_ns ORDER BY start_ns), list(end_ns ORDER BY start_ns), any_value(root_ms)
        FROM sp SEMI JOIN candidates USING (pid)
        WHERE norm IS NOT NULL AND on_path
        GROUP BY request_endpoint, pid
        ORDER BY request_endpoint, trace_id
        """,
        {"min": rules.n_plus_one_min_repeats},
    ).fetchall()
    rows: Rows = []
    for endpoint, trace_id, norms, starts, ends, root_ms in parents:
        found = repeated_block(norms, rules.n_plus_one_min_repeats)
        if found is not None:
            start, size, repeats = found
            window = (ends[start + size * repeats - 1] - starts[start]) / 1e6
            rows.append((endpoint, " ; ".join(norms[start : start + size]), trace_id, repeats, window, root_ms))
    findings = []
    for endpoint, key, group in _recurring_groups(sorted(rows, key=lambda r: (r[0], r[1], r[2])), mix, rules):
        repeats = statistics.median(r[3] for r in group)
        total = statistics.median(r[4] for r in group)
        share = statistics.median(r[4] / r[5] for r in group if r[5])
        if total < rules.n_plus_one_min_total_ms and share < rules.n_plus_one_min_share:
            continue
        statements = key.split(" ; ")
        findings.append(
            _finding(
                FindingType.N_PLUS_ONE,
                endpoint,
                share,
                total * (1 - 1 / repeats),
                mix,
                f"{endpoint}: a group of {len(statements)} queries runs {repeats:g} times one after another per "
                f"request, once per item ({total:.1f} ms, {share:.0%} of the request); one query per statement "
                "with IN (...), before the loop, would do",
                {
                    "key": key,
                    "statement": statements[0],
                    "statements": statements,
                    "calls_per_request": repeats,
                    "window_ms": round(total, 3),
                    "share_of_request": round(share, 4),
                    "traces": len(group),
                    "trace_ids": [r[2] for r in group[:_EXAMPLE_TRACES]],
                },
            )
        )
    return findings


def _sequential(con: duckdb.DuckDBPyConnection, what: str, key: str, min_calls_sql: str) -> Rows:
    return con.execute(
        f"""
        SELECT request_endpoint, string_agg(DISTINCT {key}, ' | ' ORDER BY {key}) AS k,
               any_value(trace_id) AS trace_id, count(*) AS n, sum(duration_ms) AS total,
               max(duration_ms) AS longest, any_value(root_ms)
        FROM sp WHERE {what} AND on_path
        GROUP BY request_endpoint, pid HAVING {min_calls_sql}
        ORDER BY request_endpoint, k, trace_id
        """
    ).fetchall()


def sequential_calls(con: duckdb.DuckDBPyConnection, mix: Traffic, rules: Detection) -> list[Finding]:
    """Outbound calls to different services made one after another under one parent."""
    findings = []
    rows = _sequential(con, "dest IS NOT NULL", "dest", "count(DISTINCT dest) >= 2")
    findings += _savings(rows, mix, rules, FindingType.SEQUENTIAL_CALLS, rules.sequential_min_saved_ms, "calls")
    rows = _sequential(con, "norm IS NOT NULL", "norm", "count(DISTINCT norm) >= 2")
    findings += _savings(
        rows, mix, rules, FindingType.SEQUENTIAL_QUERIES, rules.sequential_queries_min_saved_ms, "queries"
    )
    return findings


def _savings(
    rows: Rows,
    mix: Traffic,
    rules: Detection,
    kind: FindingType,
    min_saved_ms: float,
    noun: str,
) -> list[Finding]:
    findings = []
    for endpoint, key, group in _recurring_groups(rows, mix, rules):
        saved = statistics.median(r[4] - r[5] for r in group)
        share = statistics.median((r[4] - r[5]) / r[6] for r in group if r[6])
        if saved < min_saved_ms or share < rules.sequential_min_share:
            continue
        calls = statistics.median(r[3] for r in group)
        findings.append(
            _finding(
                kind,
                endpoint,
                share,
                saved,
                mix,
                f"{endpoint}: {calls:g} {noun} run one after another ({key}); at once they would save "
                f"{saved:.1f} ms per request ({share:.0%})",
                {
                    "key": key,
                    "targets": key.split(" | "),
                    "calls_per_request": calls,
                    "total_ms": round(statistics.median(r[4] for r in group), 3),
                    "saved_ms": round(saved, 3),
                    "share_of_request": round(share, 4),
                    "traces": len(group),
                    "trace_ids": [r[2] for r in group[:_EXAMPLE_TRACES]],
                },
            )
        )
    return findings


def n_plus_one_api(con: duckdb.DuckDBPyConnection, mix: Traffic, rules: Detection) -> list[Finding]:
    """Many calls to one resource template under one parent: a batch endpoint would do."""
    rows = con.execute(
        """
        SELECT request_endpoint, dest, any_value(trace_id) AS trace_id, count(*) AS n, sum(duration_ms),
               any_value(root_ms), sum(duration_ms) FILTER (WHERE on_path)
        FROM sp WHERE dest IS NOT NULL
        GROUP BY request_endpoint, dest, pid HAVING count(*) >= ?
        ORDER BY request_endpoint, dest, trace_id
        """,
        [rules.n_plus_one_api_min_calls],
    ).fetchall()
    findings = []
    for endpoint, dest, group in _recurring_groups(rows, mix, rules):
        calls = statistics.median(r[3] for r in group)
        on_path = statistics.median((r[6] or 0.0) for r in group)
        share = statistics.median((r[6] or 0.0) / r[5] for r in group if r[5])
        findings.append(
            _finding(
                FindingType.N_PLUS_ONE_API,
                endpoint,
                share,
                on_path * (1 - 1 / calls),
                mix,
                f"{endpoint}: {calls:g} calls to {dest} per request; one batched call would do",
                {
                    "key": dest,
                    "destination": dest,
                    "calls_per_request": calls,
                    "traces": len(group),
                    "share_of_request": round(share, 4),
                    "trace_ids": [r[2] for r in group[:_EXAMPLE_TRACES]],
                },
            )
        )
    return findings


def _long_waits(rows: Rows, rules: Detection) -> Rows | None:
    """The rows (wait ms at index 3, the whole call or request at 4) whose wait is long, in absolute terms
    and as a share of the whole; None when fewer than ``min_traces`` waited so."""
    waiting = [r for r in rows if r[3] >= rules.queue_min_wait_ms and r[3] >= rules.queue_min_wait_share * r[4]]
    return waiting if len(waiting) >= rules.min_traces else None


def _held_waits(
    waiting: Rows, served: list[tuple[int, int]], wait_ns: Callable[[Any], tuple[int, int]], rules: Detection
) -> Rows | None:
    """The waits (``wait_ns``: from the call to its turn) during which the service was held: serving some at
    the moment the wait passed ``queue_min_wait_ms``, and no more than that just before the call's turn (see
    ``concurrency``). None unless ``min_traces`` of them, and ``queue_min_held_share`` of the waits, were."""
    in_progress = InProgress(served)
    held = []
    for row in waiting:
        called, served_from = wait_ns(row)
        then = in_progress.at(called + round(rules.queue_min_wait_ms * 1e6))
        if then >= 1 and then >= in_progress.at(served_from - 1):
            held.append(row)
    enough = len(held) >= rules.min_traces and len(held) >= rules.queue_min_held_share * len(waiting)
    return held if enough else None


def queueing(con: duckdb.DuckDBPyConnection, mix: Traffic, rules: Detection) -> list[Finding]:
    """Calls that wait before their service starts serving them: a connection pool or worker limit.

    The wait is the time from the caller's client span start to the start of the service's server span under
    it; it grows with concurrency when a pool is too small, whatever the service's own speed.
    """
    rows = con.execute(
        """
        SELECT c.request_endpoint, c.dest, c.trace_id, (d.start_ns - c.start_ns) / 1e6 AS wait_ms,
               c.duration_ms, d.duration_ms, d.service, c.start_ns, c.end_ns, d.start_ns, d.end_ns
        FROM sp c JOIN sp d ON d.pid = c.sid AND d.kind = 'server'
        WHERE c.dest IS NOT NULL
        ORDER BY c.request_endpoint, c.dest, c.trace_id
        """
    ).fetchall()
    findings = []
    for (endpoint, dest), calls in _group(rows).items():
        waiting = _long_waits(calls, rules)
        if waiting is None:
            continue
        served = [(r[9], r[10]) for r in calls]
        served_at_once = max_concurrency(served)
        called_at_once = max_concurrency([(r[7], r[8]) for r in calls])
        if served_at_once * 2 >= called_at_once:
            # It served half or more of what was called at once: a host whose CPU others take gets that far
            # too (CI: 8 of 16 calls to an asyncio service on a shared core), so no limit is claimed.
            continue
        held = _held_waits(waiting, served, lambda r: (r[7], r[9]), rules)
        if held is None:
            continue  # it served more and more while they waited: getting to them (a busy host), not held
        all_waits, waiting = len(waiting), held
        wait = statistics.median(r[3] for r in waiting)
        roots = {r[2]: r for r in waiting}
        share = statistics.median(r[3] / r[4] for r in waiting if r[4])
        findings.append(
            _finding(
                FindingType.SATURATION,
                endpoint,
                share,
                wait,
                mix,
                f"{endpoint}: calls to {dest} waited {wait:.1f} ms (median of {len(waiting)}) before "
                f"{calls[0][6]} started serving them: {called_at_once} were made at once, it served at most "
                f"{served_at_once} at a time and no more while they waited ({len(waiting)} of {all_waits} "
                "waits): a connection pool or worker limit",
                {
                    "key": dest,
                    "destination": dest,
                    "service": calls[0][6],
                    "median_wait_ms": round(wait, 3),
                    "waiting_calls": len(waiting),
                    "calls": len(calls),
                    "max_called_at_once": called_at_once,
                    "max_served_at_once": served_at_once,
                    "held_waits": len(waiting),
                    "long_waits": all_waits,
                    "share_of_call": round(share, 4),
                    "trace_ids": list(roots)[:_EXAMPLE_TRACES],
                },
            )
        )
    return findings


def pool_waits(con: duckdb.DuckDBPyConnection, mix: Traffic, rules: Detection) -> list[Finding]:
    """Requests that wait inside the service before their first statement: a connection pool too small.

    The wait is the time from the request's start (or the end of the outbound calls made before it) to its
    first statement. A pool shows in what runs at once: however many requests were in progress, at most the
    pool's size of them were past that wait (a connection is held from the first statement to the end). A
    busy CPU or event loop also delays first statements, but lets every request on once it is served: held
    windows then overlap as much as the requests do, or more and more hold one while requests wait
    (``concurrency``), and nothing is raised.
    """
    rows = con.execute(
        """
        WITH firsts AS (
            SELECT s.trace_id, any_value(s.db_system) AS db_system, min(s.start_ns) AS first_ns
            FROM sp s WHERE s.norm IS NOT NULL GROUP BY s.trace_id
        ), before AS (
            SELECT f.trace_id, max(c.end_ns) AS calls_end_ns
            FROM firsts f JOIN sp c ON c.trace_id = f.trace_id AND c.dest IS NOT NULL AND c.end_ns <= f.first_ns
            GROUP BY f.trace_id
        )
        SELECT r.endpoint, coalesce(f.db_system, 'database'), r.trace_id,
               (f.first_ns - greatest(r.start_ns, coalesce(b.calls_end_ns, r.start_ns))) / 1e6 AS wait_ms,
               r.root_ms, r.start_ns, r.start_ns + CAST(r.root_ms * 1e6 AS BIGINT) AS end_ns, f.first_ns
        FROM req r JOIN firsts f USING (trace_id) LEFT JOIN before b USING (trace_id)
        ORDER BY r.endpoint, r.trace_id
        """
    ).fetchall()
    findings = []
    for (endpoint, system), requests in _group(rows).items():
        waiting = _long_waits(requests, rules)
        if waiting is None:
            continue
        in_progress = max_concurrency([(r[5], r[6]) for r in requests])
        held_windows = [(r[7], r[6]) for r in requests]
        holding = max_concurrency(held_windows)
        if holding * 2 >= in_progress:
            # Half or more of those in progress were past their wait at once: a busy CPU gets that far too
            # (CI: 8 of 16 of the library's fast requests, two processes of threads on one shared core).
            continue
        held = _held_waits(waiting, held_windows, lambda r: (r[7] - round(r[3] * 1e6), r[7]), rules)
        if held is None:
            continue  # more and more held a connection while they waited: not a pool holding them back
        all_waits, waiting = len(waiting), held
        wait = statistics.median(r[3] for r in waiting)
        share = statistics.median(r[3] / r[4] for r in waiting if r[4])
        destination = f"{system} connections"
        findings.append(
            _finding(
                FindingType.SATURATION,
                endpoint,
                share,
                wait,
                mix,
                f"{endpoint}: requests waited {wait:.1f} ms (median of {len(waiting)}) inside the service before "
                f"their first statement: {in_progress} were in progress at once, at most {holding} held a "
                f"{system} connection, and no more while they waited ({len(waiting)} of {all_waits} waits): a "
                "connection pool or worker limit",
                {
                    "key": f"pool:{system}",
                    "destination": destination,
                    "service": "",
                    "median_wait_ms": round(wait, 3),
                    "waiting_calls": len(waiting),
                    "calls": len(requests),
                    "max_called_at_once": in_progress,
                    "max_served_at_once": holding,
                    "held_waits": len(waiting),
                    "long_waits": all_waits,
                    "share_of_call": round(share, 4),
                    "where": "inside the service",
                    "trace_ids": [r[2] for r in waiting[:_EXAMPLE_TRACES]],
                },
            )
        )
    return findings


def dominant_statements(con: duckdb.DuckDBPyConnection, mix: Traffic, rules: Detection) -> list[StatementCandidate]:
    """Per endpoint, statements taking ``min_statement_share`` of its requests' critical path (over all of its
    traced requests): the ones whose plan is worth reading."""
    rows = con.execute(
        """
        WITH per_request AS (
            SELECT request_endpoint AS endpoint, norm, any_value(db_system) AS db_system, trace_id,
                   count(*) AS calls, sum(duration_ms) AS ms, any_value(root_ms) AS root_ms
            FROM sp WHERE norm IS NOT NULL AND on_path GROUP BY ALL
        )
        SELECT endpoint, norm, any_value(db_system), sum(calls) AS calls, median(ms / calls), sum(ms),
               list(trace_id ORDER BY ms DESC)[1:3]
        FROM per_request GROUP BY endpoint, norm
        """
    ).fetchall()
    root_ms = dict(con.execute("SELECT endpoint, sum(root_ms) FROM req GROUP BY endpoint").fetchall())
    found = []
    for endpoint, norm, system, calls, median_ms, total_ms, traces in rows:
        share = total_ms / root_ms[endpoint] if root_ms.get(endpoint) else 0.0
        if share >= rules.min_statement_share:
            requests = mix.requests.get(endpoint, 1)
            found.append(
                StatementCandidate(endpoint, norm, system or "", calls / requests, median_ms, share, list(traces))
            )
    return sorted(found, key=lambda c: c.share, reverse=True)


def self_time_of_roots(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[float, float, list[str]]]:
    """Per endpoint: the median self time of its server span on the path (ms), its median share of the
    request, and example traces (the service's own work: not its queries, not its calls)."""
    rows = con.execute(
        """
        SELECT endpoint, median(self_ms), median(self_ms / nullif(root_ms, 0)), list(trace_id ORDER BY self_ms DESC)[1:3]
        FROM selft WHERE depth = 0 GROUP BY endpoint
        """
    ).fetchall()
    return {str(e): (float(ms), float(share or 0.0), list(traces)) for e, ms, share, traces in rows}


class Dependency(NamedTuple):
    """The outbound call an endpoint's requests wait on most: where its time goes when it is not its own."""

    dest: str
    median_ms: float
    """Per request, the median time on the critical path spent in calls to ``dest``."""
    share: float
    """That time's median share of the request."""


def slowest_dependency(con: duckdb.DuckDBPyConnection) -> dict[str, Dependency]:
    """Per endpoint, the destination of outbound calls that takes the most critical-path time per request."""
    rows = con.execute(
        """
        WITH per_request AS (
            SELECT request_endpoint AS endpoint, trace_id, dest, sum(duration_ms) AS ms, any_value(root_ms) AS root_ms
            FROM sp WHERE on_path AND kind = 'client' AND dest IS NOT NULL GROUP BY ALL
        ), per_dest AS (
            SELECT endpoint, dest, median(ms) AS ms, median(ms / nullif(root_ms, 0)) AS share
            FROM per_request GROUP BY ALL
        )
        SELECT endpoint, arg_max(dest, ms), max(ms), arg_max(share, ms) FROM per_dest GROUP BY endpoint
        """
    ).fetchall()
    return {str(e): Dependency(str(d), float(ms), float(share or 0.0)) for e, d, ms, share in rows}
