"""The target: the system under optimization, described once (endpoints, database, levers)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, HttpUrl, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from ratchet.config.common import FindingType, Role, StrictModel
from ratchet.config.durations import Duration
from ratchet.config.lever_templates import lever_template_problem
from ratchet.errors import LocatedValueError
from ratchet.resources.series import parse_selector
from ratchet.secrets import holds_reference
from ratchet.templating import expression_problem, template_names_problem

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Query(StrictModel):
    """A SQL statement an endpoint runs; its plan is inspected during assessment."""

    sql: str = Field(min_length=1, description="The statement, with :name parameters from the endpoint's examples.")


class WorkflowCall(StrictModel):
    """Executions of a Temporal workflow type: what a ``temporal-workflow`` target's endpoint starts and awaits."""

    type: str = Field(pattern=r"^[A-Za-z0-9_.:\-/]+$", description="The workflow type, e.g. DocumentPipeline.")
    task_queue: str = Field(min_length=1, description="The task queue the application's workers poll.")
    inputs: list[Any] = Field(
        min_length=1, description="Inputs of the executions (each one the workflow's single argument), cycled."
    )
    cost_field: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="A numeric field of a step's result that is that call's cost (an AI provider's charge, say); "
        "an execution's cost is the sum over its steps, reported before and after the changes.",
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="A closed model: this many executions in flight for the whole run, each started as soon as "
        "one closes (as k6's constant-vus), instead of the endpoint's share of load.rate (an open model). For "
        "applications whose callers wait for one result before asking again; the rate then follows the speed.",
    )
    timeout: Duration = Field(
        default="60s",
        validate_default=True,
        description="Longest an execution is awaited after the run's last start, at most 90s (a load test's "
        "activity allows 120 s beyond its load); one still open then is an answer that never came.",
    )

    @field_validator("timeout")
    @classmethod
    def _within_the_load_test(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(seconds=90):
            raise ValueError("must be more than 0s and at most 90s")
        return value


class Endpoint(StrictModel):
    """One request shape to exercise and measure: an HTTP request, or a workflow's executions."""

    name: str = Field(pattern=_NAME, description="Short name used in tags, findings and reports.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    path: str | None = Field(
        None, description="Path with {placeholders} filled from examples, e.g. /orders?email={email} (HTTP)."
    )
    workflow: WorkflowCall | None = Field(
        None, description="A temporal-workflow target's executions: type, task queue and inputs (instead of path)."
    )
    weight: float = Field(1.0, gt=0, description="Share of the load (relative to the other endpoints).")
    examples: list[dict[str, str | int | float]] = Field(
        default_factory=list, description="Parameter sets; each request picks one."
    )
    body: str | None = Field(None, description="Request body with {placeholders}, for POST/PUT/PATCH.")
    queries: list[Query] = Field(default_factory=list, description="Statements this endpoint runs.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must start with '/', e.g. /{value}")
        return value

    @model_validator(mode="after")
    def _examples_fill_placeholders(self) -> Self:
        if (self.path is None) == (self.workflow is None):
            raise ValueError("give either path (an HTTP endpoint) or workflow (a temporal-workflow target's)")
        if self.workflow is not None:
            extra = [f for f in ("examples", "body", "queries") if getattr(self, f)]
            if extra:
                raise ValueError(f"a workflow endpoint takes its inputs from workflow.inputs; remove {extra}")
            return self
        needed = self.placeholders | set(_PLACEHOLDER.findall(self.body or ""))
        if needed and not self.examples:
            raise ValueError(f"path uses {sorted(needed)} but no examples are given")
        for index, example in enumerate(self.examples):
            missing = needed - set(example)
            if missing:
                raise ValueError(f"examples[{index}] lacks {sorted(missing)} (the path needs {sorted(needed)})")
        return self

    @property
    def placeholders(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.path or ""))

    @property
    def http_path(self) -> str:
        """The path of an HTTP endpoint (a workflow endpoint has none: callers filter by ``workflow``)."""
        assert self.path is not None, f"{self.name} is a workflow endpoint"
        return self.path


