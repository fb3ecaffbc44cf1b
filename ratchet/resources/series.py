"""Series selectors over the Prometheus text format: ``name`` or ``name{label="value", …}`` (PromQL's own
spelling, equality matchers only) and the sum of the samples one names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# A series selector as PromQL writes one: a metric name and optional label matchers, equality only.
_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Selector:
    name: str
    labels: dict[str, str]

    def matches(self, sample_name: str, labels: dict[str, str]) -> bool:
        names = {self.name, f"{self.name}_total"}  # a counter's samples carry _total after its family's name
        return sample_name in names and all(labels.get(k) == v for k, v in self.labels.items())


def parse_selector(text: str) -> Selector:
    """``name`` or ``name{label="value", …}``; ValueError says what is wrong."""
    found = _SELECTOR.match(text)
    if found is None:
        raise ValueError(f'not a series selector: {text!r} (e.g. cache_hits_total{{cache="orders"}})')
    name, inner = found.group(1), (found.group(2) or "").strip()
    labels: dict[str, str] = {}
    position = 0
    while position < len(inner):
        matcher = _MATCHER.match(inner, position)
        if matcher is None:
            raise ValueError(f'{text!r}: label matchers are name="value", separated by commas')
        labels[matcher.group(1)] = matcher.group(2).encode().decode("unicode_escape")
        position = matcher.end()
    return Selector(name, labels)


def counter_value(exposition: str, selector: Selector) -> float | None:
    """The sum of the samples the selector names (None: no such series)."""
    values = [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if selector.matches(sample.name, sample.labels)
    ]
    return float(sum(values)) if values else None
