"""A service that answers one request at a time (one worker, as a single event loop or a pool of one): /work
takes ``--work-ms`` of waiting, /health nothing. Above about 1000 / work-ms requests per second its requests
queue in front of it. Run: python -m tests.single_worker_service --port N --work-ms 27."""

from __future__ import annotations

import argparse
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the connection closes after each answer, so one client cannot hold the only worker.
    protocol_version = "HTTP/1.0"
    disable_nagle_algorithm = True  # headers and body leave at once (no delayed-ACK wait on the client)
    work_s = 0.0

    def do_GET(self) -> None:
        if self.path not in ("/work", "/health"):
            self.send_error(404)
            return
        if self.path == "/work":
            time.sleep(self.work_s)  # a sleep, not CPU: the capacity holds on a busy two-core machine
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(HTTPServer):
    request_queue_size = 256  # waiting connections queue in the kernel instead of being refused


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--work-ms", type=float, default=27.0)
    args = parser.parse_args()
    Handler.work_s = args.work_ms / 1000
    with Server(("127.0.0.1", args.port), Handler) as server:
        print(f"listening on 127.0.0.1:{args.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
