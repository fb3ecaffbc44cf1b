"""Playbooks and targets: the shipped files load, and bad files get errors naming line, field and what is valid."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ratchet.config.loading import load_playbook, load_target
from ratchet.config.schema import SCHEMAS, schema_text
from ratchet.errors import ConfigError, LeverError
from ratchet.templating import evaluate

ROOT = Path(__file__).resolve().parents[1]

GOOD_TARGET = """\
name: t
base_url: http://127.0.0.1:9
database:
  url: sqlite:///shop.db
endpoints:
  - name: orders
    path: /orders?email={email}
    examples: [{email: a@example.com}]
levers:
  - name: ix
    kind: sql
    addresses: [{finding: missing-index, endpoint: orders}]
    apply: ["CREATE INDEX IF NOT EXISTS ix ON orders (email)"]
    rollback: ["DROP INDEX IF EXISTS ix"]
"""


@pytest.mark.parametrize("path", sorted((ROOT / "playbooks").glob("*.yaml")))
def test_shipped_playbooks_load(path: Path) -> None:
    playbook = load_playbook(path)
    assert playbook.approvers
    assert "planning" in {p.value for p in playbook.gates}


def test_demo_target_loads_with_relative_database_resolved() -> None:
    target = load_target(ROOT / "examples" / "shop" / "target.yaml")
    assert target.database is not None
    assert Path(target.database.url.removeprefix("sqlite:///")).is_absolute()
    assert {e.name for e in target.endpoints} >= {"orders-by-email", "product", "health"}


HTTP_LEVER = """\
  - name: flag
    kind: http
    addresses: [{finding: slow-endpoint, endpoint: orders}]
    apply: [{url: "{{ target.base_url }}/flags", json: {on: true}}]
    rollback: [{url: "{{ target.base_url }}/flags", json: {on: false}}]
    check: {url: "{{ target.base_url }}/flags", applied_when: "WHEN"}
