"""Where a campaign's time goes: activity by activity, and the total per activity type.

    python -m bench.campaign_timeline HISTORY.json[.gz] [--all]

HISTORY is a workflow history as `temporal workflow show --output json` writes it, or as the tests keep it with
``RATCHET_RECORD_HISTORIES=DIR``. Gates (waiting for a person) are shown as the time between activities.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _time(event: dict) -> datetime:
    return datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))


def activity_spans(history: dict) -> list[tuple[str, float, float]]:
    """(activity type, start offset s, duration s) for every activity that closed, in order of scheduling."""
    events = history["events"]
    start = _time(events[0])
    scheduled: dict[str, tuple[str, datetime]] = {}
    spans = []
    for event in events:
        attributes = event.get("activityTaskScheduledEventAttributes")
        if attributes is not None:
            scheduled[event["eventId"]] = (attributes["activityType"]["name"], _time(event))
            continue
        for kind in ("Completed", "Failed", "TimedOut", "Canceled"):
            closed = event.get(f"activityTask{kind}EventAttributes")
            if closed is not None:
                name, at = scheduled[closed["scheduledEventId"]]
                spans.append((name, (at - start).total_seconds(), (_time(event) - at).total_seconds()))
    return sorted(spans, key=lambda span: span[1])


def main(argv: list[str]) -> None:
    path = Path(argv[0])
    raw = path.read_bytes()
    history = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    spans = activity_spans(history)
    events = history["events"]
    total_s = (_time(events[-1]) - _time(events[0])).total_seconds()
    console = Console()
    if "--all" in argv:
        for name, at, took in spans:
            console.print(f"{at:8.1f} {took:7.1f}  {name}")
    per_type: dict[str, list[float]] = defaultdict(list)
    for name, _, took in spans:
        per_type[name].append(took)
    table = Table(title=f"{path.name}: {total_s:.1f} s from start to close")
    for column in ("activity", "calls", "total s", "share"):
        table.add_column(column, justify="left" if column == "activity" else "right")
    for name, took in sorted(per_type.items(), key=lambda item: -sum(item[1])):
        table.add_row(name, str(len(took)), f"{sum(took):.1f}", f"{sum(took) / total_s:.0%}")
    console.print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
