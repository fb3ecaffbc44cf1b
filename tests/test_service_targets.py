"""Service-level targets beyond latency: a cache's hit rate read from the counters a service publishes, and the
verdicts after the changes on CPU, memory, the database's p95 and hit rates."""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from ratchet.analysis.advice import advice
from ratchet.analysis.cache_slo import cache_checks, cache_findings, unchecked_cache_note
from ratchet.analysis.page_load import (
    page_load_checks,
    page_load_findings,
    page_load_verdicts,
    unjudged_page_metrics,
)
from ratchet.analysis.service_verdicts import ArmSeries, after_checks, service_verdicts
from ratchet.analysis.soak import compare_soaks, soak_drift
from ratchet.config.loading import ConfigError, load_target
from ratchet.config.playbook import Playbook
from ratchet.contracts import CacheLookups, PageVitals, Verdict
from ratchet.report import render_html, render_markdown
from ratchet.resources.caches import CacheRecorder, recorded_lookups
from ratchet.resources.series import counter_value, parse_selector
from tests.conftest import TEST_PLAYBOOK
from tests.test_report import completed_campaign

EXPOSITION = textwrap.dedent(
    """\
    # HELP app_cache_hits Lookups served.
    # TYPE app_cache_hits counter
    app_cache_hits_total{cache="orders",region="a"} 30.0
    app_cache_hits_total{cache="orders",region="b"} 12.0
    app_cache_hits_total{cache="users"} 5.0
    # TYPE plain gauge
    plain 7
    """
)


def playbook(**slo: object) -> Playbook:
    from ratchet.config.loading import load_playbook

    base = load_playbook(TEST_PLAYBOOK)
    return base.model_copy(update={"slo": base.slo.model_validate(base.slo.model_dump() | slo)})


def test_a_selector_names_a_series_as_promql_does_and_its_samples_are_summed() -> None:
    assert counter_value(EXPOSITION, parse_selector('app_cache_hits_total{cache="orders"}')) == 42.0
    assert counter_value(EXPOSITION, parse_selector('app_cache_hits{cache="orders", region="b"}')) == 12.0
    assert counter_value(EXPOSITION, parse_selector("plain")) == 7.0
    assert counter_value(EXPOSITION, parse_selector('app_cache_hits_total{cache="nope"}')) is None
    for wrong in ("9lives", "x{cache=orders}", 'x{cache="a"'):
        with pytest.raises(ValueError):
            parse_selector(wrong)


def test_a_target_with_a_wrong_selector_is_refused_at_its_line(tmp_path: Path) -> None:
    target = tmp_path / "target.yaml"
    target.write_text(
        textwrap.dedent(
            """\
            name: t
            base_url: http://127.0.0.1:9
            endpoints: [{name: home, path: /}]
            caches:
              - name: pages
                hits: pages_hits_total{cache=pages}
                misses: pages_misses_total
            """
        )
    )
    with pytest.raises(ConfigError) as raised:
        load_target(target)
    said = str(raised.value)
    assert "target.yaml:6" in said and "caches.0.hits" in said and 'name="value"' in said, said


