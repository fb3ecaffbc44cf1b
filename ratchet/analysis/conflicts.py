"""Which levers must never be applied in the same trial: those that touch the same thing.

What a lever touches is read from what it does: the indexes and tables its SQL creates, alters or drops, the
flags (top-level JSON keys) its HTTP calls set at one address, the programs its commands run with their
arguments; and the ``resources`` the target declares it changes or restarts (a service two control scripts both
restart, which no command line shows). Two levers touching the same thing would undo or blur each other, and a trial with both could
not say which one gave what; a target may also declare conflicts it knows of (``conflicts_with``).
"""

from __future__ import annotations

import re

from ratchet.config.target import HttpLever, Lever, ShellLever, SqlLever

_SQL_OBJECT = re.compile(
    r"\b(?:CREATE|DROP|ALTER|REINDEX)\s+(?:UNIQUE\s+)?(INDEX|TABLE|VIEW|MATERIALIZED\s+VIEW)\s+"
    r"(?:CONCURRENTLY\s+)?(?:IF\s+(?:NOT\s+)?EXISTS\s+)?\"?([\w.]+)\"?",
    re.I,
)
_SQL_SETTING = re.compile(r"\b(?:SET|ALTER\s+SYSTEM\s+SET)\s+(\w+)|\bPRAGMA\s+(\w+)", re.I)


def touches(lever: Lever) -> set[str]:
    """What applying the lever changes, as comparable names ("index ix_a", "flag http://x/admin/flags gzip"),
    with the resources the target says it changes or restarts."""
    return {f"resource {name}" for name in lever.resources} | _read_from_actions(lever)


def _read_from_actions(lever: Lever) -> set[str]:
    if isinstance(lever, SqlLever):
        found = set()
        for statement in lever.apply:
            found |= {f"{kind.split()[-1].lower()} {name.lower()}" for kind, name in _SQL_OBJECT.findall(statement)}
            found |= {f"setting {(a or b).lower()}" for a, b in _SQL_SETTING.findall(statement)}
        return found
    if isinstance(lever, HttpLever):
        found = set()
        for action in lever.apply:
            keys = action.json_body.keys() if isinstance(action.json_body, dict) else [""]
            found |= {f"flag {action.method} {action.url} {key}".rstrip() for key in keys}
        return found
    if isinstance(lever, ShellLever):
        return {"command " + " ".join(action.argv) for action in lever.apply}
    return set()


def conflict(a: Lever, b: Lever) -> str:
    """Why ``a`` and ``b`` may not be applied together ("" when they may)."""
    if a.name == b.name:
        return ""
    if b.name in a.conflicts_with or a.name in b.conflicts_with:
        return "the target declares they conflict"
    shared = sorted(touches(a) & touches(b))
    return f"both change {shared[0]}" if shared else ""
