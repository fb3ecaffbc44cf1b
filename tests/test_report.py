"""The campaign report, read the way a person who was not there reads it."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any

import pytest

from activities.reporting import ReportActivities, report_stem
from ratchet.analysis.decisions import bytes_verdict
from ratchet.config.playbook import Validation
from ratchet.contracts import CampaignStatus, ReportRequest
from ratchet.report import p95_bars, render_html, render_markdown
from ratchet.report.render import evidence_items, format_p_value
from ratchet.settings import Settings

STATEMENT = "SELECT id, total FROM orders WHERE customer_email = :email ORDER BY created_at DESC"
PLAN_LINE = "SCAN orders"
ROLLBACK_REASON = "p95 of search rose 12% after <script>alert(1)</script> was applied"


def _stats(endpoint: str, p50: float, p95: float, p99: float, requests: int = 3000) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "requests": requests,
        "errors": 0,
        "error_rate": 0.0,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "mean": (p50 + p95) / 2,
    }


def _run(label: str, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": f"run-{label}",
        "label": label,
        "requests": sum(e["requests"] for e in endpoints),
        "duration_s": 60.0,
        "endpoints": list(endpoints),
    }


def _lever(name: str, endpoint: str) -> dict[str, Any]:
    return {
        "kind": "sql",
        "name": name,
        "addresses": [{"finding": "missing-index", "endpoint": endpoint}],
        "apply": [f"CREATE INDEX {name} ON orders (customer_email)"],
        "rollback": [f"DROP INDEX {name}"],
    }


def _phase(phase: str, title: str, start: str, end: str, outcome: str, note: str = "") -> dict[str, Any]:
    return {"phase": phase, "title": title, "started_at": start, "ended_at": end, "outcome": outcome, "note": note}


def completed_campaign() -> CampaignStatus:
    """A campaign that ran every phase: one index kept (orders improved), one change rolled back (search)."""
    before_orders, after_orders = _stats("orders", 180.0, 412.3, 530.9), _stats("orders", 8.1, 23.4, 31.0)
    before_search, after_search = _stats("search", 40.0, 95.5, 120.0), _stats("search", 41.0, 96.2, 122.5)
    data = {
        "campaign_id": "shop-20250301-1200",
        "target": "shop",
        "playbook": "latency-p95",
        "state": "completed",
        "outcome": "targets met",
        "outcome_detail": "orders p95 fell from 412 ms to 23 ms; search unchanged",
        "phases": [
            _phase("assessment", "Assessment", "2025-03-01T12:00:00Z", "2025-03-01T12:01:30Z", "done", "1 finding"),
            _phase("planning", "Planning", "2025-03-01T12:01:30Z", "2025-03-01T12:05:00Z", "done"),
            _phase(
                "optimization",
                "Backend & infrastructure optimization",
                "2025-03-01T12:05:00Z",
                "2025-03-01T12:05:04Z",
                "done",
            ),
            {"phase": "frontend", "title": "Frontend optimization", "outcome": "skipped", "note": "no frontend levers"},
            _phase("validation", "Validation", "2025-03-01T12:05:04Z", "2025-03-01T12:07:10Z", "done"),
            _phase("deployment", "Deployment & monitoring", "2025-03-01T12:07:10Z", "2025-03-01T13:10:00Z", "done"),
        ],
        "gates": [
            {
                "phase": "planning",
                "decision": "approved",
                "by": "alice",
                "at": "2025-03-01T12:04:59Z",
                "only": ["R1", "R2"],
                "note": "go",
            },
            {"phase": "deployment", "decision": "approved", "by": "bob", "at": "2025-03-01T12:07:09Z"},
        ],
        "assessment_notes": [
            "checkout: p95 61.0 ms over 50 ms, but only 1 of 9 requests were slower than that: too few to say"
        ],
        "blind_spots": [
            {
                "kind": "no-database-spans",
                "blind_to": ["N+1 queries", "statement shares"],
                "summary": "the traces hold no database span although the target has a database",
                "advice": "Instrument the database driver (opentelemetry-instrumentation-sqlite3)",
            }
        ],
        "findings": [
            {
                "id": "F1",
                "type": "missing-index",
                "endpoint": "orders",
                "severity": "critical",
                "impact": 0.62,
                "estimated_gain_ms": 170.5,
                "summary": "orders: p95 412.3 ms (threshold 100 ms); its query scans all 200,000 rows of orders",
                "evidence": {
                    "table": "orders",
                    "columns": ["customer_email"],
                    "table_rows": 200000,
                    "statement": STATEMENT,
                    "plan": [PLAN_LINE, "USE TEMP B-TREE FOR ORDER BY"],
                    "endpoint_p95_ms": 412.3,
                    "latency_share": 0.7312,
                    "existing_indexes": [],
                },
            }
        ],
        "recommendations": [
            {
                "id": "R1",
                "finding_id": "F1",
                "endpoint": "orders",
                "title": "Index orders(customer_email)",
                "lever": _lever("idx_orders_email", "orders"),
                "role": "backend-developer",
                "impact": 0.62,
                "feasibility": 0.9,
                "risk": "low",
                "effort": "low",
                "predicted_gain_ms": 170.5,
                "score": 0.558,
                "rationale": "The plan scans orders in full; an index turns it into a search.",
            },
            {
                "id": "R2",
                "finding_id": "F1",
                "endpoint": "search",
                "title": "Cache search results",
                "role": "backend-developer",
                "recommended": False,
                "impact": 0.2,
                "feasibility": 0.4,
                "risk": "medium",
                "effort": "high",
                "predicted_gain_ms": 30.0,
                "score": 0.08,
                "rationale": "Secondary hot path.",
                "advice": "Add a read-through cache in the search service.",
            },
        ],
        "baseline": _run("baseline", before_orders, before_search),
        "validation": _run("validation", after_orders, after_search),
        "validation_rules": {"min_improvement": 0.2, "regression_margin": 0.1, "min_effect_ms": 5},
        "verdicts": [
            {
                "endpoint": "orders",
                "before": before_orders,
                "after": after_orders,
                "p95_ratio": 23.4 / 412.3,
                "p50_ratio": 8.1 / 180.0,
                "p_value_faster": 3.1234e-45,
                "p_value_slower": 1.0,
                "hodges_lehmann_ms": -171.84,
                "ratio": 0.0568,
                "ratio_low": 0.049,
                "ratio_high": 0.066,
                "confidence": 0.95,
                "runs_before": 3,
                "runs_after": 3,
                "verdict": "improved",
                "explanation": "p95 fell 94% (p < 0.001)",
            },
            {
                "endpoint": "search",
                "before": before_search,
                "after": after_search,
                "p95_ratio": 96.2 / 95.5,
                "p50_ratio": 41.0 / 40.0,
                "p_value_faster": 0.81,
                "p_value_slower": 0.19,
                "hodges_lehmann_ms": 0.4,
                "verdict": "unchanged",
                "explanation": "no significant shift",
            },
        ],
        "slo_before": [{"endpoint": "orders", "metric": "p95_ms", "limit": 100, "value": 412.3, "met": False}],
        "slo_after": [{"endpoint": "orders", "metric": "p95_ms", "limit": 100, "value": 23.4, "met": True}],
        "changes": [
            {
                "change_id": "C1",
                "recommendation_id": "R1",
                "lever": "idx_orders_email",
                "kind": "sql",
                "role": "backend-developer",
                "endpoint": "orders",
                "state": "kept",
                "applied_at": "2025-03-01T12:05:02Z",
            },
            {
                "change_id": "C2",
                "recommendation_id": "R2",
                "lever": "search_cache",
                "kind": "http",
                "role": "backend-developer",
                "endpoint": "search",
                "state": "rolled-back",
                "applied_at": "2025-03-01T12:05:03Z",
                "rolled_back_at": "2025-03-01T12:07:05Z",
                "reason": ROLLBACK_REASON,
            },
            {
                "change_id": "C3",
                "recommendation_id": "R3",
                "lever": "tax-pool",
                "kind": "http",
                "role": "devops-engineer",
                "endpoint": "orders",
                "state": "kept",
                "parameter": 12,
                "trials": [
                    {"value": 1, "p95_ms": 412.0, "error_rate": 0.0},
                    {"value": 16, "p95_ms": 30.5, "error_rate": 0.0},
                    {"value": 12, "p95_ms": 29.1, "error_rate": 0.0},
                    {"value": 2, "error_rate": 0.2, "failed": True, "note": "error rate 20.0% over the SLO's 1.0%"},
                ],
            },
            {
                "change_id": "C4",
                "recommendation_id": "R4",
                "lever": "gzip-responses",
                "kind": "http",
                "role": "backend-developer",
                "endpoint": "catalog-export",
                "state": "kept",
                "bytes_attribution": [
                    bytes_verdict("catalog-export", 1_328_519, 96_101, Validation()).model_dump(mode="json")
                ],
            },
        ],
        "guard": {"breached": False, "reasons": []},
        "rollout": {
            "outcome": "completed",
            "baseline_run_id": "run-prod-baseline",
            "steps": [
                {"percent": 10, "run_id": "run-prod-10", "guard": {"breached": False, "reasons": []}},
                {
                    "percent": 50,
                    "run_id": "run-prod-50",
                    "guard": {"breached": False, "reasons": []},
                    "decided_by": "promoted by alice",
                },
                {"percent": 100, "run_id": "run-prod-100", "guard": {"breached": False, "reasons": []}},
            ],
        },
        "pages": [
            {
                "endpoint": "storefront",
                "url": "http://127.0.0.1:8800/",
                "visits": 3,
                "fcp_ms": 256.0,
                "lcp_ms": 264.0,
                "cls": 0.0,
                "inp_ms": 16.0,
                "ttfb_ms": 21.5,
                "requests": 4,
                "bytes": 1241243,
                "failed_requests": 1,
                "failed_urls": {"http://127.0.0.1:8800/favicon.ico": "404"},
            },
        ],
        "database": {
            "file": "/srv/ratchet/runs/base-1.inspection.json",
            "dialect": "postgresql",
            "tables": 7,
            "largest_table": "orders",
            "largest_table_rows": 200_000,
            "largest_tables": [
                {
                    "name": "orders",
                    "rows": 200_000,
                    "rows_estimated": True,
                    "bytes": 48_234_496,
                    "indexes": [{"name": "orders_pkey", "columns": ["id"], "unique": True}],
                },
                {"name": "customers", "rows": 5_000, "bytes": 655_360, "indexes": []},
            ],
            "statements": 12,
            "statement_source": "pg_stat_statements",
            "dominant": [
                {
                    "statement": STATEMENT,
                    "calls": 3_100,
                    "total_ms": 95_200.0,
                    "mean_ms": 30.7,
                    "full_scans": ["orders"],
                }
            ],
            "notes": ["pg_stat_statements was reset before the baseline"],
        },
        "events": [
            {"at": "2025-03-01T12:00:00Z", "message": "campaign started"},
            {"at": "2025-03-01T13:10:00Z", "message": "campaign completed: targets met"},
        ],
    }
    return CampaignStatus.model_validate(data)


def minimal_campaign() -> CampaignStatus:
    """A campaign that stopped at assessment because the baseline already met every SLO."""
    data = {
        "campaign_id": "shop-quick",
        "target": "shop",
        "playbook": "latency-p95",
        "state": "completed",
        "outcome": "targets already met",
        "phases": [
            _phase("assessment", "Assessment", "2025-03-02T09:00:00Z", "2025-03-02T09:01:05Z", "done"),
            {"phase": "planning", "title": "Planning", "outcome": "skipped", "note": "not reached"},
        ],
        "baseline": _run("baseline", _stats("orders", 5.0, 12.5, 20.0)),
        "slo_before": [{"endpoint": "orders", "metric": "p95_ms", "limit": 100, "value": 12.5, "met": True}],
        "events": [{"at": "2025-03-02T09:01:05Z", "message": "campaign completed: targets already met"}],
    }
    return CampaignStatus.model_validate(data)


@pytest.fixture(scope="module")
def full_markdown() -> str:
    return render_markdown(completed_campaign())


@pytest.fixture(scope="module")
def full_html() -> str:
    return render_html(completed_campaign())


def _text(page: str) -> str:
    """What a browser shows, roughly: tags removed and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