class Database(StrictModel):
    """The target's own database, for plan inspection and SQL levers."""

    url: str = Field(description="sqlite:///path/to/file.db or postgresql://user@host/db")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if holds_reference(value):
            return value  # a secret this process does not hold (see ratchet.secrets): checked where it is resolved
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"


class Addresses(StrictModel):
    """What a lever fixes: a finding type on an endpoint ('*' for any)."""

    finding: FindingType
    endpoint: str = "*"


class HttpAction(StrictModel):
    """An HTTP call to an admin or feature-flag API."""

    # Read back by either name: target files say ``json``, stored statuses (dumped by field name) ``json_body``.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    json_body: dict[str, Any] | None = Field(None, alias="json")
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])


class HttpCheck(HttpAction):
    """An HTTP call whose answer says whether the lever is in effect."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    applied_when: str = Field(description="Jinja expression over `response` (status, json) that is true when applied.")


class ShellAction(StrictModel):
    """A command run without a shell (argv list), e.g. to rewrite a config and restart."""

    argv: list[str] = Field(min_length=1)
    timeout: Duration = Field(default="60s", validate_default=True)
    cwd: str | None = Field(
        None, description="Folder the command runs in, relative to the target file's (default: the target file's)."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Variables added to the worker's environment for this command (templates)."
    )


class LeverParameter(StrictModel):
    """A value a lever takes: a rollout percentage or a tunable number.

    A ``range`` lever's templates see the value as ``parameter``; its check must say whether the target holds
    that value (e.g. ``response.json.pool == parameter``). Rolling it back sets ``baseline`` again, and a
    campaign tunes it by short trial load tests, the first of them at ``baseline``.
    """

    kind: Literal["percentage", "range"]
    minimum: float = 0
    maximum: float = 100
    default: float = Field(100, description="The value an apply without tuning sets.")
    baseline: float | None = Field(None, description="range: the value in effect before the lever (required).")
    integer: bool = Field(False, description="range: only whole numbers (pool sizes, worker counts).")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.minimum <= self.default <= self.maximum:
            raise ValueError("need minimum <= default <= maximum")
        if self.kind == "range":
            if self.baseline is None:
                raise ValueError("a range parameter needs baseline: the value in effect before the lever")
            if not self.minimum <= self.baseline <= self.maximum:
                raise ValueError("need minimum <= baseline <= maximum")
        return self

    def value(self, raw: float) -> float | int:
        """``raw`` as the lever takes it: within the bounds, whole when ``integer``."""
        bounded = min(max(raw, self.minimum), self.maximum)
        return round(bounded) if self.integer else bounded


class _LeverBase(StrictModel):
    name: str = Field(pattern=_NAME)
    description: str = ""
    role: Role = Field(Role.BACKEND_DEVELOPER, description="Which role applies it.")
    addresses: list[Addresses] = Field(min_length=1, description="Findings this lever can fix.")
    risk: Literal["low", "medium", "high"] = "low"
    parameter: LeverParameter | None = None
    conflicts_with: list[str] = Field(
        default_factory=list,
        description="Levers that must never be applied in the same trial as this one (both ways). Levers that "
        "set the same flag, index or command conflict without saying so.",
    )
    resources: list[str] = Field(
        default_factory=list,
        description="What the lever changes or restarts, in names of your choosing (e.g. 'api-service', "
        "'nginx'). Levers that share one never run at the same time, on any worker of this machine, and are "
        "never applied in the same trial. Unset: a shell lever is serialized per program it runs.",
    )
    generated: bool = Field(False, description="True for levers Ratchet wrote from evidence.")
    rollout: bool = Field(
        False,
        description="Percentage-capable: its apply takes {{ percent }} (0-100), the share of requests that see it, "
        "so the deployment can roll it out to production in steps. Its check sees the same percent, and none when "
        "rolling back: then it must say whether the lever is in effect at any share.",
    )

    @model_validator(mode="after")
    def _templates_work(self, info: ValidationInfo) -> Self:
        # Rendered with a sample of what the lever will be given: a typo is said when the file is read, with its
        # line. Only then: payloads (a workflow's input, replayed) are decoded without this cost or risk.
        if (info.context or {}).get("base_dir") is None:
            return self
        found = lever_template_problem(self, self.parameter.default if self.parameter is not None else None)
        if found is not None:
            raise LocatedValueError(*found)
        return self


class SqlLever(_LeverBase):
    """DDL or settings run against the target's database."""

    kind: Literal["sql"]
    apply: list[str] = Field(min_length=1)
    rollback: list[str] = Field(min_length=1)
    check: str | None = Field(None, description="A query whose first column is truthy when the lever is applied.")


