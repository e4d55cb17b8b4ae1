"""A real HTTP server standing in for a customer's webhook endpoint: it records every request and answers what the
test tells it to (fail the first n requests, redirect, be slow)."""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    fail_first: int = 0
    status: int = 200
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.answered < 300]


def _handler(receiver: "Receiver") -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if receiver.delay:
                time.sleep(receiver.delay)
            failing = len(receiver.requests) < receiver.fail_first
            status = 500 if failing else receiver.status
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body, status))
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    hooks = Receiver(server)
    server.RequestHandlerClass = _handler(hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hooks
    server.shutdown()
    server.server_close()
