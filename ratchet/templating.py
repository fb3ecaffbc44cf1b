"""Lever templates: sandboxed Jinja2 where a missing variable is an error, never an empty string.

The sandbox keeps templates from reaching Python; its work is bounded too, so that a template (a typo's
``range`` in two loops, ``"x" * 10**10``) fails as a lever error instead of holding a worker or its memory:
repetition and powers past a size are refused before they are computed, a render stops after a number of
template lines, and its output after a size.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ratchet.errors import LeverError

MAX_ITEMS = 1_000_000  # characters or items a repetition may make
MAX_DIGITS = 10_000  # digits a power may have
MAX_LINES = 1_000_000  # template lines one render may run (about a second)
MAX_OUTPUT = 10_000_000  # characters one render may write

T = TypeVar("T")


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sized, times in ((left, right), (right, left)):
                made = (
                    len(sized) * times
                    if isinstance(sized, str | list | tuple | bytes) and isinstance(times, int)
                    else 0
                )
                if made > MAX_ITEMS:
                    raise SecurityError(f"a repetition of {made:,} items (at most {MAX_ITEMS:,})")
        elif isinstance(left, int | float) and isinstance(right, int | float) and abs(left) > 1 and right > 0:
            digits = right * math.log10(abs(left))
            if digits > MAX_DIGITS:
                raise SecurityError(f"a power of about {digits:,.0f} digits (at most {MAX_DIGITS:,})")
        return super().call_binop(context, operator, left, right)


_env = _BoundedSandbox(undefined=StrictUndefined, autoescape=False)


def _bounded(work: Callable[[], T]) -> T:
    """``work()``, stopped with a SecurityError once templates have run MAX_LINES lines in this thread."""
    lines = 0

    def per_line(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
            if lines > MAX_LINES:
                raise SecurityError(f"the template ran over {MAX_LINES:,} steps (a loop too long?)")
        return per_line

    def per_call(frame: FrameType, event: str, arg: Any) -> Any:
        return per_line if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(per_call)
    try:
        return work()
    finally:
        sys.settrace(previous)


def _joined(chunks: Iterator[str]) -> str:
    kept: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise SecurityError(f"the template wrote over {MAX_OUTPUT:,} characters")
        kept.append(chunk)
    return "".join(kept)


def _render(text: str, context: dict[str, Any]) -> str:
    template = _env.from_string(text)
    return _bounded(lambda: _joined(template.generate(**context)))


def render(text: str, context: dict[str, Any], *, where: str) -> str:
    """Render one template string; LeverError names ``where`` and the problem."""
    try:
        return _render(text, context)
    except TemplateError as exc:
        raise LeverError(f"{where}: template error: {exc}") from None
    except Exception as exc:  # the sandbox's limits (a range too big, say) and the template's own arithmetic
        raise LeverError(f"{where}: template error: {type(exc).__name__}: {exc}") from None


def evaluate(expression: str, context: dict[str, Any], *, where: str) -> Any:
    """Evaluate a Jinja expression (e.g. ``response.json.enabled``) in the sandbox."""
    try:
        compiled = _env.compile_expression(expression, undefined_to_none=False)
        return _bounded(lambda: compiled(**context))
    except TemplateError as exc:
        raise LeverError(f"{where}: expression error: {exc}") from None
    except Exception as exc:  # as in render: whatever the expression raises is the expression's error
        raise LeverError(f"{where}: expression error: {type(exc).__name__}: {exc}") from None


def template_problem(text: str, context: dict[str, Any], names: str) -> str | None:
    """Why ``text`` cannot be rendered with ``context`` (a sample of what it will be given), or None; ``names``
    says in words what a template may use."""
    try:
        _render(text, context)
    except TemplateSyntaxError as exc:
        return f"not a valid template: {exc.message}"
    except UndefinedError as exc:
        return f"{exc.message}; a template here can use {names}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def template_names_problem(text: str, allowed: set[str], names: str) -> str | None:
    """Why ``text`` is not a template that can render here (its syntax, or a name it would not be given), or
    None: for templates whose values are only known when they run (a scenario's saved answers)."""
    try:
        parsed = _env.parse(text)
    except TemplateSyntaxError as exc:
        return f"not a valid template: {exc.message}"
    return _unknown_names(parsed, allowed, f"a template here can use {names}")


def expression_problem(expression: str, allowed: set[str], names: str) -> str | None:
    """Why ``expression`` is not one that can be evaluated here (its syntax, or a name it would not be given),
    or None."""
    try:
        _env.compile_expression(expression)
        parsed = _env.parse("{{ (" + expression + ") }}")
    except TemplateSyntaxError as exc:
        return f"not a valid expression: {exc.message}"
    return _unknown_names(parsed, allowed, f"an expression here can use {names}")


def _unknown_names(parsed: nodes.Template, allowed: set[str], valid: str) -> str | None:
    unknown = sorted(meta.find_undeclared_variables(parsed) - allowed)
    return f"unknown name(s) {', '.join(unknown)}; {valid}" if unknown else None


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