class HttpLever(_LeverBase):
    """Calls to an admin or feature-flag API."""

    kind: Literal["http"]
    apply: list[HttpAction] = Field(min_length=1)
    rollback: list[HttpAction] = Field(min_length=1)
    check: HttpCheck | None = None


class ShellLever(_LeverBase):
    """Commands, e.g. rewrite a config file and restart a service."""

    kind: Literal["shell"]
    apply: list[ShellAction] = Field(min_length=1)
    rollback: list[ShellAction] = Field(min_length=1)
    check: ShellAction | None = Field(None, description="Exit status 0 means applied.")


Lever = Annotated[SqlLever | HttpLever | ShellLever, Field(discriminator="kind")]


class ScenarioStep(StrictModel):
    """One request of a behaviour scenario, with what its answer must satisfy."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(description="Path on the target, with {{ saved.name }} from earlier steps where needed.")
    json_body: Any = Field(None, alias="json", description="JSON body (strings may use {{ saved.name }}).")
    expect: str = Field(
        "response.status < 400",
        description="Jinja expression over `response` (status, json, text) and `saved` that must be true.",
    )
    save: dict[str, str] = Field(
        default_factory=dict, description="name -> Jinja expression over `response`, kept for later steps."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _expressions_work(self, info: ValidationInfo) -> Self:
        if (info.context or {}).get("base_dir") is None:  # as for lever templates: when a file is read
            return self
        names = "response.status, response.json, response.text and saved.NAME"
        for location, expression in [(("expect",), self.expect), *((("save", k), v) for k, v in self.save.items())]:
            problem = expression_problem(expression, {"response", "saved"}, names)
            if problem is not None:
                raise LocatedValueError(location, problem)
        # The request's own templates see only what earlier steps saved.
        templates: list[tuple[tuple[str | int, ...], str]] = [(("path",), self.path)]
        for at, text in [*templates, *_strings_in(self.json_body, ("json",))]:
            problem = template_names_problem(text, {"saved"}, "saved.NAME (what earlier steps saved)")
            if problem is not None:
                raise LocatedValueError(at, problem)
        return self


def _strings_in(value: Any, location: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every string inside a JSON body, with where it is."""
    if isinstance(value, str):
        return [(location, value)]
    if isinstance(value, dict):
        return [found for key, child in value.items() for found in _strings_in(child, (*location, key))]
    if isinstance(value, list):
        return [found for index, child in enumerate(value) for found in _strings_in(child, (*location, index))]
    return []


class Scenario(StrictModel):
    """Requests in order whose expectations must keep holding after every change (writes included)."""

    name: str = Field(min_length=1)
    steps: list[ScenarioStep] = Field(min_length=1)


_CONTRACT_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


_CONTRACT_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


