"""Secrets that target and playbook files take from the environment, and keeping them out of Temporal.

A file says ``${SHOP_DATABASE_URL}``; the value comes from the environment of the process that needs it, or from
the dotenv file named by ``RATCHET_SECRETS_FILE``. A referenced name is a secret when it is named like one
(``SECRET_NAME``: passwords, tokens, keys, DSNs, database URLs, webhooks; ``RATCHET_SECRET_NAMES`` adds a
pattern), or when the secrets file holds it. Secrets are remembered in this process (``remember``), and so is
every ``${NAME}`` that arrives in a payload: the payload codec (``ratchet.temporal.codecs``) writes ``${NAME}`` in
place of such a value in everything it sends, and puts the value back in what it receives from its own
environment. So the workflow history, the Temporal UI and its API hold references, never the values, and each
worker resolves them from its own environment. Other references (a base URL, a port) are expanded as written:
a worker elsewhere needs no copy of them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from pathlib import Path

from dotenv import dotenv_values

# Shorter values are common words and numbers ("8000", "postgres"): written as ${NAME} wherever they appear in
# a payload, they would garble unrelated text for a reader without the value. They are not masked.
MIN_MASKED_LENGTH = 6
REFERENCE = re.compile(r"\$\{(\w+)\}")
REFERENCE_IN_JSON = re.compile(REFERENCE.pattern.encode())  # the same, over a payload's bytes
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL|DSN|DATABASE_URL|WEBHOOK|AUTH", re.IGNORECASE)

_names: set[str] = set()
_lock = threading.Lock()


def holds_reference(value: str) -> bool:
    """Whether ``value`` holds a secret's ``${NAME}``: decoded from a payload in a process without the secret
    (a workflow worker needs none). Files never leave one: they are expanded when read."""
    return REFERENCE.search(value) is not None


def _secrets_file() -> dict[str, str | None]:
    """``RATCHET_SECRETS_FILE``'s entries ({} without one), read again only when the file changes: the codec
    asks for every payload."""
    name = os.environ.get("RATCHET_SECRETS_FILE")
    if not name:
        return {}
    try:
        changed = Path(name).stat().st_mtime_ns
    except OSError:
        return {}
    return _read_secrets_file(name, changed)


@functools.lru_cache(maxsize=4)
def _read_secrets_file(name: str, changed: int) -> dict[str, str | None]:
    return dict(dotenv_values(name))


def value_of(name: str) -> str | None:
    """The value of ``name`` here: the environment first, then ``RATCHET_SECRETS_FILE``."""
    value = os.environ.get(name)
    return value if value is not None else _secrets_file().get(name)


def is_secret(name: str) -> bool:
    """Named like a secret, matched by ``RATCHET_SECRET_NAMES`` (a regular expression), or in the secrets file."""
    extra = os.environ.get("RATCHET_SECRET_NAMES")
    if SECRET_NAME.search(name) or (extra and re.search(extra, name)):
        return True
    return name in _secrets_file()


def remember(names: set[str]) -> None:
    """Of ``names``, the secrets: their values must not leave this process in a payload."""
    secret = {name for name in names if is_secret(name)}
    with _lock:
        _names.update(secret)


def remember_as_secret(names: set[str]) -> None:
    """Names that are secrets whatever they are called: the loader found their values in a credential field
    (a database URL, a webhook, a header) or holding a URL with a password, or they arrived as ``${NAME}`` (a
    sender masked them)."""
    with _lock:
        _names.update(names)


def too_short_to_mask() -> list[str]:
    """Remembered secrets whose values are too short to mask (MIN_MASKED_LENGTH): they travel as written."""
    with _lock:
        names = sorted(_names)
    return [name for name in names if (value := value_of(name)) and len(value) < MIN_MASKED_LENGTH]


def masked_values() -> list[tuple[str, str]]:
    """(name, value) of every remembered name with a value long enough to mask, the longest values first (a
    value inside another is replaced after it)."""
    with _lock:
        names = sorted(_names)
    pairs = [(name, value) for name in names if (value := value_of(name)) and len(value) >= MIN_MASKED_LENGTH]
    return sorted(pairs, key=lambda pair: -len(pair[1]))


def mask_text(text: str) -> str:
    """``text`` with every remembered value written as its ``${NAME}`` (for messages, logs and reports)."""
    for name, value in masked_values():
        text = text.replace(value, f"${{{name}}}")
    return text


def mask_json(data: bytes) -> bytes:
    """A JSON document with every remembered value (as JSON escapes it) written as its ``${NAME}``."""
    for name, value in masked_values():
        escaped = json.dumps(value)[1:-1].encode()
        data = data.replace(escaped, f"${{{name}}}".encode())
    return data


def unmask_json(data: bytes) -> bytes:
    """A JSON document with each ``${NAME}`` whose value is known here put back (JSON-escaped); the names are
    remembered, so what this process sends on is masked again. Unknown names stay as written."""
    found = {match.group(1).decode() for match in REFERENCE_IN_JSON.finditer(data)}
    if not found:
        return data
    remember_as_secret(found)
    for name in found:
        value = value_of(name)
        if value is not None and len(value) >= MIN_MASKED_LENGTH:
            data = data.replace(f"${{{name}}}".encode(), json.dumps(value)[1:-1].encode())
    return data


class MaskingFilter(logging.Filter):
    """Writes remembered values as their ``${NAME}`` in log records, tracebacks included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        return True


def mask_logs() -> None:
    """Mask remembered values in everything this process logs (its root handlers; a default one if none)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING)
    for handler in root.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