# ---------------------------------------------------------------- content both formats must carry


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_header_and_outcome(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    for expected in ("shop-20250301-1200", "latency-p95", "completed", "targets met", "search unchanged"):
        assert expected in report


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_finding_shows_its_evidence(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    text = report if fixture == "full_markdown" else _text(report)
    assert STATEMENT in text
    assert PLAN_LINE in text
    assert "USE TEMP B-TREE FOR ORDER BY" in text
    assert "200,000" in text  # table_rows, with a thousands separator
    assert "critical" in text


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_what_the_assessment_could_not_decide_is_said(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    text = report if fixture == "full_markdown" else _text(report)
    assert "What the assessment could not see or decide" in text
    assert "only 1 of 9 requests were slower than that" in text


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_what_ratchet_cannot_see_comes_before_the_phases(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    text = report if fixture == "full_markdown" else _text(report)
    assert "What Ratchet cannot see" in text
    assert "no-database-spans" in text and "opentelemetry-instrumentation-sqlite3" in text
    assert text.index("What Ratchet cannot see") < text.index("Phases")


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_database_inspection_shows_tables_indexes_and_dominant_statements(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    report = request.getfixturevalue(fixture)
    text = report if fixture == "full_markdown" else _text(report)
    database = text[text.index("Database") : text.index("Plan", text.index("Database"))]
    assert "postgresql: 7 table(s); 12 distinct statement(s) during the baseline, from pg_stat_statements" in database
    assert "200,000 (estimated)" in database and "46.0 MiB" in database and "orders_pkey" in database
    assert "customers" in database and "none" in database  # a table without indexes says so
    assert STATEMENT in database and "3,100" in database and "30.7" in database
    assert "pg_stat_statements was reset before the baseline" in database
    assert "base-1.inspection.json" in database


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_a_tuned_lever_shows_its_value_and_trials(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    text = report if fixture == "full_markdown" else _text(report)
    assert "tax-pool" in text and "= 12" in text
    tuning = text[text.index("Tuning tax-pool") :]
    assert "412" in tuning and "29.1" in tuning and "kept" in tuning
    assert "failed: error rate 20.0% over the SLO's 1.0%" in tuning


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_pages_show_their_web_vitals(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    text = report if fixture == "full_markdown" else _text(report)
    pages = text[text.index("Web vitals from first visits") : text.index("Database", text.index("Web vitals"))]
    for expected in ("storefront", "256", "264", "21.5", "1.2 MiB"):
        assert expected in pages, expected
    # A failed request is named, so that a reader can tell a missing favicon from a broken script.
    assert "Failed on storefront: http://127.0.0.1:8800/favicon.ico (404)" in " ".join(pages.split())


def test_markdown_puts_plan_in_a_code_block(full_markdown: str) -> None:
    assert f"```\n{PLAN_LINE}\nUSE TEMP B-TREE FOR ORDER BY\n```" in full_markdown
    assert f"```\n{STATEMENT}\n```" in full_markdown


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_before_after_numbers(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    for number in ("412.3", "23.4", "95.5", "96.2", "3.1e-45", "-171.8", "0.057"):
        assert number in report, number
    # The verdict's ratio with its interval, and the rules it was judged by.
    assert "x0.057 [0.049-0.066]" in report
    assert "below 1 - 0.20" in report and "above 1 + 0.10" in report
    assert "improved" in report
    assert "unchanged" in report


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_plan_lists_lever_and_manual_alternative(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    for expected in ("idx_orders_email", "manual", "alternative", "Add a read-through cache", "Index orders"):
        assert expected in report


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_gates_and_changes(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    text = report if fixture == "full_markdown" else _text(report)
    assert "alice" in text and "R1, R2" in text
    assert "Rolled back or failed" in text
    assert "search_cache" in text
    assert "p95 of search rose 12%" in text
    assert "2025-03-01 12:07:05 UTC" in text  # when it was rolled back


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_a_payload_change_shows_the_bytes_it_saved(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    text = " ".join((report if fixture == "full_markdown" else _text(report)).split())
    assert "Wire bytes saved by gzip-responses" in text
    assert "catalog-export improved (1,328,519 -> 96,101 bytes on the wire (x0.072): smaller by 93%)" in text


@pytest.mark.parametrize("fixture", ["full_markdown", "full_html"])
def test_the_rollout_shows_each_step_and_its_reference(fixture: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(fixture)
    text = " ".join((report if fixture == "full_markdown" else _text(report)).split())
    assert "Rollout to production" in text and "run-prod-baseline" in text
    for share in ("10%", "50%", "100%"):
        assert share in text
    assert "promoted by alice" in text and "run-prod-50" in text


def test_html_escapes_user_text(full_html: str) -> None:
    assert "<script>" not in full_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full_html


def test_markdown_escapes_html_in_user_text(full_markdown: str) -> None:
    assert not re.search(r"(?<!\\)<script>", full_markdown)  # only the backslash-escaped form is present
    assert "\\<script>alert(1)\\</script>" in full_markdown


def test_html_is_self_contained_with_chart(full_html: str) -> None:
    assert full_html.count("<svg") == 1
    assert "412.3 ms" in full_html and "23.4 ms" in full_html  # bar labels
    assert 'class="verdict-improved"' in full_html
    assert 'class="verdict-unchanged"' in full_html
    assert "badge state-completed" in full_html
    for external in ("<script", "<link", "@import", "src=", "url("):
        assert external not in full_html


def test_markdown_tables_keep_their_shape(full_markdown: str) -> None:
    # Every row of a table has as many cells as its header (an unescaped | would add one).
    lines = full_markdown.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("|---") or line.startswith("|--"):
            columns = _cells(lines[index - 1])
            row = index + 1
            while row < len(lines) and lines[row].startswith("|"):
                assert _cells(lines[row]) == columns, lines[row]
                row += 1


def _cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line)) - 2


# ---------------------------------------------------------------- a campaign that stopped early


@pytest.mark.parametrize("render", [render_markdown, render_html])
def test_minimal_campaign_says_what_is_missing(render: Any) -> None:
    report = render(minimal_campaign())
    for sentence in (
        "targets already met",
        "No gate decisions.",
        "No findings.",
        "No recommendations.",
        "No SLO checks after the changes.",
        "No changes were made.",
        "No deployment guard ran.",
        "No before/after comparison was made.",
    ):
        assert sentence in report, sentence
    assert "12.5" in report  # the baseline table stands in for the before/after one
    assert "1m 05s" in report  # the assessment's duration


def test_minimal_html_charts_the_baseline() -> None:
    page = render_html(minimal_campaign())
    assert "<svg" in page
    assert "12.5 ms" in page


def test_status_with_nothing_renders() -> None:
    status = CampaignStatus(campaign_id="c", target="t", playbook="p")
    for report in (render_markdown(status), render_html(status)):
        assert "No measurements." in report
        assert "No phases recorded." in report
        assert "No events." in report
    assert "<svg" not in render_html(status)


# ---------------------------------------------------------------- pieces


def test_p95_bars_log_scale_keeps_both_bars_visible() -> None:
    bars = {bar["endpoint"]: bar for bar in p95_bars(completed_campaign())}
    orders = bars["orders"]
    assert orders["before_ms"] == 412.3 and orders["after_ms"] == 23.4
    assert 0 < orders["after_fraction"] < orders["before_fraction"] <= 1
    assert orders["after_fraction"] > 0.15  # an 18x improvement still leaves a readable bar
    assert bars["search"]["verdict"] == "unchanged"


def test_evidence_items_split_code_from_fields() -> None:
    fields, blocks = evidence_items({"plan": ["a", "b"], "statement": "SELECT 1", "rows": 1200, "cols": []})
    assert [b["key"] for b in blocks] == ["plan", "statement"]
    assert {f["key"]: f["value"] for f in fields} == {"rows": "1,200", "cols": "none"}


def test_p_values_have_two_significant_digits() -> None:
    assert format_p_value(3.1234e-45) == "3.1e-45"
    assert format_p_value(0.0123) == "0.012"


# ---------------------------------------------------------------- the activity


def test_write_report_writes_both_files(tmp_path: Path) -> None:
    activities = ReportActivities(Settings(home=tmp_path))
    status = completed_campaign()
    result = asyncio.run(activities.write_report(ReportRequest(status=status)))
    html_path, markdown_path = Path(result.html_path), Path(result.markdown_path)
    assert html_path.is_absolute() and markdown_path.is_absolute()
    assert html_path == (tmp_path / "reports" / "shop-20250301-1200.html").resolve()
    assert markdown_path.name == "shop-20250301-1200.md"
    assert "<svg" in html_path.read_text(encoding="utf-8")
    assert STATEMENT in markdown_path.read_text(encoding="utf-8")
    assert "/workflows/shop-20250301-1200" in markdown_path.read_text(encoding="utf-8")
    # No temporary files are left behind, and a second attempt (a retry) replaces the same two files.
    asyncio.run(activities.write_report(ReportRequest(status=status)))
    assert sorted(p.name for p in html_path.parent.iterdir()) == [html_path.name, markdown_path.name]


def test_report_names_stay_inside_the_folder() -> None:
    assert report_stem("../../etc/passwd") == "_.._etc_passwd"
    assert report_stem("shop-1.2_x") == "shop-1.2_x"
