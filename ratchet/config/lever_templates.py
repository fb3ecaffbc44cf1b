"""A lever's templates and expressions tried when its target is read, with a sample of what the lever will be
given: a misspelt name, an unclosed ``{{`` or a bad ``applied_when`` is said then, with its line, not after the
baseline and a person's approval."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ratchet.templating import expression_problem, template_problem

# What activities/levers.py gives every template, with sample values of the same kinds.
_TARGET = {
    "name": "target",
    "base_url": "http://127.0.0.1:8080",
    "database_url": "sqlite:///sample.db",
    "dialect": "sqlite",
    "folder": ".",
}
_NAMES = (
    "target.name, target.base_url, target.database_url, target.dialect, target.folder, lever.name, parameter, "
    "percent, campaign_id"
)
_CHECK_NAMES = _NAMES + ", and response.status, response.json, response.text"
_EXPRESSIONS = {"applied_when"}  # fields that hold one expression, not a template
_CHECKED = ("apply", "rollback", "check")

Problem = tuple[tuple[str | int, ...], str]  # where below the lever, and what is wrong


def lever_template_problem(lever: BaseModel, parameter: float | None) -> Problem | None:
    """The first template or expression of ``lever``'s actions that cannot work, or None."""
    context = {
        "target": _TARGET,
        "lever": {"name": getattr(lever, "name", "lever")},
        "parameter": parameter,
        "percent": 100.0,
        "campaign_id": "campaign",
    }
    for field in _CHECKED:
        found = _first_problem(getattr(lever, field, None), context, (field,))
        if found is not None:
            return found
    return None


def _first_problem(value: Any, context: dict[str, Any], location: tuple[str | int, ...]) -> Problem | None:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value and "{#" not in value:
            return None
        problem = template_problem(value, context, _NAMES)
        return (location, problem) if problem is not None else None
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            key = info.alias or name  # as the file spells it (json, not json_body)
            child = getattr(value, name)
            if name in _EXPRESSIONS and isinstance(child, str):
                problem = expression_problem(child, {*context, "response"}, _CHECK_NAMES)
                if problem is not None:
                    return (*location, key), problem
                continue
            found = _first_problem(child, context, (*location, key))
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, child in items:
        found = _first_problem(child, context, (*location, key))
        if found is not None:
            return found
    return None
