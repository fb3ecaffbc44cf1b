"""Lengths of time as people read them, for the report's tables and figures alike."""

from __future__ import annotations


def format_seconds(seconds: float) -> str:
    """A length of time as people read it: 4.2 s, 3m 05s, 1h 02m."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
