"""What the target answers, as a client reads it, and how two sets of answers differ.

An answer is kept as its status, its content type and a normal form of its body: JSON without the volatile
keys (sorted, indented: a diff of it reads well), an HTML page by its visible text (markup, scripts and
styles may change; what a visitor reads may not), anything else as the SHA-256 of its decoded bytes.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from html.parser import HTMLParser
from typing import Any

from pydantic import BaseModel

_DIFF_LINES = 12


class Answer(BaseModel):
    """One request's answer in normal form."""

    request: str
    status: int
    content_type: str
    body: str


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "noscript", "head"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "head") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def _without(value: Any, volatile: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, volatile) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [_without(v, volatile) for v in value]
    return value


def normal_body(content_type: str, body: bytes, volatile: set[str]) -> str:
    """The body as the comparison sees it."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return json.dumps(_without(json.loads(body), volatile), indent=1, sort_keys=True, ensure_ascii=False)
        except ValueError:
            pass
    if kind == "text/html":
        parser = _VisibleText()
        parser.feed(body.decode("utf-8", "replace"))
        return re.sub(r"\s+", " ", " ".join(parser.parts)).strip()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def answer(request: str, status: int, content_type: str, body: bytes, volatile: set[str]) -> Answer:
    return Answer(
        request=request,
        status=status,
        content_type=content_type.split(";")[0].strip().lower(),
        body=normal_body(content_type, body, volatile),
    )


def differences(before: list[Answer], after: list[Answer]) -> list[str]:
    """What changed, one line per request that answers differently (with a short diff of the body)."""
    found = []
    later = {a.request: a for a in after}
    for old in before:
        new = later.get(old.request)
        if new is None:
            found.append(f"{old.request}: not answered any more")
        elif (old.status, old.content_type) != (new.status, new.content_type):
            found.append(f"{old.request}: {old.status} {old.content_type} became {new.status} {new.content_type}")
        elif old.body != new.body:
            diff = difflib.unified_diff(
                old.body.splitlines(), new.body.splitlines(), "before", "after", lineterm="", n=1
            )
            lines = [line for line in list(diff)[2:] if not line.startswith("@@")][:_DIFF_LINES]
            found.append(f"{old.request}: the body changed: " + " | ".join(lines))
    return found
