"""Lever templates: sandboxed Jinja2 where a missing variable is an error, never an empty string."""

from __future__ import annotations

import re
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ratchet.errors import LeverError

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def render(text: str, context: dict[str, Any], *, where: str) -> str:
    """Render one template string; LeverError names ``where`` and the problem."""
    try:
        return _env.from_string(text).render(**context)
    except TemplateError as exc:
        raise LeverError(f"{where}: template error: {exc}") from None
    except Exception as exc:  # the sandbox's limits (a range too big, say) and the template's own arithmetic
        raise LeverError(f"{where}: template error: {type(exc).__name__}: {exc}") from None


def evaluate(expression: str, context: dict[str, Any], *, where: str) -> Any:
    """Evaluate a Jinja expression (e.g. ``response.json.enabled``) in the sandbox."""
    try:
        return _env.compile_expression(expression, undefined_to_none=False)(**context)
    except TemplateError as exc:
        raise LeverError(f"{where}: expression error: {exc}") from None
    except Exception as exc:  # as in render: whatever the expression raises is the expression's error
        raise LeverError(f"{where}: expression error: {type(exc).__name__}: {exc}") from None


def template_problem(text: str, context: dict[str, Any], names: str) -> str | None:
    """Why ``text`` cannot be rendered with ``context`` (a sample of what it will be given), or None; ``names``
    says in words what a template may use."""
    try:
        _env.from_string(text).render(**context)
    except TemplateSyntaxError as exc:
        return f"not a valid template: {exc.message}"
    except UndefinedError as exc:
        return f"{exc.message}; a template here can use {names}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def expression_problem(expression: str, allowed: set[str], names: str) -> str | None:
    """Why ``expression`` is not one that can be evaluated here (its syntax, or a name it would not be given),
    or None."""
    try:
        _env.compile_expression(expression)
        parsed = _env.parse("{{ (" + expression + ") }}")
    except TemplateSyntaxError as exc:
        return f"not a valid expression: {exc.message}"
    unknown = sorted(meta.find_undeclared_variables(parsed) - allowed)
    if unknown:
        return f"unknown name(s) {', '.join(unknown)}; an expression here can use {names}"
    return None


_WHOLE_EXPRESSION = re.compile(r"^\{\{(?P<expression>[^{}]*)\}\}$")


def render_tree(value: Any, context: dict[str, Any], *, where: str) -> Any:
    """Render every string inside nested dicts and lists. A string that is one ``{{ expression }}`` and
    nothing else keeps the expression's type, so a JSON body can send ``{"pool": "{{ parameter }}"}`` as a
    number."""
    if isinstance(value, str):
        whole = _WHOLE_EXPRESSION.match(value.strip())
        if whole is not None:
            return evaluate(whole["expression"], context, where=where)
        return render(value, context, where=where)
    if isinstance(value, dict):
        return {k: render_tree(v, context, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, context, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value
