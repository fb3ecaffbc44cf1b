"""The shapes the span decoder (ratchet.traces.wire) reads and writes: its constants, the tuples of arrays it
returns, and the promoted keys in the arrays it reads. Nothing here imports numba: the receiver reads these
beside the decoder compiled ahead of time (ratchet.traces.wire_aot) without loading the compiler.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# An attribute value's type: AnyValue's oneof numbers for the three this code handles (4 double, 5 array,
# 6 map and 7 bytes are not), 0 for no value.
NONE, STRING, BOOL, INT = 0, 1, 2, 3
KINDS, STATUSES = 6, 3  # SPAN_KINDS and STATUS_CODES: a value past them reads as the first

# Columns of Spans.numbers.
START, END, KIND, STATUS, HAS_PARENT = range(5)
NUMBERS = 5
# Text columns of Spans; promoted column c is TEXTS + c.
NAME_TEXT, JSON_TEXT, TEXTS = 0, 1, 2


FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


class Frame(NamedTuple):
    """Where each span of one export lies (``frame``)."""

    ok: bool
    """False when the export is not laid out as ``frame`` reads it (the other fields are then empty)."""
    starts: np.ndarray
    """Offset of each span's bytes."""
    ends: np.ndarray
    resource_of: np.ndarray
    """For each span, its ResourceSpans' position."""
    service_at: np.ndarray
    """Per ResourceSpans, where its service.name string lies …"""
    service_length: np.ndarray
    """… and its length in bytes; -1 when it has none (the service is "")."""


class Spans(NamedTuple):
    """What ``decode_spans`` made of every span: a row each, in the order of the spans."""

    odd: np.ndarray
    """Per span: left to the caller (malformed, or a case this code does not handle); its row is empty."""
    trace_ids: np.ndarray
    """32 hex digits per span (uint8) …"""
    span_ids: np.ndarray
    """… 16 …"""
    parent_ids: np.ndarray
    """… and 16 (meaningless where the span has no parent: numbers[HAS_PARENT] says)."""
    numbers: np.ndarray
    """Per span, int64 columns START, END, KIND, STATUS (both mapped into range), HAS_PARENT."""
    integers: np.ndarray
    """Per span and promoted column, its value if the column holds integers (else 0)."""
    text: np.ndarray
    """The data of every text column (uint8): column t's in ``text[region[t]:region[t + 1]]``; t is
    NAME_TEXT, JSON_TEXT (the attributes no column took), or TEXTS + c for promoted column c (empty if it
    holds integers)."""
    region: np.ndarray
    offsets: np.ndarray
    """Per text column, Arrow's offsets (int64, into its region)."""
    valid: np.ndarray
    """Per text column or promoted column (TEXTS + c), per span: whether it has a value."""


class PromotedKeys(NamedTuple):
    """The attribute keys that fill columns, in the arrays the compiled code reads."""

    data: np.ndarray
    """Every key's UTF-8 bytes, one after the other."""
    offsets: np.ndarray
    """Key k is ``data[offsets[k]:offsets[k + 1]]``."""
    by_hash: np.ndarray
    """The key (k) whose ``_key_hash`` ends in i's bits is ``by_hash[i]``, -1 none (a power of 2 long, so
    that no two keys share a place)."""
    column: np.ndarray
    """Key k fills column ``column[k]`` …"""
    rank: np.ndarray
    """… unless a key of lower rank for the same column is there too."""
    numeric: np.ndarray
    """Per column: whether it holds integers (else strings)."""


def _fnv(key: bytes) -> int:
    """``_key_hash`` in Python."""
    h = FNV_OFFSET ^ len(key)
    for p in range(0, len(key), 8):
        h = ((h ^ int.from_bytes(key[p : p + 8], "little")) * FNV_PRIME) % 2**64
        h ^= h >> 29
    return h - 2**64 if h >= 2**63 else h


def promoted_keys(columns: dict[str, tuple[str, ...]], numeric: set[str]) -> PromotedKeys:
    """The compiled form of PROMOTED_ATTRIBUTES (column → its keys, preferred first)."""
    keys = [(c, r, key.encode()) for c, keys in enumerate(columns.values()) for r, key in enumerate(keys)]
    size = 16
    while len({_fnv(k) & (size - 1) for _, _, k in keys}) < len(keys):
        size *= 2
        if size > 1 << 16:  # two keys with one hash: a lookup by hash alone cannot tell them apart
            raise ValueError("promoted attribute keys whose hashes collide")
    by_hash = np.full(size, -1, np.int64)
    for k, (_, _, key) in enumerate(keys):
        by_hash[_fnv(key) & (size - 1)] = k
    return PromotedKeys(
        data=np.frombuffer(b"".join(k for _, _, k in keys) or b"\0", np.uint8),
        offsets=np.cumsum([0] + [len(k) for _, _, k in keys]).astype(np.int64),
        by_hash=by_hash,
        column=np.array([c for c, _, _ in keys], np.int64),
        rank=np.array([r for _, r, _ in keys], np.int64),
        numeric=np.array([name in numeric for name in columns], np.bool_),
    )