"""

# (file kind, content, fragments the message must contain)
MALFORMED = [
    ("playbook", "name: x\napprovers: [a]\nload:\n  rate: -5\n", ["x.yaml:4", "load.rate", "above 0", "auto"]),
    ("playbook", "name: x\napprovers: [a]\nload:\n  duration: soon\n", ["x.yaml:4", "load.duration", "30s"]),
    (
        "playbook",
        "name: x\napprovers: [a]\ngatez: {}\n",
        ["x.yaml:3", "gatez", "unknown field", "valid fields", "gates"],
    ),
    ("playbook", "name: x\n", ["approvers", "required"]),
    ("playbook", "name: x\napprovers: []\n", ["x.yaml:2", "approvers", "at least 1"]),
    ("playbook", "name: x\napprovers: [a]\ngates:\n  lunch: {}\n", ["x.yaml:4", "gates.lunch", "planning"]),
    ("playbook", "name: x\napprovers: [a]\ngates:\n  assessment: {}\n", ["x.yaml:4", "cannot be gated", "deployment"]),
    (
        "playbook",
        "name: x\napprovers: [a]\napprovals:\n  mode: signed\n",
        ["x.yaml:4", "approvals.mode", "no public key for a"],
    ),
    (
        "playbook",
        "name: x\napprovers: [a]\ngates:\n  planning:\n    on_timeout: panic\n",
        ["x.yaml:5", "gates.planning.on_timeout", "'abort' or 'escalate'"],
    ),
    ("playbook", "name: x\napprovers: [a]\nvalidation:\n  significance: 2\n", ["x.yaml:4", "validation.significance"]),
    (
        "playbook",
        "name: x\napprovers: [a]\nload:\n  stress: {start_rate: 50, max_rate: 20}\n",
        ["x.yaml:4", "load.stress", "max_rate must be above start_rate"],
    ),
    (
        "playbook",
        "name: x\napprovers: [a]\nload:\n  rate: 100\n  stress: {max_rate: 20}\n",
        ["load", "max_rate 20 must be above the start rate 50"],
    ),
    ("playbook", "name: x\napprovers: [a]\nload:\n  generators: 0\n", ["x.yaml:4", "load.generators"]),
    ("playbook", "name: x\napprovers: [a\n", ["not valid YAML"]),
    ("playbook", "", ["empty"]),
    ("playbook", "- just\n- a list\n", ["mapping"]),
    ("target", GOOD_TARGET.replace("base_url: http://127.0.0.1:9", "base_url: not a url"), ["x.yaml:2", "base_url"]),
    ("target", GOOD_TARGET.replace("kind: sql", "kind: ssh"), ["x.yaml:11", "levers.0.kind", "'sql', 'http', 'shell'"]),
    ("target", GOOD_TARGET.replace("path: /orders?email={email}", "path: orders"), ["x.yaml:7", "must start with '/'"]),
    ("target", GOOD_TARGET.replace("examples: [{email: a@example.com}]", "examples: [{mail: a}]"), ["lacks ['email']"]),
    (
        "target",
        GOOD_TARGET.replace("endpoint: orders}", "endpoint: basket}"),
        ["unknown endpoint 'basket'", "orders"],
    ),
    ("target", GOOD_TARGET.replace("sqlite:///shop.db", "mysql://x/y"), ["x.yaml:4", "database.url", "sqlite:///"]),
    (
        "target",
        GOOD_TARGET.replace("    method: GET\n", "").replace("    path:", "    method: FETCH\n    path:"),
        ["endpoints.0.method", "'GET'"],
    ),
    (
        "target",
        GOOD_TARGET.replace('    rollback: ["DROP INDEX IF EXISTS ix"]\n', ""),
        ["x.yaml:10", "levers.0.rollback", "required"],
    ),
    (
        "target",
        GOOD_TARGET.replace("name: t\n", "name: t\nbase: 1\n"),
        ["x.yaml:2", "base", "unknown field", "base_url"],
    ),
    ("target", "name: t\nbase_url: ${NOT_SET_ANYWHERE}\nendpoints: []\n", ["x.yaml:2", "NOT_SET_ANYWHERE is not set"]),
    (
        "target",
        GOOD_TARGET.replace("name: t\n", "name: t\nkind: temporal-workflow\n"),
        ["x.yaml:2", "kind", "have no workflow"],
    ),
    (
        "target",
        GOOD_TARGET + "load_script: {file: missing.js}\n",
        ["load_script", "cannot read the k6 script", "missing.js"],
    ),
    (
        "target",
        GOOD_TARGET + "load_script: {file: x.yaml, tag_values: {a: basket}}\n",
        ["unknown endpoint 'basket'", "orders"],
    ),
    ("target", GOOD_TARGET + "ignore: {endpoints: [basket]}\n", ["ignore.endpoints", "'basket'", "valid: orders"]),
    (
        "playbook",
        "name: x\napprovers: [a]\nload:\n  rate: 5\n  duration: 10s\n  rate: 500\n",
        ["x.yaml:6", "load.rate", "given twice (lines 4 and 6)", "keep one"],
    ),
    ("target", GOOD_TARGET + "name: other\n", ["name", "given twice (lines 1 and"]),
    (
        "target",
        GOOD_TARGET
        + "behaviour:\n  scenarios:\n    - name: s\n      steps:\n        - {path: /a, expect: 'reponse.status < 400'}\n",
        ["x.yaml:19", "behaviour.scenarios.0.steps.0.expect", "unknown name(s) reponse"],
    ),
    (
        "target",
        GOOD_TARGET + HTTP_LEVER.replace("name: flag", "name: ix").replace("WHEN", "true"),
        ["x.yaml:15", "levers.1.name", "names must be unique", "['ix']"],
    ),
    # Lever templates and expressions, tried when the file is read (each pointing at its own line).
    (
        "target",
        GOOD_TARGET.replace("ON orders (email)", "ON {{ target.dialekt }} (email)"),
        ["x.yaml:13", "levers.0.apply.0", "no attribute 'dialekt'", "target.dialect"],
    ),
    (
        "target",
        GOOD_TARGET.replace('"DROP INDEX IF EXISTS ix"', '"DROP INDEX {{ ix"'),
        ["x.yaml:14", "levers.0.rollback.0", "not a valid template"],
    ),
    (
        "target",
        GOOD_TARGET + HTTP_LEVER.replace("WHEN", "respose.json.on"),
        ["x.yaml:20", "levers.1.check.applied_when", "unknown name(s) respose", "response.json"],
    ),
    (
        "target",
        GOOD_TARGET + HTTP_LEVER.replace("WHEN", "response.json.on ==="),
        ["x.yaml:20", "levers.1.check.applied_when", "not a valid expression"],
    ),
    (
        "target",
        GOOD_TARGET + HTTP_LEVER.replace("{on: true}", "{n: '{% for i in range(10**9) %}{% endfor %}'}"),
        ["x.yaml:18", "levers.1.apply.0.json.n", "Range too big"],
    ),
    # A template's work is bounded: a repetition or a power too large is refused before it is computed, a
    # loop too long stops (each of these held a worker, or took all of the host's memory).
    (
        "target",
        GOOD_TARGET + HTTP_LEVER.replace("{on: true}", "{n: '{{ \"x\" * 10**10 }}'}"),
        ["x.yaml:18", "levers.1.apply.0.json.n", "a repetition of 10,000,000,000 items"],
    ),
    (
        "target",
        GOOD_TARGET
        + HTTP_LEVER.replace(
            "{on: true}", "{n: '{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}'}"
        ),
        ["x.yaml:18", "levers.1.apply.0.json.n", "steps (a loop too long?)"],
    ),
    (
        "target",
        GOOD_TARGET + HTTP_LEVER.replace("{on: true}", "{n: '{{ 2 ** 99999999 }}'}"),
        ["x.yaml:18", "levers.1.apply.0.json.n", "a power of about 30,102,999 digits"],
    ),
    # A scenario's request templates: their syntax and names (only what earlier steps saved).
    (
        "target",
        GOOD_TARGET
        + "behaviour:\n  scenarios:\n    - name: s\n      steps:\n        - {path: '/a/{{ saved.id', expect: 'true'}\n",
        ["x.yaml:19", "behaviour.scenarios.0.steps.0.path", "not a valid template"],
    ),
    (
        "target",
        GOOD_TARGET + "behaviour:\n  scenarios:\n    - name: s\n      steps:\n        - {path: /a, expect: 'true'}\n"
        "        - {method: POST, path: /b, json: {id: '{{ savd.id }}'}}\n",
        ["x.yaml:20", "behaviour.scenarios.0.steps.1.json.id", "unknown name(s) savd", "saved.NAME"],
    ),
    (
        "target",
        GOOD_TARGET + HTTP_LEVER.replace("WHEN", "true") + "    conflicts_with: [ixx]\n",
        ["x.yaml:21", "levers.1.conflicts_with", "unknown lever(s) ['ixx']", "valid: ix"],
    ),
    (
        "target",
        GOOD_TARGET + "ignore:\n  statements: ['FROM (orders']\n",
        ["ignore.statements", "'FROM (orders' is not a regular expression"],
    ),
]


@pytest.mark.parametrize(("kind", "content", "fragments"), MALFORMED)
def test_malformed_files_get_clear_errors(tmp_path: Path, kind: str, content: str, fragments: list[str]) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(content)
    loader = load_playbook if kind == "playbook" else load_target
    with pytest.raises(ConfigError) as caught:
        loader(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"


def test_yaml_merge_keys_take_what_the_mapping_does_not_say_itself(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_text(
        "name: x\napprovers: [a]\ngates:\n  planning: &gate {timeout: 1h, on_timeout: abort}\n"
        "  deployment:\n    <<: *gate\n    timeout: 2h\n"
    )
    gates = load_playbook(path).gates
    assert [(g.timeout.total_seconds(), g.on_timeout.value) for g in gates.values()] == [
        (3600, "abort"),
        (7200, "abort"),
    ]
    path.write_text("name: x\napprovers: [a]\nload:\n  <<: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"book\.yaml:4: load: << merges mappings only"):
        load_playbook(path)


def test_an_expression_too_costly_to_evaluate_is_a_lever_error_when_it_runs() -> None:
    """An applied_when is evaluated against the answer of its check: its work is bounded there too."""
    for expression, said in (
        ("response.json.n * 10**10 == 1", "a repetition of"),
        ("2 ** 99999999 > response.status", "a power of about"),
    ):
        with pytest.raises(LeverError, match=said):
            evaluate(expression, {"response": {"status": 200, "json": {"n": "x"}}}, where="check")


def test_validate_command_exits_2_with_message_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\napprovers: [a]\nload:\n  rate: fast\n")
    result = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "playbook", "validate", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "bad.yaml:4: load.rate" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

    # An empty SQLite database: validate opens it read-only and finds none of the tables the statements use,
    # each said at its statement's line with the tables there are.
    database = tmp_path / "shop.db"
    sqlite3.connect(database).close()
    env = {**os.environ, "SHOP_DB": str(database)}
    env.pop("SHOP_DATABASE_URL", None)
    validate = [sys.executable, "-m", "ratchet.cli", "target", "validate", str(ROOT / "examples/shop/target.yaml")]
    empty = subprocess.run(validate, capture_output=True, text=True, env=env)
    said = " ".join(empty.stderr.split())
    assert (
        empty.returncode == 2 and "target.yaml:42: endpoints.0.queries.0.sql: the database has no table orders" in said
    )
    assert "levers.0.apply.0: the database has no table orders" in said and "Traceback" not in said

    # With the shop's tables (in WAL mode, as the shop keeps its database), it is valid, and reading it left
    # no -wal or -shm file beside it.
    with sqlite3.connect(database) as connection:
        for table in ("orders", "products", "customers", "product_details"):
            connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
        connection.execute("PRAGMA journal_mode=wal")
    connection.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    good = subprocess.run(validate, capture_output=True, text=True, env=env)
    assert good.returncode == 0, good.stderr
    assert "valid target 'demo-shop'" in good.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    # A misspelt database path: said at validate time, at the URL's line, and no empty file is left behind.
    typo = tmp_path / "shpo.db"
    missing = subprocess.run(validate, capture_output=True, text=True, env={**env, "SHOP_DB": str(typo)})
    said = " ".join(missing.stderr.split())
    assert missing.returncode == 2 and "target.yaml:17: database.url: no SQLite file at" in said, missing.stderr
    assert not typo.exists()


def test_committed_json_schemas_are_current() -> None:
    for name, model in SCHEMAS.items():
        committed = (ROOT / "playbooks" / "schema" / name).read_text()
        assert committed == schema_text(model), f"run `make schema`: {name} is stale"
        assert json.loads(committed)["title"] in ("Playbook", "Target")


def test_launch_with_a_bad_file_exits_2_before_contacting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "book.yaml"
    bad.write_text("name: x\napprovers: [a]\ngates:\n  planning: {timeout: forever}\n")
    result = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "launch", str(bad), "--target", str(ROOT / "examples/shop/target.yaml")],
        capture_output=True,
        text=True,
        # Nothing listens here: reaching Temporal would fail with exit 4 instead.
        env={**os.environ, "RATCHET_TEMPORAL_ADDRESS": "127.0.0.1:1", "RATCHET_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "book.yaml:4: gates.planning.timeout" in result.stderr


def test_the_readme_walkthrough_target_is_valid(tmp_path: Path) -> None:
    """The bring-your-own-service walkthrough's target loads as written (docs that a user copies must work)."""
    readme = (ROOT / "README.md").read_text()
    walkthrough = readme[readme.index("### Bring your own service") :]
    block = walkthrough[walkthrough.index("```yaml\n") + len("```yaml\n") : walkthrough.index("   ```\n")]
    path = tmp_path / "myapi.yaml"
    path.write_text("\n".join(line[3:] for line in block.splitlines()) + "\n")
    target = load_target(path)
    assert [e.name for e in target.endpoints] == ["search", "book", "health"]
    assert target.ignore.endpoints == ["health"] and target.traces is not None


