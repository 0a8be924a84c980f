"""A path-translating HTTP proxy that gives InfluxDB 1.6 the ``/api/v2/write`` endpoint of 1.8+.

Debian's influxd 1.6.7 has no ``/api/v2/write``; InfluxDB 1.8 translates it itself:
``bucket=DB/RP`` -> ``db=DB&rp=RP``, ``Authorization: Token USER:PASS`` -> ``u=USER&p=PASS``.
This shim does the same so influxdb-client's writes land in a real database (demo and tests).
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    upstream = ""

    def log_message(self, format, *args):
        pass

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/api/v2/write":
            self._reply(404, b'{"code":"not found"}')
            return
        query = urllib.parse.parse_qs(url.query)
        bucket = query.get("bucket", [""])[0]
        db, _, rp = bucket.partition("/")
        params = {"db": db, "precision": query.get("precision", ["ns"])[0]}
        if rp:
            params["rp"] = rp
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Token ") and ":" in auth:
            user, _, password = auth[6:].partition(":")
            params.update(u=user, p=password)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {"Content-Type": "text/plain"}
        if self.headers.get("Content-Encoding"):
            headers["Content-Encoding"] = self.headers["Content-Encoding"]
        request = urllib.request.Request(f"{self.upstream}/write?{urllib.parse.urlencode(params)}", data=body,
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                self._reply(response.status, response.read())
        except urllib.error.HTTPError as exc:
            self._reply(exc.code, exc.read())
        except OSError:
            self._reply(503, b'{"code":"unavailable","message":"upstream influxd unreachable"}')

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class V2WriteShim:
    """Serves on 127.0.0.1:``port`` (0 = any free port) and forwards to ``upstream``."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"upstream": upstream.rstrip("/")})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="v2shim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
