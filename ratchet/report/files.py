"""Report files: safe names (they are written whole by ``ratchet.files.write_atomically``)."""

from __future__ import annotations

import re

# Campaign ids may come from a person (--id); anything outside this set could leave the reports folder.
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def report_stem(campaign_id: str) -> str:
    """The file name (without extension) of a campaign's report: its id, made safe as a single file name."""
    return _UNSAFE_FILENAME.sub("_", campaign_id).lstrip(".") or "campaign"
