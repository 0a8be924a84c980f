"""InfluxDB writers: v1 ``/write`` over HTTP and v2 ``/api/v2/write`` through influxdb-client.

Both write synchronously (a write returns only once the server accepted it) so the caller can
acknowledge the MQTT messages afterwards. Errors are :class:`SinkError` with ``retryable`` set
for what may pass by itself (5xx, 429, timeouts, refused connections).
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from collector.config import InfluxConfig


class SinkError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def _retryable_status(status: int) -> bool:
    return status >= 500 or status == 429


class InfluxV1Sink:
    """POST /write?db=&rp=&precision=s (InfluxDB 1.x, and 2.x/3.x v1 compatibility)."""

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        params = {"db": config.database, "precision": "s"}
        if config.retention_policy:
            params["rp"] = config.retention_policy
        if config.username is not None:
            params.update(u=config.username, p=config.password or "")
        self._url = f"{config.url.rstrip('/')}/write?{urllib.parse.urlencode(params)}"

    def write(self, lines: list[str]) -> None:
        body = ("\n".join(lines) + "\n").encode()
        request = urllib.request.Request(self._url, data=body, method="POST",
                                         headers={"Content-Type": "text/plain; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace").strip()
            raise SinkError(f"InfluxDB /write answered {exc.code}: {detail}", _retryable_status(exc.code)) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SinkError(f"InfluxDB unreachable at {self.config.url}: {reason}", True) from None

    def close(self) -> None:
        pass


class InfluxV2Sink:
    """POST /api/v2/write through influxdb-client, synchronous (InfluxDB 1.8+, 2.x, 3.x)."""

    def __init__(self, config: InfluxConfig) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.config = config
        self._client = InfluxDBClient(url=config.url, token=config.token, org=config.org,
                                      timeout=int(config.timeout_s * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: list[str]) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._write_api.write(bucket=self.config.bucket, org=self.config.org, record=lines,
                                  write_precision=WritePrecision.S)
        except ApiException as exc:
            detail = (exc.body or exc.reason or "")[:300] if isinstance(exc.body or "", str) else exc.reason
            raise SinkError(f"InfluxDB /api/v2/write answered {exc.status}: {detail}",
                            _retryable_status(exc.status or 500)) from None
        except (HTTPError, OSError) as exc:
            raise SinkError(f"InfluxDB unreachable at {self.config.url}: {exc}", True) from None

    def close(self) -> None:
        self._client.close()


def make_sink(config: InfluxConfig) -> InfluxV1Sink | InfluxV2Sink:
    return InfluxV1Sink(config) if config.api == 1 else InfluxV2Sink(config)
