"""The exceptions a user can cause or meet, in one place.

RatchetError
 ├── ConfigError        a playbook or target file is wrong (file, line, field, what is valid)
 ├── LeverError         a lever action failed against the target
 ├── MeasurementError   k6 or the target could not be measured
 └── NotFoundError      a campaign id or file that does not exist
"""

from __future__ import annotations

from dataclasses import dataclass, field


class RatchetError(Exception):
    """Base of every error Ratchet reports to a user without a traceback."""


def first_line(exc: BaseException) -> str:
    """An exception in one line for a note or an event: its message's first line, or its type without one."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class ConfigProblem:
    """One thing wrong in a configuration file."""

    field: str
    message: str
    line: int | None = None

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class ConfigError(RatchetError):
    """A playbook or target file that cannot be used, with every problem found in it."""

    file: str
    problems: list[ConfigProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(p.render(self.file) for p in self.problems) or f"{self.file}: invalid"


class LocatedValueError(ValueError):
    """A model validator's complaint about a field below the model (``location``, from the model), so that the
    file's message points at that field's line rather than at the model's first."""

    def __init__(self, location: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.location = location


class LeverError(RatchetError):
    """A lever's apply, rollback or check action failed."""


class MeasurementError(RatchetError):
    """A load test or database inspection could not be carried out."""


class NotFoundError(RatchetError):
    """A campaign, run or file that does not exist."""