_ContractMethod = Literal["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]


def _reads_only() -> list[_ContractMethod]:
    return ["GET"]


class ApiContract(StrictModel):
    """The target's OpenAPI document, exercised with schemathesis before any change and after the changes:
    a contract failure the changes add (an undocumented status, a body off its schema, a server error) is a
    change of behaviour. Failures already there before any change are the baseline, not held against them."""

    openapi: str = Field(description="The OpenAPI document: a path on the base URL (/openapi.json) or a URL.")
    methods: list[_ContractMethod] = Field(
        default_factory=_reads_only,
        description="Operations exercised; writes only when listed (schemathesis sends generated data).",
    )
    exclude_paths: list[str] = Field(default_factory=list, description="Path templates left out (admin APIs).")
    max_examples: int = Field(10, ge=1, le=1000, description="Generated cases per operation.")
    checks: list[str] = Field(default_factory=lambda: list(_CONTRACT_CHECKS), description="schemathesis checks.")
    timeout: Duration = Field(default="3m", validate_default=True, description="Longest a run may take.")


class Behaviour(StrictModel):
    """What the test-engineer checks after each change: the answers of every GET endpoint (a few examples
    each) must stay the same, and every scenario's expectations must keep holding. A change that alters
    either is rolled back, however much faster it is.

    Answers are compared as a client reads them: JSON without the ``volatile`` keys (at any depth), an HTML
    page by its visible text, anything else byte for byte once decoded. Scenarios that write should use data
    the compared GET examples do not read (a customer of their own), or those answers change by design.
    """

    volatile: list[str] = Field(default_factory=list, description="JSON keys whose values may differ (ids, times).")
    examples_per_endpoint: int = Field(2, ge=0, le=20, description="Examples of each GET endpoint recorded.")
    scenarios: list[Scenario] = Field(default_factory=list)
    api: ApiContract | None = Field(None, description="Check the target's OpenAPI contract with schemathesis.")


class Traces(StrictModel):
    """The target's spans: it exports OTLP/HTTP to Ratchet's receiver (`ratchet traces serve`)."""

    propagate: bool = Field(
        True,
        description="Start every load-test request's trace (W3C traceparent) so spans are told apart by run and "
        "endpoint. Off: spans are not collected per run.",
    )
    settle: Duration = Field(
        default="6s",
        validate_default=True,
        description="Quiet time after which the target has sent a run's last spans (OpenTelemetry's batch span "
        "processor exports every 5 s by default).",
    )


class Processes(StrictModel):
    """How to find the target's processes for resource samples (first that names any; children included)."""

    pid_file: Path | None = Field(None, description="A file holding the main process id.")
    port: int | None = Field(None, ge=1, le=65535, description="The TCP port it listens on.")
    command: str | None = Field(None, description="A regular expression over the command line.")

    @field_validator("command")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class CacheCounters(StrictModel):
    """A cache whose hits and misses the target publishes as counters in the Prometheus text format (a
    /metrics page): the lookups of each load run are the counters' growth during it."""

    name: str = Field(pattern=_NAME, description="Short name used in checks, findings and reports.")
    metrics_url: str = Field(
        "/metrics", min_length=1, description="The metrics page: a path on base_url, or an absolute URL."
    )
    hits: str = Field(description='Series selector of the hit counter, e.g. cache_hits_total{cache="orders"}.')
    misses: str = Field(description='Series selector of the miss counter, e.g. cache_misses_total{cache="orders"}.')

    @field_validator("hits", "misses")
    @classmethod
    def _valid_selector(cls, value: str) -> str:
        parse_selector(value)  # its ValueError says what is wrong
        return value


class LoadScript(StrictModel):
    """Your own k6 script instead of the generated one; a tag on its requests says which endpoint each is.

    Ratchet runs it with RATCHET_BASE_URL, RATCHET_RATE (req/s), RATCHET_DURATION (e.g. 20s), RATCHET_MAX_VUS,
    RATCHET_LABEL and, for a stress run, RATCHET_STAGES (JSON: [{"rate":…, "duration":"10s"}, …]) in ``__ENV``,
    for the script to use; requests whose tag matches no endpoint are left out of the numbers.
    """

    file: Path = Field(description="The k6 script, relative to the target file.")
    endpoint_tag: str = Field(
        "endpoint", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="The request tag that names the endpoint."
    )
    tag_values: dict[str, str] = Field(
        default_factory=dict,
        description="Tag value -> endpoint name, where they differ (other values are endpoint names already).",
    )
    source: SkipJsonSchema[str] = Field("", description="The script's text, read when the target is loaded.")

    @model_validator(mode="after")
    def _read_script(self, info: ValidationInfo) -> Self:
        if self.source:
            return self  # already read (a payload travelling between workflow and activities)
        base = (info.context or {}).get("base_dir", Path("."))
        path = self.file if self.file.is_absolute() else Path(base) / self.file
        try:
            self.source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the k6 script {path}: {exc.strerror or exc}") from None
        if not self.source.strip():
            raise ValueError(f"the k6 script {path} is empty")
        self.file = path.resolve()
        return self

    def endpoint_for(self, tag_value: str) -> str:
        return self.tag_values.get(tag_value, tag_value)


class TemporalCluster(StrictModel):
    """Where a temporal-workflow target's executions run (unset fields: Ratchet's own server and namespace)."""

    address: str | None = Field(None, description="host:port of the Temporal frontend, e.g. 127.0.0.1:7233.")
    namespace: str | None = Field(None, description="The namespace the application's workflows run in.")


class Production(StrictModel):
    """The production environment kept changes are rolled out to (the target itself is where they are tried)."""

    base_url: HttpUrl
    database: Database | None = None
    temporal: TemporalCluster | None = Field(
        None,
        description="temporal-workflow: the cluster and namespace production's executions run in (unset: the "
        "target's own); the endpoints' workflow types and task queues are the same there.",
    )

    @property
    def base(self) -> str:
        return str(self.base_url).rstrip("/")


class Ignore(StrictModel):
    """What the target's owners know and accept: it never makes a finding of its own (the assessment still says
    how many findings it left out, and which)."""

    endpoints: list[str] = Field(
        default_factory=list, description="Endpoints whose findings are left out (e.g. an export slow by design)."
    )
    findings: list[str] = Field(
        default_factory=list,
        description="Fingerprints of findings to leave out, as the report and `status --json` show them "
        "(type|endpoint|key, e.g. 'n-plus-one|orders|SELECT * FROM items WHERE order_id = ?').",
    )
    statements: list[str] = Field(
        default_factory=list,
        description="Regular expressions (Python's re, searched, case-insensitive) over a finding's statements.",
    )

    @field_validator("statements")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"statement pattern {pattern!r} is not a regular expression: {exc}") from None
        return patterns


