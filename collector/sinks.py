"""InfluxDB writers: v1 ``/write`` over HTTP and v2 ``/api/v2/write`` through influxdb-client.

Both write synchronously (a write returns only once the server accepted it) so the caller can
acknowledge the MQTT messages afterwards. Lines carry millisecond timestamps (precision "ms").
Errors are :class:`SinkError`: ``bad_data`` when the server refused (some of) the points
themselves (400 incl. InfluxDB 1.x "partial write", 413 too large, 422 unprocessable), which
retrying the same batch cannot fix; anything else (5xx, 429, 401/403/404 configuration problems,
timeouts, refused connections) may pass by itself or by an operator's fix, so it is retried.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request

from collector.config import InfluxConfig

BAD_DATA_STATUS = frozenset({400, 413, 422})


class SinkError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: HTTP status, None when the server could not be reached
        self.status = status

    @property
    def bad_data(self) -> bool:
        return self.status in BAD_DATA_STATUS

    @property
    def retryable(self) -> bool:
        return not self.bad_data


class InfluxV1Sink:
    """POST /write?db=&rp=&precision=ms (InfluxDB 1.x, and 2.x/3.x v1 compatibility)."""

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        params = {"db": config.database, "precision": "ms"}
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
            detail = exc.read()[:300].decode(errors="replace").strip().replace("\n", " ")
            raise SinkError(f"InfluxDB /write answered {exc.code}: {detail}", exc.code) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SinkError(f"InfluxDB unreachable at {self.config.url}: {reason}") from None

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
                                  write_precision=WritePrecision.MS)
        except ApiException as exc:
            detail = (exc.body or exc.reason or "")[:300] if isinstance(exc.body or "", str) else exc.reason
            raise SinkError(f"InfluxDB /api/v2/write answered {exc.status}: {detail}", exc.status or 500) from None
        except (HTTPError, OSError) as exc:
            raise SinkError(f"InfluxDB unreachable at {self.config.url}: {exc}") from None

    def close(self) -> None:
        self._client.close()


def make_sink(config: InfluxConfig) -> InfluxV1Sink | InfluxV2Sink:
    return InfluxV1Sink(config) if config.api == 1 else InfluxV2Sink(config)
