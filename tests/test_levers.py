"""Levers against a real SQLite database and real commands: idempotent, checked, strict templates."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.levers import LeverActivities
from ratchet.analysis.conflicts import conflict
from ratchet.config.loading import load_target
from ratchet.config.target import Target
from ratchet.contracts import LeverCall
from ratchet.settings import Settings


def target_with(database: Path, levers: list[dict]) -> Target:
    return Target.model_validate(
        {
            "name": "t",
            "base_url": "http://127.0.0.1:9",
            "database": {"url": f"sqlite:///{database}"},
            "endpoints": [{"name": "orders", "path": "/orders"}],
            "levers": levers,
        }
    )


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, email TEXT)")
    return path


def indexes(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]


SQL_LEVER = {
    "name": "email-index",
    "kind": "sql",
    "addresses": [{"finding": "missing-index", "endpoint": "orders"}],
    # Deliberately not IF NOT EXISTS: only the check keeps a second apply from failing.
    "apply": ["CREATE INDEX ix_email ON orders (email)"],
    "rollback": ["DROP INDEX ix_email"],
    "check": "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'ix_email'",
}


def test_sql_lever_apply_and_rollback_are_idempotent_and_recorded(database: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    levers = LeverActivities(settings.resolved_store_url)
    target = target_with(database, [SQL_LEVER])
    call = LeverCall(campaign_id="c1", change_id="C1", lever=target.levers[0], target=target)

    first = levers._act(call, "apply")
    again = levers._act(call, "apply")
    assert (first.changed, first.verified) == (True, True)
    assert again.changed is False and "already in effect" in again.detail
    assert indexes(database) == ["ix_email"]

    undone = levers._act(call, "rollback")
    undone_again = levers._act(call, "rollback")
    assert undone.changed is True and undone_again.changed is False
    assert indexes(database) == []


def test_shell_lever_without_check_relies_on_the_ledger(tmp_path: Path, database: Path) -> None:
    marker = tmp_path / "flag"
    lever = {
        "name": "flag-file",
        "kind": "shell",
        "addresses": [{"finding": "slow-endpoint"}],
        "apply": [{"argv": ["sh", "-c", f"echo x >> {marker}"]}],
        "rollback": [{"argv": ["rm", "-f", str(marker)]}],
    }
    settings = Settings(home=tmp_path / "home")
    levers = LeverActivities(settings.resolved_store_url)
    target = target_with(database, [lever])
    call = LeverCall(campaign_id="c2", change_id="C1", lever=target.levers[0], target=target)
    assert levers._act(call, "apply").changed is True
    assert levers._act(call, "apply").changed is False  # the ledger says it is applied
    assert marker.read_text() == "x\n"  # the command ran once
    assert levers._act(call, "rollback").changed is True
    assert not marker.exists()


def test_missing_template_variable_is_a_non_retryable_error_and_changes_nothing(database: Path, tmp_path: Path) -> None:
    lever = SQL_LEVER | {"apply": ["CREATE INDEX ix_email ON orders ({{ column }})"]}
    settings = Settings(home=tmp_path / "home")
    target = target_with(database, [lever])
    call = LeverCall(campaign_id="c3", change_id="C1", lever=target.levers[0], target=target)
    with pytest.raises(ApplicationError) as caught:
        LeverActivities(settings.resolved_store_url)._act(call, "apply")
    assert caught.value.non_retryable
    assert "'column' is undefined" in str(caught.value) and "lever email-index: apply" in str(caught.value)
    assert indexes(database) == []


def test_template_sees_target_and_parameter(database: Path, tmp_path: Path) -> None:
    lever = SQL_LEVER | {
        "apply": ["CREATE INDEX ix_email ON orders (email) -- {{ target.name }} at {{ parameter }}%"],
    }
    settings = Settings(home=tmp_path / "home")
    target = target_with(database, [lever])
    call = LeverCall(campaign_id="c4", change_id="C1", lever=target.levers[0], target=target, parameter=50)
    assert LeverActivities(settings.resolved_store_url)._act(call, "apply").changed
    assert indexes(database) == ["ix_email"]


def _shell_target(folder: Path, levers: str) -> Target:
    """A target loaded from a file in ``folder``, as a user's: shell levers run from there."""
    path = folder / "target.yaml"
    path.write_text(
        f"name: t\nbase_url: http://127.0.0.1:9\nendpoints:\n  - {{name: home, path: /}}\nlevers:\n{levers}"
    )
    return load_target(path)


