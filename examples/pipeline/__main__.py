"""Run the document pipeline's worker: ``python -m examples.pipeline [--temporal-address HOST:PORT]
[--namespace NS] [--task-queue Q] [--admin-port 8820] [--home DIR]``.

Starts the two AI providers, a Temporal worker for the ``DocumentPipeline`` workflow on the task queue, and
the admin API; prints one ``pipeline ready admin=URL ...`` line when all are up; stops on SIGTERM or Ctrl-C.
``--home`` (or ``PIPELINE_HOME``, default ``.ratchet/pipeline``) holds the settings and the results database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from examples.pipeline.app import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--temporal-address", default=os.environ.get("RATCHET_TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", default="document-pipeline")
    parser.add_argument("--admin-port", type=int, default=8820)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("PIPELINE_HOME", ".ratchet/pipeline")))
    args = parser.parse_args()
    # Each refused provider call is retried by Temporal; the SDK's warning with a traceback for each would drown
    # the log (the refusals are in the histories, with their reasons).
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    logging.getLogger("temporalio.worker._activity").setLevel(logging.ERROR)
    asyncio.run(run(args.temporal_address, args.namespace, args.task_queue, args.home.resolve(), args.admin_port))


if __name__ == "__main__":
    main()
