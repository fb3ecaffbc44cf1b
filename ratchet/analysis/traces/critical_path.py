"""The critical path of every request in a run's spans, computed in DuckDB (no Python loop over spans).

A request's critical path starts at its root (the service's server span) and, recursively, goes into the
children that delay their parent: a child is on its parent's path when no sibling that overlaps its end
finishes later (Jaeger's "last-finishing child", then the children that end before it starts). Children on
a path are therefore disjoint, and a span's self time on the path is its duration minus theirs: only what is
on the path can make the request faster.

``annotate(con, source)`` creates the temporary tables the detectors read:

- ``req``: one row per request (root span): trace_id, span_id, endpoint, service, root_ms.
- ``sp``: every span of a request with ``on_path``, ``root_ms``, ``depth`` and ``norm`` (its statement,
  normalized) and ``dest`` (method, host and path template of an outbound call).
"""

from __future__ import annotations

import re
from functools import lru_cache

import duckdb

from ratchet.database.statements import normalize_statement, reads_the_catalog

_MAX_DEPTH = 32
# Path segments that are values, not names: numbers, uuids, long hex ids.
_VALUE_SEGMENT = re.compile(r"^(\d+|[0-9a-fA-F-]{32,36}|[0-9a-fA-F]{16,})$")


@lru_cache(maxsize=4096)
def path_template(url: str) -> str:
    """``http://host:port/a/123/b?x=1`` → ``host:port/a/{id}/b``: calls to the same resource group together."""
    rest = url.split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0]
    host, _, path = rest.partition("/")
    segments = ["{id}" if _VALUE_SEGMENT.match(s) else s for s in path.split("/")]
    return host + "/" + "/".join(segments)


def _normalize(statement: str, db_system: str | None) -> str | None:
    """The statement as detectors group it; None for the database's own catalog (never a finding)."""
    if reads_the_catalog(statement):
        return None
    dialect = "postgresql" if db_system in ("postgresql", "postgres") else "sqlite"
    return normalize_statement(statement, dialect).text  # type: ignore[arg-type]


def annotate(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Build ``req`` and ``sp`` from the spans in ``source`` (a table, view or ``read_parquet(...)``).

    Spans without an endpoint (not started by the run's load) are left out.
    """
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE s0 AS
        SELECT trace_id, span_id, parent_span_id, name, kind, service, start_ns, end_ns, duration_ms, status,
               http_method, http_status, url, server_address, db_system, statement, endpoint,
               -- 64-bit keys: joins and partitions on them are several times faster than on hex strings
               hash(trace_id, span_id) AS sid, hash(trace_id, parent_span_id) AS pid
        FROM {source} WHERE endpoint IS NOT NULL
        """
    )
    # Roots: server spans whose parent is not in the trace (the load generator's remote parent).
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE req AS
        SELECT s.trace_id, s.span_id, s.sid, s.endpoint, s.service, s.duration_ms AS root_ms, s.status, s.start_ns
        FROM s0 s ANTI JOIN s0 p ON p.sid = s.pid
        WHERE s.kind = 'server'
        """
    )
    # Covered: a sibling that overlaps this span's end finishes later (so this span delays nobody). On the
    # narrow columns only: a window over the whole rows costs more in copying them than in sorting.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE cov AS
        SELECT sid, pid, coalesce(min(start_ns) OVER (
                    PARTITION BY pid ORDER BY end_ns DESC, start_ns DESC, sid
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) < end_ns, false) AS covered
        FROM s0
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE walk AS
        WITH RECURSIVE tree(sid, root_sid, on_path, depth) AS (
            SELECT sid, sid, true, 0 FROM req
            UNION ALL
            SELECT c.sid, t.root_sid, t.on_path AND NOT c.covered, t.depth + 1
            FROM cov c JOIN tree t ON c.pid = t.sid
            WHERE t.depth < {_MAX_DEPTH}
        )
        SELECT * FROM tree
        """
    )
    statements = con.execute(
        "SELECT DISTINCT statement, db_system FROM s0 WHERE statement IS NOT NULL AND statement <> ''"
    ).fetchall()
    con.execute("CREATE OR REPLACE TEMP TABLE norms (statement VARCHAR, db_system VARCHAR, norm VARCHAR)")
    if statements:
        con.executemany(
            "INSERT INTO norms VALUES (?, ?, ?)", [(sql, system, _normalize(sql, system)) for sql, system in statements]
        )
    urls = con.execute("SELECT DISTINCT url FROM s0 WHERE url IS NOT NULL AND kind = 'client'").fetchall()
    con.execute("CREATE OR REPLACE TEMP TABLE dests (url VARCHAR, dest VARCHAR)")
    if urls:
        con.executemany("INSERT INTO dests VALUES (?, ?)", [(url, path_template(url)) for (url,) in urls])
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE sp AS
        SELECT s.*, w.on_path, w.depth, r.root_ms, r.endpoint AS request_endpoint, n.norm,
               CASE WHEN d.dest IS NOT NULL THEN coalesce(s.http_method, 'GET') || ' ' || d.dest END AS dest
        FROM s0 s
        JOIN walk w ON w.sid = s.sid
        JOIN req r ON r.sid = w.root_sid
        LEFT JOIN norms n ON n.statement = s.statement AND n.db_system IS NOT DISTINCT FROM s.db_system
        LEFT JOIN dests d ON d.url = s.url AND s.kind = 'client'
        """
    )
    con.execute("DROP TABLE s0; DROP TABLE cov; DROP TABLE walk")


def self_time(con: duckdb.DuckDBPyConnection) -> None:
    """``selft``: per on-path span, its self time (its duration minus its on-path children's)."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE selft AS
        WITH children AS (SELECT pid, sum(duration_ms) AS ms FROM sp WHERE on_path GROUP BY pid)
        SELECT p.trace_id, p.span_id, p.request_endpoint AS endpoint, p.depth, p.kind, p.service, p.name,
               p.duration_ms, p.root_ms, greatest(p.duration_ms - coalesce(c.ms, 0), 0) AS self_ms
        FROM sp p LEFT JOIN children c ON c.pid = p.sid
        WHERE p.on_path
        """
    )