def test_a_shell_lever_runs_in_the_target_files_folder_and_may_start_a_daemon(tmp_path: Path) -> None:
    """Relative paths mean the target file's folder, as in an operator's script; a command that starts a daemon
    (which keeps the command's output open) is done when the command exits."""
    folder = tmp_path / "service"
    folder.mkdir()
    target = _shell_target(
        folder,
        """  - name: restart
    kind: shell
    addresses: [{finding: slow-endpoint}]
    apply: [{argv: [sh, -c, "echo on > state.txt; sleep 60 & echo $! > daemon.pid"], timeout: 10s}]
    rollback: [{argv: [sh, -c, "kill $(cat daemon.pid); rm state.txt"]}]
    check: {argv: [test, -f, state.txt]}
""",
    )
    call = LeverCall(campaign_id="c5", change_id="C1", lever=target.levers[0], target=target)
    levers = LeverActivities(Settings(home=tmp_path / "home").resolved_store_url)
    try:
        applied = levers._act(call, "apply")  # the daemon runs on: the old pipe-capture waited 60 s for it
        assert applied.changed and applied.verified
        assert (folder / "state.txt").read_text() == "on\n"
    finally:
        assert levers._act(call, "rollback").changed
    assert not (folder / "state.txt").exists()


def _apply_both_at_once(target: Target, folder: Path) -> None:
    """Apply the target's two levers from two threads at once, as two roles do."""
    store = Settings(home=folder / "home").resolved_store_url

    def apply(lever: int) -> None:
        call = LeverCall(campaign_id="c6", change_id=f"C{lever}", lever=target.levers[lever], target=target)
        LeverActivities(store)._act(call, "apply")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(apply, [0, 1]))


def _first_four_steps(log: Path) -> list[str]:
    """The first word (start or end) of the first four lines the levers' scripts wrote."""
    return [line.split()[0] for line in log.read_text().split("\n")[:4]]


def test_two_levers_on_one_control_script_never_run_at_the_same_time(tmp_path: Path) -> None:
    """Roles apply their levers at the same time; two levers that drive the same program (here a control script
    restarting one service) run one after the other, whichever thread or worker runs them."""
    control = tmp_path / "ctl"
    control.write_text('#!/bin/sh\necho "start $1" >> ctl.log\nsleep 0.3\necho "end $1" >> ctl.log\n')
    control.chmod(0o755)
    levers_yaml = "".join(
        f"""  - name: {name}
    kind: shell
    addresses: [{{finding: slow-endpoint}}]
    apply: [{{argv: [./ctl, {name}]}}]
    rollback: [{{argv: [./ctl, undo-{name}]}}]
"""
        for name in ("gzip", "cache")
    )
    target = _shell_target(tmp_path, levers_yaml)
    _apply_both_at_once(target, tmp_path)
    assert _first_four_steps(tmp_path / "ctl.log") == ["start", "end", "start", "end"]  # never interleaved


def test_levers_that_declare_one_resource_run_one_after_the_other_whatever_they_run(tmp_path: Path) -> None:
    """Two different scripts that both restart one service say so (``resources: [api]``): they never overlap,
    and they conflict for planning, though no command line shows it."""
    for name in ("gzip", "cache"):
        script = tmp_path / f"{name}.sh"
        script.write_text(f'#!/bin/sh\necho "start {name}" >> api.log\nsleep 0.3\necho "end {name}" >> api.log\n')
        script.chmod(0o755)
    levers_yaml = "".join(
        f"""  - name: {name}
    kind: shell
    resources: [api]
    addresses: [{{finding: slow-endpoint}}]
    apply: [{{argv: [./{name}.sh]}}]
    rollback: [{{argv: [./{name}.sh]}}]
"""
        for name in ("gzip", "cache")
    )
    target = _shell_target(tmp_path, levers_yaml)
    _apply_both_at_once(target, tmp_path)
    assert _first_four_steps(tmp_path / "api.log") == ["start", "end", "start", "end"]  # never interleaved
    assert conflict(*target.levers) == "both change resource api"


def test_a_shell_command_has_its_own_folder_and_variables(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    target = _shell_target(
        tmp_path,
        """  - name: mode
    kind: shell
    addresses: [{finding: slow-endpoint}]
    apply: [{argv: [sh, -c, "echo $MODE > mode.txt"], cwd: conf, env: {MODE: "{{ target.name }}-fast"}}]
    rollback: [{argv: [rm, mode.txt], cwd: conf}]
""",
    )
    call = LeverCall(campaign_id="c7", change_id="C1", lever=target.levers[0], target=target)
    LeverActivities(Settings(home=tmp_path / "home").resolved_store_url)._act(call, "apply")
    assert (tmp_path / "conf" / "mode.txt").read_text() == "t-fast\n"
