"""Read playbook and target YAML into validated models, with errors that name file, line and field.

PyYAML's node tree keeps the line of every key, so a pydantic error location such as
``levers.0.apply`` can be pointed at the line a person has to edit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ratchet import secrets
from ratchet.config.playbook import Playbook
from ratchet.config.target import Target
from ratchet.database.reachable import database_tables, holds_password
from ratchet.errors import ConfigError, ConfigProblem, LocatedValueError

ModelT = TypeVar("ModelT", bound=BaseModel)
Location = tuple[str | int, ...]

# A default may itself hold references one level deep, e.g. ${SHOP_DATABASE_URL:-sqlite:///${SHOP_DB:-x.db}}.
_ENV_REFERENCE = re.compile(r"\$\{(\w+)(?::-((?:[^${}]|\$(?!\{)|\$\{\w+(?::-[^${}]*)?\})*))?\}")


def expand_environment(text: str, used: dict[str, str] | None = None) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` so one target file serves several machines.

    A value from the environment (or ``RATCHET_SECRETS_FILE``) is used as it is, and its name is remembered: the
    payload codec keeps the value out of Temporal (``ratchet.secrets``). A default that is used is expanded in
    turn (a default is written in the file, so it is no secret). ``used`` collects the names taken from the
    environment with their values.
    """

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = secrets.value_of(name)
        if value is None:
            if default is None:
                raise KeyError(name)
            return expand_environment(default, used)
        secrets.remember({name})
        if used is not None:
            used[name] = value
        return value

    return _ENV_REFERENCE.sub(replace, text)


# Fields whose values are credentials whatever the variable that fills them is called: a database URL (its
# password), a webhook URL (its token path) and request headers (Authorization). Not a shell action's
# environment: it carries paths and addresses as often, and a secret there is named like one (API_TOKEN).
def _holds_credentials(path: Location) -> bool:
    keys = [part for part in path if isinstance(part, str)]
    return (
        keys[-2:] == ["database", "url"] or keys[-1:] == ["webhook_url"] or (len(keys) >= 2 and keys[-2] == "headers")
    )


