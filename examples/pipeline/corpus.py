"""The documents the pipeline processes: deterministic, generated from their number.

A document is a body of 4 to 64 sentences (its size sets the cost of the near-duplicate check) and two
attachments drawn from a handful of boilerplates (terms, privacy notice, ...): the same attachment arrives with
many documents, so extracting it again is repeated work.
"""

from __future__ import annotations

import hashlib
import random

_WORDS = [
    "invoice",
    "contract",
    "shipment",
    "payment",
    "order",
    "customer",
    "supplier",
    "delivery",
    "account",
    "balance",
    "tax",
    "refund",
    "warranty",
    "claim",
    "policy",
    "premium",
    "renewal",
    "schedule",
    "meeting",
    "report",
    "budget",
    "forecast",
    "audit",
    "review",
    "approval",
    "request",
    "quarter",
    "region",
    "product",
    "service",
    "support",
    "ticket",
    "incident",
    "outage",
    "release",
    "update",
    "migration",
    "license",
]
LABELS = ("finance", "legal", "operations", "support")
_LABEL_WORDS = {
    "finance": {"invoice", "payment", "balance", "tax", "refund", "budget", "forecast", "audit"},
    "legal": {"contract", "policy", "license", "warranty", "claim", "premium", "renewal"},
    "operations": {"shipment", "delivery", "order", "supplier", "schedule", "migration", "release"},
    "support": {"customer", "support", "ticket", "incident", "outage", "request", "update"},
}
BOILERPLATES = ("terms-v3", "privacy-v2", "cover-letter", "signature-page", "disclaimer-v5")
BODY_SENTENCES = (4, 8, 16, 32, 64)


def _rng(*key: object) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "big"))


def _sentences(key: str, count: int) -> list[str]:
    rng = _rng(key)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randrange(6, 14))).capitalize() + "." for _ in range(count)]


def document(number: int) -> dict[str, object]:
    """Document ``number``: its id, the parts to extract (body first) and nothing else (parts are fetched)."""
    rng = _rng("attachments", number)
    return {
        "id": f"doc-{number}",
        "parts": [f"documents/doc-{number}/body.pdf", *(f"attachments/{a}.pdf" for a in rng.sample(BOILERPLATES, 2))],
    }


def request(number: int) -> dict[str, object]:
    """What a caller starts the pipeline with: the document's id and its page count (four sentences a page)."""
    return {"id": f"doc-{number}", "pages": BODY_SENTENCES[number % len(BODY_SENTENCES)] // 4}


def part_sentences(part: str) -> list[str]:
    """The text of a part, as the extraction finds it."""
    if part.startswith("attachments/"):
        return _sentences(part, 5)
    number = int(part.split("/")[1].removeprefix("doc-"))
    return _sentences(part, BODY_SENTENCES[number % len(BODY_SENTENCES)])


def label_of(sentences: list[str]) -> str:
    """The label whose words the text uses most (ties: the first)."""
    words = [w.strip(".").lower() for s in sentences for w in s.split()]
    return max(LABELS, key=lambda label: sum(w in _LABEL_WORDS[label] for w in words))
