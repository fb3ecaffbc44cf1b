"""Closed executions already read, kept per workflow type as Parquet in Ratchet's home.

A closed execution's history never changes, so each is fetched from the server once: the next analysis of the
type lists and fetches only the executions closed since (each kept with the close time visibility listed). The files hold what the analyses read of the payloads (their
digests, sizes and, for plain JSON, their first 16 KB); delete the folder to forget them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ratchet.workflow_analytics.steps import Execution, PayloadFacts, Step

Key = tuple[str, str]  # workflow id and run id, as visibility lists them
_CLOSE = "key_close_time"  # as visibility listed it: what an incremental listing compares against
_TIME = pa.timestamp("us", tz="UTC")
_CLOSED = {"completed", "failed", "canceled", "terminated", "timed_out", "continued_as_new"}
_COMPACT_AFTER = 16  # files: with this many, the next write folds them into one


def _facts(value: dict[str, Any]) -> PayloadFacts:
    return PayloadFacts(**(value | {"tokens": tuple(value["tokens"] or ())}))


def _execution(row: dict[str, Any]) -> Execution:
    """An execution back from its row; fields added since the row was written (None or absent) get defaults."""
    steps = [
        Step(**(s | {"input": _facts(s["input"]), "result": _facts(s["result"]), "summary": s.get("summary") or ""}))
        for s in row["steps"]
    ]
    fields = {k: v for k, v in row.items() if k not in ("key_workflow_id", "key_run_id", _CLOSE, "steps", "input")}
    fields["search_attributes"] = fields.get("search_attributes") or "{}"
    return Execution(**fields, steps=steps, input=_facts(row["input"]))


def _row(key: Key, execution: Execution, closed_at: datetime | None = None) -> dict[str, Any]:
    return {"key_workflow_id": key[0], "key_run_id": key[1], _CLOSE: closed_at, **asdict(execution)}


def _closed_between(table: pa.Table, after: datetime | None, before: datetime) -> pa.Array:
    """Which rows visibility listed as closed after ``after`` (when given) and before ``before``."""
    if _CLOSE not in table.column_names:
        return pa.array([False] * table.num_rows)
    close = table[_CLOSE].cast(_TIME)
    mask = pc.less(close, pa.scalar(before, _TIME))
    if after is not None:
        mask = pc.and_(mask, pc.greater(close, pa.scalar(after, _TIME)))
    return pc.fill_null(mask, False)


class HistoryCache:
    """The executions of one workflow type read so far."""

    def __init__(self, folder: Path, workflow_type: str) -> None:
        self.folder = folder / re.sub(r"[^A-Za-z0-9_.-]", "_", workflow_type) / "executions"

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.parquet")) if self.folder.is_dir() else []

    def load(self, keys: set[Key]) -> dict[Key, Execution]:
        """The executions among ``keys`` read before."""
        found: dict[Key, Execution] = {}
        for path in self._files():
            table = pq.read_table(path)
            ids = zip(table["key_workflow_id"].to_pylist(), table["key_run_id"].to_pylist(), strict=True)
            wanted = [i for i, key in enumerate(ids) if key in keys]
            if wanted:
                for row in table.take(wanted).to_pylist():
                    found[(row["key_workflow_id"], row["key_run_id"])] = _execution(row)
        return found

    def newest_close(self) -> datetime | None:
        """The latest close time visibility listed for an execution kept; None when some execution was kept
        without one (by a workload run, or an older Ratchet), as the cache then cannot stand in for a listing."""
        newest: datetime | None = None
        for path in self._files():
            table = pq.read_table(path, columns=[_CLOSE]) if _CLOSE in pq.read_schema(path).names else None
            if table is None or table[_CLOSE].null_count:
                return None
            if table.num_rows:
                latest = pc.max(table[_CLOSE].cast(_TIME)).as_py()
                newest = latest if newest is None else max(newest, latest)
        return newest

    def count_closed(self, after: datetime | None, before: datetime) -> int:
        """How many executions kept closed after ``after`` (when given) and before ``before``."""
        count = 0
        for path in self._files():
            names = pq.read_schema(path).names
            table = pq.read_table(path, columns=[_CLOSE] if _CLOSE in names else ["key_run_id"])
            count += pc.sum(_closed_between(table, after, before)).as_py() or 0
        return count

    def load_closed(self, after: datetime | None, before: datetime, limit: int | None) -> list[tuple[Key, Execution]]:
        """The executions kept that closed after ``after`` (when given) and before ``before``, newest first,
        at most ``limit``."""
        rows: list[dict[str, Any]] = []
        for path in self._files():
            table = pq.read_table(path)
            rows += table.filter(_closed_between(table, after, before)).to_pylist()
        rows.sort(key=lambda row: row[_CLOSE], reverse=True)
        return [((row["key_workflow_id"], row["key_run_id"]), _execution(row)) for row in rows[:limit]]

    def remember_close_times(self, closed_at: dict[Key, datetime | None]) -> None:
        """Fill in the close times of executions kept without one (by an older Ratchet) from a listing."""
        for path in self._files():
            if _CLOSE in pq.read_schema(path).names and not pq.read_table(path, columns=[_CLOSE])[_CLOSE].null_count:
                continue
            table = pq.read_table(path)
            rows = [
                _row(key, _execution(row), row.get(_CLOSE) or closed_at.get(key))
                for row in table.to_pylist()
                for key in [(row["key_workflow_id"], row["key_run_id"])]
            ]
            partial = self.folder / f".{uuid.uuid4().hex}.tmp"
            pq.write_table(pa.Table.from_pylist(rows), partial)
            partial.replace(path)

    def load_all(self) -> list[Execution]:
        """Every execution kept, in no particular order."""
        return [_execution(row) for path in self._files() for row in pq.read_table(path).to_pylist()]

    def add(self, executions: dict[Key, Execution], closed_at: dict[Key, datetime | None] | None = None) -> None:
        """Keep ``executions`` (closed ones only: an open one's history still grows), with the close times
        visibility listed for them where given."""
        closed = {k: e for k, e in executions.items() if e.status in _CLOSED}
        files = self._files()
        compact = len(files) >= _COMPACT_AFTER
        if not closed and not compact:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = [_row(k, e, (closed_at or {}).get(k)) for k, e in closed.items()]
        if compact:
            # Through the current dataclasses: rows written before a field was added get it (Arrow takes the
            # columns of a file from its first row, so a row without it would drop it for all).
            rows += [
                _row((row["key_workflow_id"], row["key_run_id"]), _execution(row), row.get(_CLOSE))
                for path in files
                for row in pq.read_table(path).to_pylist()
            ]
        if rows:
            partial = self.folder / f".{uuid.uuid4().hex}.tmp"
            pq.write_table(pa.Table.from_pylist(rows), partial)
            partial.replace(self.folder / f"{uuid.uuid4().hex}.parquet")
        if compact:
            for path in files:
                path.unlink()