def test_approving_with_an_empty_only_list_is_refused_before_contacting_anything(tmp_path: Path) -> None:
    """`--only "$IDS"` with IDS unset must not approve every recommendation."""
    for only in ("", " , "):
        result = subprocess.run(
            [sys.executable, "-m", "ratchet.cli", "approve", "c-1", "--only", only, "--as", "alice"],
            capture_output=True,
            text=True,
            env={**os.environ, "RATCHET_TEMPORAL_ADDRESS": "127.0.0.1:1", "RATCHET_HOME": str(tmp_path)},
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "--only: no recommendation ids given" in " ".join(result.stderr.split())


def test_launch_on_a_target_whose_database_is_not_there_exits_2_before_contacting_anything(tmp_path: Path) -> None:
    typo = tmp_path / "shpo.db"
    env = {**os.environ, "SHOP_DB": str(typo), "RATCHET_TEMPORAL_ADDRESS": "127.0.0.1:1", "RATCHET_HOME": str(tmp_path)}
    env.pop("SHOP_DATABASE_URL", None)
    result = subprocess.run(
        [
            sys.executable, "-m", "ratchet.cli", "launch", str(ROOT / "playbooks/web-api.yaml"),
            "--target", str(ROOT / "examples/shop/target.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,  # nothing listens at that Temporal address: reaching it would exit 4 instead
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "database.url: no SQLite file at" in " ".join(result.stderr.split()) and not typo.exists()
