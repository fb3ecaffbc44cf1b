"""Shell levers' commands, run as an operator's script would be: from the target file's folder, with output to a
file (a daemon the command starts may keep it open: the command is done when it exits, not when every copy of
its output closes), without a terminal, in a session of its own so that a timeout stops all it started; and one
at a time per program, whichever role or worker runs them (two levers that restart one service through one
control script must not run at once).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

_LOCKS = Path(tempfile.gettempdir()) / "ratchet-shell-levers"


class CommandTimeout(Exception):
    """The command did not exit in time; it and what it started were stopped."""


def run_command(
    argv: list[str], *, cwd: str | None, timeout_s: float, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run ``argv`` in ``cwd``, ``env`` added to this process's environment; its exit status and the last 4,000 characters of its output (stdout and
    stderr, interleaved). Raises FileNotFoundError for a missing program, CommandTimeout after ``timeout_s``."""
    with tempfile.TemporaryFile(mode="w+b") as output:
        process = subprocess.Popen(
            argv,
            cwd=cwd or None,
            env=os.environ | env if env else None,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise CommandTimeout(argv[0]) from None
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace")
    return returncode, text[-4000:]


@contextlib.contextmanager
def one_at_a_time(names: Iterable[str]) -> Iterator[None]:
    """Hold an exclusive lock per name (a program, a declared resource; sorted: two holders of the same set never
    wait on each other) for the block. File locks, so workers in other processes on this machine wait too."""
    _LOCKS.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for held in sorted(set(names)):
            digest = hashlib.sha256(held.encode()).hexdigest()[:24]
            handle = stack.enter_context((_LOCKS / f"{digest}.lock").open("a"))
            fcntl.flock(handle, fcntl.LOCK_EX)
            stack.callback(fcntl.flock, handle, fcntl.LOCK_UN)
        yield
