"""Pieces shared by playbook and target models."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A configuration model that refuses unknown fields, so a typo is an error instead of a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class FindingType(StrEnum):
    """The kinds of bottleneck Ratchet can find; levers say which of them they address."""

    MISSING_INDEX = "missing-index"
    SLOW_ENDPOINT = "slow-endpoint"
    N_PLUS_ONE = "n-plus-one"  # a query per item of a list a first query loaded
    SEQUENTIAL_CALLS = "sequential-calls"  # outbound calls one after another that need none of each other's results
    CACHEABLE = "cacheable"  # costly work whose answer is the same on every repeat of the same request
    LARGE_PAYLOAD = "large-payload"  # a response body large enough to cost transfer time by itself
    UNCOMPRESSED = "uncompressed"  # a large text response sent without Content-Encoding to a client that accepts gzip
    SATURATION = "saturation"  # latency that grows with the arrival rate: a capacity limit (pool, workers)
    RENDER_BLOCKING = "render-blocking"  # large scripts or styles a page must load before its first paint
    SEQUENTIAL_QUERIES = "sequential-queries"  # independent queries run one after another
    N_PLUS_ONE_API = "n-plus-one-api"  # an outbound call per item of a list, to the same resource
    SLOW_STATEMENT = "slow-statement"  # one statement dominates an endpoint's time without a full scan to blame
    ERROR_HOTSPOT = "error-hotspot"  # an endpoint whose errors rise under load
    WEB_VITALS = "web-vitals"  # a page whose vitals (LCP, FCP, CLS, INP, TTFB) in a real browser are poor
    HTTP_CACHING = "http-caching"  # a static asset browsers and proxies may not keep: fetched again on every visit
    DB_LATENCY = "db-latency"  # the database's statements over the playbook's p95 target (statement spans)
    CAPACITY = "capacity"  # the stress run's knee below the throughput the playbook asks for
    RESOURCE_USE = "resource-use"  # the target's processes over a CPU or memory target under the baseline load
    PAGE_LOAD = "page-load"  # a page's LCP or FCP on a device profile over the playbook's page_load targets
    CACHE_HIT_RATE = "cache-hit-rate"  # a declared cache serving fewer lookups than the playbook's hit rate target
    # A temporal-workflow target's, read from its executions' histories (the names workflow tooling uses):
    SLOW_STEP = "slow_step"  # one step takes most of the executions' critical path
    RESOURCE_EXHAUSTION = "resource_exhaustion"  # queue waits that grow with the steps in progress (slots, pollers)
    API_LIMIT = "api_limit"  # calls refused for a rate limit or quota, and retried
    SEQUENTIAL_DEPENDENCY = "sequential_dependency"  # steps in sequence whose later input needs nothing of the earlier
    CACHE_MISS = "cache_miss"  # the same step with the same input again, answering the same
    INEFFICIENT_ALGORITHM = "inefficient_algorithm"  # step time growing faster than linearly with its input


class Role(StrEnum):
    """The agents of a campaign; each one is a Temporal task queue."""

    PERF_OPTIMIZER = "perf-optimizer"
    BACKEND_DEVELOPER = "backend-developer"
    FRONTEND_DEVELOPER = "frontend-developer"
    DEVOPS_ENGINEER = "devops-engineer"
    TEST_ENGINEER = "test-engineer"
    # Not one of the campaign's people: the machines that send load when a test is split over several.
    LOAD_GENERATOR = "load-generator"


class Phase(StrEnum):
    """The six phases of a campaign, in order."""

    ASSESSMENT = "assessment"
    PLANNING = "planning"
    OPTIMIZATION = "optimization"
    FRONTEND = "frontend"
    VALIDATION = "validation"
    DEPLOYMENT = "deployment"


PHASE_TITLES: dict[Phase, str] = {
    Phase.ASSESSMENT: "Assessment",
    Phase.PLANNING: "Planning",
    Phase.OPTIMIZATION: "Backend & infrastructure optimization",
    Phase.FRONTEND: "Frontend optimization",
    Phase.VALIDATION: "Validation",
    Phase.DEPLOYMENT: "Deployment & monitoring",
}
