"""Start a Ratchet worker: `python worker.py [--roles perf-optimizer,backend-developer] [--no-workflows]`.

By default one process serves the campaign workflows and every role's task queue.
"""

from __future__ import annotations

from ratchet.cli.app import main as cli_main


def main() -> None:
    """The same as `ratchet worker`, with the same flags."""
    import sys

    cli_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