def test_a_run_counts_the_lookups_each_cache_served_from_a_real_metrics_page(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    hits = Counter("svc_cache_hits", "hits", ["cache"], registry=registry)
    misses = Counter("svc_cache_misses", "misses", ["cache"], registry=registry)
    hits.labels(cache="orders").inc(1000)  # before the run: not the run's
    misses.labels(cache="orders").inc(500)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        target = load_target(_target_file(tmp_path, port))
        recorder = CacheRecorder(target)
        recorder.start()
        hits.labels(cache="orders").inc(90)
        misses.labels(cache="orders").inc(10)
        lookups, notes = recorder.finish(tmp_path / "caches.json")
    finally:
        server.shutdown()
        thread.join()
    # The second cache's series does not exist: said, and the first is counted all the same.
    assert [n for n in notes if "ghost" in n and "has no series" in n], notes
    assert lookups == [CacheLookups(cache="orders", hits=90, misses=10)]
    assert recorded_lookups(tmp_path / "caches.json") == lookups


def _target_file(folder: Path, port: int) -> Path:
    path = folder / "target.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: svc
            base_url: http://127.0.0.1:{port}
            endpoints: [{{name: home, path: /}}]
            caches:
              - name: orders
                hits: svc_cache_hits_total{{cache="orders"}}
                misses: svc_cache_misses_total{{cache="orders"}}
              - name: ghost
                hits: svc_cache_hits_total{{cache="ghost"}}
                misses: svc_cache_misses_total{{cache="ghost"}}
            """
        )
    )
    return path


def test_a_cache_under_its_hit_rate_target_is_a_finding_and_one_never_asked_is_not_judged(tmp_path: Path) -> None:
    rules = playbook(cache_hit_rate=0.9)
    lookups = [
        CacheLookups(cache="orders", hits=300, misses=700),
        CacheLookups(cache="users", hits=990, misses=10),
        CacheLookups(cache="idle", hits=0, misses=0),
    ]
    checks = cache_checks(lookups, rules)
    assert [(c.endpoint, c.value, c.met, c.bound) for c in checks] == [
        ("(cache orders)", 0.3, False, "≥"),
        ("(cache users)", 0.99, True, "≥"),
    ]
    [finding] = cache_findings(checks, lookups)
    assert finding.endpoint == "(cache orders)" and finding.severity == "high"  # under half the target
    assert "30% of 1000 lookups" in finding.summary
    target = load_target(_target_file(tmp_path, 9))
    assert "not checked for ghost" in (unchecked_cache_note(lookups[:1], target, rules) or "")
    assert cache_checks(lookups, playbook()) == []  # no target set: nothing judged


def _runs(rng: np.random.Generator, level: float, count: int = 4, seconds: int = 20) -> list[np.ndarray]:
    """Per-second readings of ``count`` runs around ``level``, each run shifted a little (run-to-run spread)."""
    return [level * rng.normal(1, 0.04) * rng.normal(1, 0.08, seconds) for _ in range(count)]


def test_after_the_changes_each_service_target_gets_a_verdict_from_the_interleaved_arms() -> None:
    rng = np.random.default_rng(7)
    rules = playbook(resources={"cpu_percent": 50, "memory_percent": 80}, db_p95_ms=20, cache_hit_rate=0.9)
    # Two cores: 120% of one core is 60% of the host; after the changes 60% (30%): improved, and now met.
    before = ArmSeries(
        cpu=_runs(rng, 120),
        memory_mb=_runs(rng, 400),
        statements_ms=[rng.gamma(4, 8, 500) for _ in range(4)],
        caches=[[CacheLookups(cache="orders", hits=20 + i, misses=80)] for i in range(4)],
    )
    after = ArmSeries(
        cpu=_runs(rng, 60),
        memory_mb=_runs(rng, 400),  # the same memory: not worse
        statements_ms=[rng.gamma(4, 8, 500) * 1.8 for _ in range(4)],  # slower statements: regressed
        caches=[[CacheLookups(cache="orders", hits=93 + i, misses=7)] for i in range(4)],
    )
    verdicts = {v.metric: v for v in service_verdicts(before, after, rules, cores=2, memory_total_mb=1000)}
    cpu = verdicts["cpu_percent"]
    assert cpu.verdict == Verdict.IMPROVED and not cpu.met_before and cpu.met_after, cpu
    assert cpu.before == pytest.approx(60, rel=0.1) and cpu.after == pytest.approx(30, rel=0.1)
    assert verdicts["memory_percent"].verdict == Verdict.NOT_WORSE
    assert verdicts["db_p95_ms"].verdict == Verdict.REGRESSED
    cache = verdicts["cache_hit_rate"]
    assert cache.verdict == Verdict.IMPROVED and cache.difference and cache.low > 0.6, cache
    assert not cache.met_before and cache.met_after
    checks = {c.metric: c for c in after_checks(list(verdicts.values()))}
    assert checks["cache_hit_rate"].met and checks["cache_hit_rate"].at_least and checks["cpu_percent"].met


def test_the_same_service_twice_is_never_called_improved_or_regressed() -> None:
    """An A/A comparison (both arms drawn alike) over seeds: the verdicts stay 'not worse' or 'inconclusive'."""
    rules = playbook(resources={"cpu_percent": 50}, cache_hit_rate=0.9)
    wrong = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)

        def arm(rng: np.random.Generator = rng) -> ArmSeries:
            return ArmSeries(
                cpu=_runs(rng, 100, count=3),
                caches=[[CacheLookups(cache="c", hits=float(rng.binomial(200, 0.8)), misses=40)] for _ in range(3)],
            )

        verdicts = service_verdicts(arm(), arm(), rules, cores=2, memory_total_mb=None)
        wrong += sum(v.verdict in (Verdict.IMPROVED, Verdict.REGRESSED) for v in verdicts)
    # At a 99% interval a true A/A is called changed about 1% of the time per target: 80 verdicts, a few at most.
    assert wrong <= 4, wrong


def test_one_run_per_arm_gives_no_service_verdict() -> None:
    rules = playbook(resources={"cpu_percent": 50})
    one = ArmSeries(cpu=[np.full(20, 50.0)])
    assert service_verdicts(one, one, rules, cores=1, memory_total_mb=None) == []


def test_the_report_shows_the_service_verdicts_and_which_way_each_limit_points() -> None:
    rng = np.random.default_rng(3)
    rules = playbook(resources={"cpu_percent": 50}, cache_hit_rate=0.9)
    before = ArmSeries(cpu=_runs(rng, 120), caches=[[CacheLookups(cache="orders", hits=20, misses=80)]] * 3)
    after = ArmSeries(cpu=_runs(rng, 60), caches=[[CacheLookups(cache="orders", hits=95, misses=5)]] * 3)
    verdicts = service_verdicts(before, after, rules, cores=2, memory_total_mb=None)
    status = completed_campaign()
    status.service_verdicts = verdicts
    status.slo_after = status.slo_after + after_checks(verdicts)
    markdown, html = render_markdown(status), render_html(status)
    for text in (markdown, html):
        assert "Service targets after the changes" in text
        assert "(cache orders)" in text and "cache_hit_rate" in text and "improved" in text
        assert "≥ 0.9" in text  # a hit rate must reach its limit
    assert (
        "| (cache orders) | cache_hit_rate | ≥ 0.9 | 0.2 (missed) | 0.95 (met) | +0.750 to +0.750 | **improved**"
        in markdown
    )


def _page(profile: str, lcp: list[float], kb: float = 900) -> PageVitals:
    return PageVitals(
        endpoint="storefront",
        url="http://shop/",
        visits=len(lcp),
        profile=profile,
        lcp_ms=statistics.median(lcp),
        fcp_ms=statistics.median(lcp) * 0.8,
        lcp_samples=lcp,
        fcp_samples=[v * 0.8 for v in lcp],
        bytes=kb * 1000,
        requests=3,
    )


def test_a_page_over_its_load_targets_on_a_device_is_a_finding_and_the_changes_get_a_verdict() -> None:
    rules = playbook(page_load={"lcp_ms": 2500, "fcp_ms": 1800, "profiles": ["mobile", "desktop"], "visits": 3})
    before = [_page("mobile", [6100, 6300, 6200]), _page("desktop", [900, 950, 920])]
    checks = page_load_checks(before, rules)
    missed = {(c.endpoint, c.metric) for c in checks if not c.met}
    assert missed == {("storefront (mobile)", "lcp_ms"), ("storefront (mobile)", "fcp_ms")}, checks
    [finding] = page_load_findings(checks, before)
    assert finding.endpoint == "storefront" and finding.severity == "high"  # over twice the LCP target
    assert "on mobile: LCP 6200 ms over 2500 ms" in finding.summary and finding.evidence["profile"] == "mobile"
    assert "render-blocking" in advice(finding)

    after = [_page("mobile", [1500, 1560, 1530], kb=60), _page("desktop", [880, 960, 930], kb=60)]
    verdicts = {(v.subject, v.metric): v for v in page_load_verdicts(before, after, rules)}
    mobile = verdicts[("storefront (mobile)", "lcp_ms")]
    assert mobile.verdict == Verdict.IMPROVED and mobile.met_after and not mobile.met_before, mobile
    assert verdicts[("storefront (desktop)", "lcp_ms")].verdict in (Verdict.NOT_WORSE, Verdict.INCONCLUSIVE)
    # A page the probe did not measure before is not judged after.
    assert page_load_verdicts([], after, rules) == [] and unjudged_page_metrics([], after, rules) == []
    assert unjudged_page_metrics(before, after, rules) == []
    # Visits that lost their LCP: one of three after is no verdict, and the note says so.
    lost = [after[0].model_copy(update={"lcp_samples": [1500.0]}), after[1]]
    assert ("storefront (mobile)", "lcp_ms") not in {
        (v.subject, v.metric) for v in page_load_verdicts(before, lost, rules)
    }
    assert unjudged_page_metrics(before, lost, rules) == [
        "storefront (mobile) LCP: not judged, measured by 3 of 3 visits before and 1 of 3 after (a verdict needs 2 "
        "on each side)"
    ]

    status = completed_campaign()
    status.page_loads, status.page_loads_after = before, after
    status.service_verdicts = list(verdicts.values())
    markdown = render_markdown(status)
    assert "## Page load by device" in markdown
    assert "| storefront | mobile | 3 | 6,200 | 1,530 | 4,960 | 1,224 | 878.9 KiB | 58.6 KiB |" in markdown, markdown
    assert "Page load by device" in render_html(status)


def _soak(rng: np.random.Generator, p95_growth: float, mb_per_min: float) -> tuple[np.ndarray, ...]:
    """A 10-minute soak at 20 req/s: latencies whose level grows by ``p95_growth`` from start to end, and 1 Hz
    memory samples rising by ``mb_per_min``, each with noise."""
    times = np.sort(rng.uniform(0, 600, 12_000))
    durations = rng.lognormal(np.log(40), 0.4, times.size) * (1 + (p95_growth - 1) * times / 600)
    seconds = np.arange(600.0)
    memory = 300 + mb_per_min * seconds / 60 + rng.normal(0, 2, seconds.size)
    return times, durations, seconds, memory


def test_a_soak_that_slows_or_leaks_drifts_and_the_fix_is_judged_from_its_run_again() -> None:
    rng = np.random.default_rng(11)
    leaking = soak_drift(*_soak(rng, 1.5, 6.0), significance=0.01)
    assert leaking.latency_drifts and leaking.memory_grows, leaking
    assert leaking.latency_growth == pytest.approx(1.5, rel=0.15) and leaking.memory_mb_per_min == pytest.approx(
        6, rel=0.1
    )
    steady = soak_drift(*_soak(rng, 1.0, 0.0), significance=0.01)
    assert not steady.latency_drifts and not steady.memory_grows, steady
    fixed = compare_soaks(leaking, steady)
    assert fixed.verdict == "improved" and "(drifting)" in fixed.sentence and "(growing)" in fixed.sentence
    assert compare_soaks(steady, leaking).verdict == "regressed"
    assert compare_soaks(steady, steady).verdict == "unchanged"
    # A soak too short to cut into windows says so, and drifts not.
    short = soak_drift(np.arange(30.0), np.full(30, 40.0), np.empty(0), np.empty(0), significance=0.01)
    assert short.said() == "too few requests to tell" and not short.latency_drifts


def test_steady_soaks_are_not_called_drifting() -> None:
    """Over seeds, a steady service's soak (noise only) is called drifting about as often as the level allows."""
    called = sum(
        (drift := soak_drift(*_soak(np.random.default_rng(seed), 1.0, 0.0), significance=0.01)).latency_drifts
        or drift.memory_grows
        for seed in range(100)
    )
    assert called <= 3, called
