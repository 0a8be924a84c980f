"""Real local servers that receive notifications in the tests: an SMTP mailbox (aiosmtpd) and a
JSON webhook (http.server)."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A port nobody listens on (for the SMTP server to take, or to stay closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hook(ThreadingHTTPServer):
    """A JSON webhook: answers each POST with the next of ``statuses`` (then 200), keeps them all;
    ``delay_s`` holds each answer back (a slow or hanging endpoint)."""

    def __init__(self, statuses=(), delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.posts: list[tuple[float, str, int, dict]] = []  # (monotonic time, path, status, body)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def accepted(self) -> list[dict]:
        with self.lock:
            return [body for _, _, status, body in self.posts if status == 200]

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        time.sleep(self.server.delay_s)
        with self.server.lock:
            status = self.server.statuses.pop(0) if self.server.statuses else 200
            self.server.posts.append((time.monotonic(), self.path, status, body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Mailbox:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 with a free port; ``mails()`` are the received messages, parsed."""

    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=free_port())
        self.controller.start()
        self.port = self.controller.port

    def url(self, to: str = "tech@example.org") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=fluxedge@example.org&to={to}&mode=insecure"

    def mails(self) -> list:
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.mailbox.envelopes]

    def close(self) -> None:
        self.controller.stop()
