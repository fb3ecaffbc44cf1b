"""Cache hit rates of a run, from the hit and miss counters a target publishes in the Prometheus text format.

Most caches already count both (Redis and memcached exporters, Varnish, nginx, Caffeine, Django and Spring
caches): a reading before the load and one after give the lookups the run caused, whatever else the service
holds. Nothing is reset, so other readers of the counters lose nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from ratchet.config.target import CacheCounters, Target
from ratchet.contracts import CacheLookups
from ratchet.files import write_atomically
from ratchet.resources.series import counter_value, parse_selector


class CacheReadError(RuntimeError):
    """A cache's counters could not be read (the message says which and why)."""


def metrics_url(cache: CacheCounters, base_url: str) -> str:
    return cache.metrics_url if "://" in cache.metrics_url else base_url.rstrip("/") + cache.metrics_url


def fetch_metrics(url: str, client: httpx.Client) -> str:
    """A metrics page's text; CacheReadError says why it could not be read."""
    try:
        response = client.get(url)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise CacheReadError(f"{url} not readable ({exc.__class__.__name__}: {exc})") from None
    return response.text


def read_counters(cache: CacheCounters, url: str, exposition: str) -> tuple[float, float]:
    """The cache's hit and miss counters in ``exposition`` (the page at ``url``)."""
    try:
        counts = [counter_value(exposition, parse_selector(s)) for s in (cache.hits, cache.misses)]
    except ValueError as exc:  # not the Prometheus text format
        raise CacheReadError(f"cache {cache.name}: {url} is not in the Prometheus text format ({exc})") from None
    missing = [s for s, count in zip((cache.hits, cache.misses), counts, strict=True) if count is None]
    if missing:
        raise CacheReadError(f"cache {cache.name}: {url} has no series {' or '.join(missing)}")
    hits, misses = counts
    assert hits is not None and misses is not None
    return hits, misses


class CacheRecorder:
    """The lookups each declared cache served during a load test: counters read at ``start`` and at ``finish``,
    the difference stored as JSON. A cache that cannot be read is a note; the run goes on without it."""

    def __init__(self, target: Target) -> None:
        self.caches = list(target.caches)
        self.base_url = target.base
        self.before: dict[str, tuple[float, float]] = {}
        self.notes: list[str] = []

    def _read_all(self) -> dict[str, tuple[float, float]]:
        """Every cache's counters now, each metrics page fetched once however many caches it holds."""
        pages: dict[str, str | CacheReadError] = {}
        read: dict[str, tuple[float, float]] = {}
        with httpx.Client(timeout=10) as client:
            for cache in self.caches:
                url = metrics_url(cache, self.base_url)
                if url not in pages:
                    try:
                        pages[url] = fetch_metrics(url, client)
                    except CacheReadError as exc:
                        pages[url] = exc
                page = pages[url]
                if isinstance(page, CacheReadError):
                    self.notes.append(f"cache {cache.name}: {page}")
                    continue
                try:
                    read[cache.name] = read_counters(cache, url, page)
                except CacheReadError as exc:
                    self.notes.append(str(exc))
        return read

    def start(self) -> None:
        if self.caches:
            self.before = self._read_all()

    def finish(self, out_file: Path) -> tuple[list[CacheLookups], list[str]]:
        """The lookups since ``start`` (stored in ``out_file``) and the notes of what could not be read."""
        if not self.before:
            return [], list(dict.fromkeys(self.notes))
        after = self._read_all()
        lookups = [
            # A counter that went down was reset (the service restarted): its lookups since then are what it has.
            CacheLookups(
                cache=name,
                hits=after[name][0] - hits if after[name][0] >= hits else after[name][0],
                misses=after[name][1] - misses if after[name][1] >= misses else after[name][1],
            )
            for name, (hits, misses) in self.before.items()
            if name in after
        ]
        out_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out_file, json.dumps([item.model_dump() for item in lookups]))
        return lookups, list(dict.fromkeys(self.notes))


def recorded_lookups(path: Path) -> list[CacheLookups]:
    """What a :class:`CacheRecorder` stored for a run (nothing when it stored nothing)."""
    if not path.is_file():
        return []
    return [CacheLookups.model_validate(item) for item in json.loads(path.read_text())]