class Target(StrictModel):
    """A running system Ratchet may measure and change."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    kind: Literal["http", "temporal-workflow"] = Field(
        "http",
        description="http: endpoints are requests, measured with k6. temporal-workflow: endpoints are a workflow "
        "type's executions, started at the load's rate and awaited; base_url is the application's admin API "
        "(its http levers and health).",
    )
    base_url: HttpUrl
    temporal: TemporalCluster | None = Field(
        None, description="temporal-workflow: the cluster the executions run on (default: Ratchet's own)."
    )
    database: Database | None = None
    traces: Traces | None = Field(None, description="Collect the target's OpenTelemetry spans during load tests.")
    processes: Processes | None = Field(
        None,
        description="Where to find the target's processes for 1 Hz resource samples; unset: the process "
        "listening on base_url's port, when that is on this machine.",
    )
    load_script: LoadScript | None = Field(
        None, description="Your own k6 script instead of the one Ratchet generates from the endpoints."
    )
    caches: list[CacheCounters] = Field(
        default_factory=list, description="Caches whose hit rate is measured in every load run (slo.cache_hit_rate)."
    )
    # At most 255: a trace id Ratchet starts carries the endpoint's position in one byte.
    endpoints: list[Endpoint] = Field(min_length=1, max_length=255)
    levers: list[Lever] = Field(default_factory=list)
    behaviour: Behaviour = Field(default_factory=Behaviour)
    production: Production | None = Field(
        None, description="Where validated changes are rolled out, in the playbook's steps; unset: they bake here."
    )
    ignore: Ignore = Field(default_factory=Ignore, description="Findings the target's owners accept.")
    folder: SkipJsonSchema[str] = Field(
        "", description="The target file's folder, set when it is loaded: shell levers run there."
    )

    @model_validator(mode="after")
    def _remember_folder(self, info: ValidationInfo) -> Self:
        base = (info.context or {}).get("base_dir")
        if not self.folder and base is not None:
            self.folder = str(Path(base).resolve())
        return self

    def in_production(self) -> Target:
        """The same target at its production address (its levers then act on production)."""
        assert self.production is not None
        return self.model_copy(
            update={
                "base_url": self.production.base_url,
                "database": self.production.database,
                "temporal": self.production.temporal or self.temporal,
                "production": None,
                "processes": None,
                "traces": None,
            }
        )

    @model_validator(mode="after")
    def _unique_names_and_known_endpoints(self) -> Self:
        for label, names in (
            ("endpoints", [e.name for e in self.endpoints]),
            ("levers", [x.name for x in self.levers]),
            ("caches", [c.name for c in self.caches]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                again = [i for i, n in enumerate(names) if n in dupes][1]  # the second of a repeated name
                raise LocatedValueError((label, again, "name"), f"{label}: names must be unique, repeated: {dupes}")
        self._endpoints_of_its_kind()
        known = {e.name for e in self.endpoints}
        unknown = sorted(set(self.ignore.endpoints) - known)
        if unknown:
            raise LocatedValueError(
                ("ignore", "endpoints"), f"unknown endpoint(s) {unknown}; valid: {', '.join(sorted(known))}"
            )
        for index, lever in enumerate(self.levers):
            for number, address in enumerate(lever.addresses):
                if address.endpoint != "*" and address.endpoint not in known:
                    raise LocatedValueError(
                        ("levers", index, "addresses", number, "endpoint"),
                        f"lever {lever.name!r} addresses unknown endpoint {address.endpoint!r}; "
                        f"valid: '*', {', '.join(sorted(known))}",
                    )
            unknown = sorted(set(lever.conflicts_with) - {x.name for x in self.levers})
            if unknown:
                raise LocatedValueError(
                    ("levers", index, "conflicts_with"),
                    f"lever {lever.name!r}: conflicts_with names unknown lever(s) {unknown}; valid: "
                    + (", ".join(sorted(x.name for x in self.levers if x.name != lever.name)) or "(no other lever)"),
                )
            if lever.kind == "sql" and self.database is None:
                raise LocatedValueError(
                    ("levers", index, "kind"), f"lever {lever.name!r} is kind sql but the target has no database"
                )
        if self.load_script is not None:
            for value, name in self.load_script.tag_values.items():
                if name not in known:
                    raise LocatedValueError(
                        ("load_script", "tag_values", value),
                        f"{value!r} maps to unknown endpoint {name!r}; valid: {', '.join(sorted(known))}",
                    )
        return self

    def _endpoints_of_its_kind(self) -> None:
        if self.kind == "http":
            wrong = [e.name for e in self.endpoints if e.workflow is not None]
            if wrong or self.temporal is not None or (self.production and self.production.temporal):
                first = next((i for i, e in enumerate(self.endpoints) if e.workflow is not None), None)
                raise LocatedValueError(
                    ("endpoints", first, "workflow") if first is not None else ("temporal",),
                    f"endpoints {wrong} start workflows (or temporal: or production.temporal: is set) but kind is http; "
                    "set kind: temporal-workflow, and give every endpoint a workflow",
                )
            return
        wrong = [e.name for e in self.endpoints if e.workflow is None]
        if wrong:
            raise LocatedValueError(
                ("kind",),
                f"kind temporal-workflow: endpoints {wrong} have no workflow (type, task_queue, inputs); "
                "a target measures HTTP endpoints or workflows, not both",
            )
        unsupported = [
            field
            for field, value in (
                ("load_script", self.load_script),
                ("traces", self.traces),
                ("behaviour.api", self.behaviour.api),
            )
            if value is not None
        ]
        if unsupported:
            raise LocatedValueError(
                tuple(unsupported[0].split(".")),
                f"kind temporal-workflow does not take {unsupported} (executions are measured by history)",
            )

    @property
    def is_workflow(self) -> bool:
        return self.kind == "temporal-workflow"

    @property
    def http_endpoints(self) -> list[Endpoint]:
        """The endpoints k6, the probe and the behaviour checks send HTTP requests to."""
        return [e for e in self.endpoints if e.workflow is None]

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint with that name (KeyError if there is none)."""
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)

    @property
    def base(self) -> str:
        """The base URL without a trailing slash."""
        return str(self.base_url).rstrip("/")