_URL_HOST = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?:[^@/]*@)?(?P<host>[^/?#]*)", re.IGNORECASE)


def _credential_names(text: str, used: dict[str, str], credential: bool) -> set[str]:
    """The names whose values in ``text`` are credentials: a URL with a password anywhere; in a credential field
    also the whole value, or any part of it but the host and port of the URL it is (no secret, and workers
    elsewhere need them as written). A SQLite URL is a file's path: nothing in it is a credential."""
    if text.lower().startswith("sqlite:"):
        credential = False
    url = _URL_HOST.match(text)
    found = set()
    for name, value in used.items():
        if len(value) < secrets.MIN_MASKED_LENGTH or value not in text:
            continue
        if holds_password(value) or (
            credential and (value == text or url is None or value not in url.group("scheme") + url.group("host"))
        ):
            found.add(name)
    return found


def _remember_credentials(data: Any, used: dict[str, str], path: Location = ()) -> None:
    """Names whose values fill a credential field, or hold a URL with a password, are secrets too: a
    ``${PG_URL}`` in database.url is kept out of Temporal as ``${SHOP_DATABASE_PASSWORD}`` is."""
    if isinstance(data, dict):
        for key, value in data.items():
            _remember_credentials(value, used, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _remember_credentials(value, used, (*path, index))
    elif isinstance(data, str) and used:
        secrets.remember_as_secret(_credential_names(data, used, _holds_credentials(path)))


class _DuplicateKey(Exception):
    def __init__(self, location: Location, first: int, again: int) -> None:
        super().__init__(location)
        self.location, self.first, self.again = location, first, again


class _NotMergeable(Exception):
    def __init__(self, location: Location, line: int) -> None:
        super().__init__(location)
        self.location, self.line = location, line


def _to_python(node: yaml.Node, path: Location, lines: dict[Location, int]) -> Any:
    """Convert a composed YAML node to Python data, recording the line of every path on the way."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: what the mapping does not say itself
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    found = _to_python(source, path, lines)
                    if not isinstance(found, dict):
                        raise _NotMergeable(path, key_node.start_mark.line + 1)
                    merged = found | merged  # the first source named wins, as YAML's merge says
                continue
            if key in result:
                raise _DuplicateKey((*path, key), lines[(*path, key)], key_node.start_mark.line + 1)
            result[key] = _to_python(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return merged | result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def read_yaml(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse a YAML file into data plus a map from field path to line number."""
    display = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(display, [ConfigProblem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(display, [ConfigProblem("", f"cannot read: {exc}")]) from None
    used: dict[str, str] = {}
    try:
        expanded = expand_environment(text, used)
    except KeyError as exc:
        name = exc.args[0]
        message = f"environment variable {name} is not set (write ${{{name}:-default}} for a default)"
        at = re.search(r"\$\{" + name + r"\b", text)
        line = text[: at.start()].count("\n") + 1 if at is not None else None
        raise ConfigError(display, [ConfigProblem("", message, line)]) from None
    text = expanded
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(display, [ConfigProblem("", f"not valid YAML: {problem}", line)]) from None
    if node is None:
        raise ConfigError(display, [ConfigProblem("", "the file is empty")])
    lines: dict[Location, int] = {}
    try:
        data = _to_python(node, (), lines)
    except _DuplicateKey as twice:
        field = ".".join(str(part) for part in twice.location)
        message = f"given twice (lines {twice.first} and {twice.again}): YAML would keep the last silently; keep one"
        raise ConfigError(display, [ConfigProblem(field, message, twice.again)]) from None
    except _NotMergeable as wrong:
        field = ".".join(str(part) for part in wrong.location)
        message = "<< merges mappings only (an alias of a mapping, or a list of them)"
        raise ConfigError(display, [ConfigProblem(field, message, wrong.line)]) from None
    if not isinstance(data, dict):
        raise ConfigError(display, [ConfigProblem("", "expected a mapping of fields at the top level", 1)])
    _remember_credentials(data, used)
    return data, lines


def _line_for(location: Location, lines: dict[Location, int]) -> int | None:
    """The line of the deepest part of the location that exists in the file."""
    for end in range(len(location), -1, -1):
        if location[:end] in lines:
            return lines[location[:end]]
    return None


def _step(node: Any, part: str | int) -> tuple[bool, Any]:
    """(found, child): whether ``part`` exists in this YAML node, and the node below it."""
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return True, node[part]
    return False, None


def _is_union_tag(node: Any, part: str | int) -> bool:
    """Pydantic adds the chosen union member to locations (levers.0.sql.apply); the file has no such key."""
    if not isinstance(node, dict) or not isinstance(part, str):
        return False
    return part.startswith(("function-", "tagged-union")) or node.get("kind") == part


def _readable_location(location: Location, data: Any) -> Location:
    """The location as a person sees it in the file: union tags dropped, unknown keys kept as written."""
    kept: list[str | int] = []
    node = data
    for part in location:
        found, child = _step(node, part)
        if found:
            node = child
        elif _is_union_tag(node, part):
            continue
        else:
            node = None
        kept.append(part)
    return tuple(kept)


def _message(error: Any, model: type[BaseModel], location: Location) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field" + _valid_fields(model, location[:-1])
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        got = error.get("ctx", {}).get("tag")
        return "must be one of 'sql', 'http', 'shell'" + (f" (got {got!r})" if got else "")
    if "input" in error and not isinstance(error["input"], dict | list) and kind not in {"value_error"}:
        message += f" (got {error['input']!r})"
    return message


def _valid_fields(model: type[BaseModel], location: Location) -> str:
    """'; valid: a, b, c' for the model found at that location, when it can be resolved."""
    current: Any = model
    for part in location:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return ""
        annotation = fields[part].annotation
        current = _inner_model(annotation)
        if current is None:
            return ""
    fields = getattr(current, "model_fields", None)
    if not fields:
        return ""
    names = [info.alias or name for name, info in fields.items()]
    return "; valid fields: " + ", ".join(names)


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def load_model(path: Path | str, model: type[ModelT]) -> ModelT:
    """Read and validate one YAML file as ``model``; raise ConfigError listing every problem."""
    path = Path(path)
    data, lines = read_yaml(path)
    try:
        return model.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            below = (error.get("ctx") or {}).get("error")
            deeper = below.location if isinstance(below, LocatedValueError) else ()
            location = _readable_location((*error["loc"], *deeper), data)
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                location = (*location, "kind")  # point at the discriminator the person has to fix
            field = ".".join(str(part) for part in location)
            problems.append(ConfigProblem(field, _message(error, model, location), _line_for(location, lines)))
        raise ConfigError(str(path), problems) from None


def load_playbook(path: Path | str) -> Playbook:
    """Read a playbook file (see playbooks/ for examples)."""
    return load_model(path, Playbook)


def load_target(path: Path | str) -> Target:
    """Read a target file; relative sqlite and pid-file paths are taken from the file's own folder."""
    target = load_model(path, Target)
    if target.processes is not None and target.processes.pid_file is not None:
        target.processes.pid_file = (Path(path).parent / target.processes.pid_file).resolve()
    database = target.database
    if database is not None and database.dialect == "sqlite":
        file_part = database.url.removeprefix("sqlite:///")
        if not Path(file_part).is_absolute():
            database.url = "sqlite:///" + str((Path(path).parent / file_part).resolve())
    return target


def check_databases(path: Path | str, target: Target) -> None:
    """Raise ConfigError, at the line of the URL, when a database of the target (its own, production's) cannot
    be opened read-only, and at the line of each statement that uses a table the database does not have:
    before a campaign starts, not after its baseline and a person's approval."""
    production = target.production.database if target.production is not None else None
    problems: list[tuple[Location, str]] = []
    for location, database in ((("database", "url"), target.database), (("production", "database", "url"), production)):
        if database is None:
            continue
        found = database_tables(database.url)
        if isinstance(found, str):
            problems.append((location, found))
            continue
        where = "production's database" if location[0] == "production" else "the database"
        for statement_at, missing in _missing_tables(target, database.dialect, found):
            valid = ", ".join(sorted(found)) or "(none: is it the right database?)"
            problems.append((statement_at, f"{where} has no table {', '.join(missing)}; its tables: {valid}"))
    if problems:
        _, lines = read_yaml(Path(path))
        raise ConfigError(
            str(path),
            [ConfigProblem(".".join(str(p) for p in at), text, _line_for(at, lines)) for at, text in problems],
        )


def _missing_tables(target: Target, dialect: str, tables: set[str]) -> list[tuple[Location, list[str]]]:
    """The statements of the target (its endpoints' queries, its SQL levers' apply statements) that use tables
    ``tables`` does not hold. A templated statement is rendered only when it runs, so it is not read here."""
    from ratchet.analysis.sql_columns import tables_created, tables_read

    statements: list[tuple[Location, str, set[str]]] = [
        (("endpoints", e, "queries", q, "sql"), query.sql, set())
        for e, endpoint in enumerate(target.endpoints)
        for q, query in enumerate(endpoint.queries)
    ]
    for index, lever in enumerate(target.levers):
        if lever.kind == "sql":
            created = {t for sql in lever.apply for t in tables_created(sql, dialect=dialect)}
            statements += [(("levers", index, "apply", k), sql, created) for k, sql in enumerate(lever.apply)]
    missing = []
    for location, sql, created in statements:
        if "{{" in sql or "{%" in sql:
            continue
        used = tables_read(sql, dialect=dialect, created=created) or set()
        absent = sorted(t for t in used if t.lower() not in tables)
        if absent:
            missing.append((location, absent))
    return missing
