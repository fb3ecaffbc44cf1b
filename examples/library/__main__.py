"""Run the library: ``python -m examples.library --database-url URL [--port 8810] [--seed | --seed-only]``.

Starts the rates API and the library under gunicorn (the library: two worker processes of eight threads),
prints one ``library listening on URL`` line when both answer, and stops both on SIGTERM or Ctrl-C.
``LIBRARY_HOME`` (default ``.ratchet/library``) holds the flags, the reporting pool's size and the pid file.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from examples.library.seed import seed


def _gunicorn(
    app: str, port: int, *, workers: int, threads: int, pid: Path | None, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
    ]
    if pid is not None:
        argv += ["--pid", str(pid)]
    return subprocess.Popen([*argv, app], env=env)


def _wait_until_up(url: str, processes: list[subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise SystemExit(f"a server of the library exited before {url} answered")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a starting server: nothing to wait on but its socket
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.library", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LIBRARY_DATABASE_URL"),
        required="LIBRARY_DATABASE_URL" not in os.environ,
        help="postgresql://user@host:port/database (or LIBRARY_DATABASE_URL)",
    )
    parser.add_argument("--port", type=int, default=8810)
    parser.add_argument("--rates-port", type=int, default=0, help="the rates API's port (default: --port + 1)")
    parser.add_argument("--seed", action="store_true", help="create and fill the tables first")
    parser.add_argument("--seed-only", action="store_true", help="create and fill the tables, then exit")
    args = parser.parse_args()
    if args.seed or args.seed_only:
        seed(args.database_url)
        print("library database seeded", flush=True)
        if args.seed_only:
            return
    home = Path(os.environ.get("LIBRARY_HOME", ".ratchet/library")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    rates_port = args.rates_port or args.port + 1
    url, rates_url = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{rates_port}"
    env = os.environ | {
        "LIBRARY_DATABASE_URL": args.database_url,
        "LIBRARY_HOME": str(home),
        "LIBRARY_RATES_URL": rates_url,
    }
    # The rates API is someone else's service: not traced.
    untraced = {k: v for k, v in env.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
    rates = _gunicorn("examples.library.rates:create_app()", rates_port, workers=1, threads=16, pid=None, env=untraced)
    library = _gunicorn(
        "examples.library.app:create_app()", args.port, workers=2, threads=8, pid=home / "gunicorn.pid", env=env
    )
    servers = [rates, library]

    def stop(*_: object) -> None:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=15)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        _wait_until_up(rates_url, servers)
        _wait_until_up(url, servers)
        print(f"library listening on {url}", flush=True)
        while all(s.poll() is None for s in servers):
            signal.pause() if hasattr(signal, "pause") else time.sleep(1)
    except KeyboardInterrupt:
        pass
    stop()


if __name__ == "__main__":
    main()
