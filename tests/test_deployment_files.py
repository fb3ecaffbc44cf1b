"""docker-compose.yml and the Dockerfile, checked where no container engine runs: the compose file against the
Compose specification's JSON Schema (deploy/compose-spec/, from github.com/compose-spec/compose-spec), every
command in it against the real command line it names, and the image it needs built from this repository."""

from __future__ import annotations

import json
import os
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from examples.shop.__main__ import command_line as shop_command_line
from ratchet.cli.app import app
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "deploy" / "compose-spec" / "compose-spec.json"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # The schema catches what a mistyped key would be: not a silent no-op.
    broken = compose()
    broken["services"]["shop"]["comand"] = ["ratchet"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


class NotACommand(Exception):
    """The words name no ratchet command."""


def ratchet_leaf(argv: list[str]) -> Any:
    """The ratchet command ``argv`` names, its flags parsed as the CLI parses them (nothing runs); raises
    NotACommand, or typer's own error for an unknown or malformed flag."""
    command = typer.main.get_command(app)
    name, rest = "ratchet", list(argv)
    context = typer.Context(command, info_name=name)
    while hasattr(command, "get_command"):  # a group; Ratchet's groups take no options of their own
        sub = command.get_command(context, rest[0]) if rest else None
        if sub is None:
            raise NotACommand(f"{name}: no command {rest[:1]}")
        command, name, rest = sub, rest[0], rest[1:]
        context = typer.Context(command, parent=context, info_name=name)
    command.make_context(name, rest, parent=context.parent)
    return command


@pytest.mark.parametrize("service", sorted(compose()["services"]))
def test_every_command_in_the_compose_file_is_a_real_command_with_real_flags(service: str) -> None:
    definition = compose()["services"][service]
    command = definition.get("command")
    if command is None:
        assert "image" in definition and "RATCHET_IMAGE" not in str(definition["image"]), service
        return  # a third-party image's own command
    assert isinstance(command, list), f"{service}: command as a list (no shell between it and the process)"
    if command[0] == "ratchet":
        ratchet_leaf(command[1:])
    else:
        assert command[:3] == ["python", "-m", "examples.shop"], f"{service}: {command}"
        shop_command_line().parse_args(command[3:])


def test_a_wrong_flag_or_command_is_caught() -> None:
    with pytest.raises(typer.TyperException, match="--rolez"):
        ratchet_leaf(["worker", "--rolez", "perf-optimizer"])
    with pytest.raises(NotACommand, match="serv"):
        ratchet_leaf(["traces", "serv"])
    with pytest.raises(typer.TyperException):
        ratchet_leaf(["traces", "serve", "--port", "many"])
    with pytest.raises(SystemExit):
        shop_command_line().parse_args(["--db", "x", "--prot", "1"])


def test_the_image_the_compose_file_runs_is_built_from_this_repository() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile and "COPY . /app" in dockerfile
    assert "chromium" in dockerfile  # page vitals need Debian's Chromium, as on a laptop
    # Every service built from the image runs where the Dockerfile puts the repository.
    for name, service in compose()["services"].items():
        if "RATCHET_IMAGE" in str(service.get("image", "")):
            assert service.get("working_dir") == "/app", name
    # The receiver listens beyond the container's loopback, the services send it their spans, and the workers
    # read them from it.
    services = compose()["services"]
    assert "0.0.0.0" in services["trace-receiver"]["command"]
    assert services["shop"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://trace-receiver:4318"
    assert services["load-generator"]["environment"]["RATCHET_OTLP_HOST"] == "trace-receiver"
    assert os.sep not in services["load-generator"]["command"][0]
