"""InfluxQL queries over HTTP ``/query`` (InfluxDB 1.x natively, 2.x and 3.x via compatibility)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from collector.config import InfluxConfig


class QueryError(Exception):
    pass


def influxql(config: InfluxConfig, query: str, database: str | None = None, method: str = "GET"
             ) -> list[dict[str, object]]:
    """Rows of the first series of the first statement, as dicts; ``time`` in Unix seconds."""
    params = {"db": database or config.query_database, "q": query, "epoch": "s"}
    headers = {}
    if config.api == 2 and config.token:
        headers["Authorization"] = f"Token {config.token}"
    elif config.username is not None:
        params.update(u=config.username, p=config.password or "")
    url = f"{config.url.rstrip('/')}/query"
    data = None
    if method == "POST":
        data = urllib.parse.urlencode(params).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    else:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method=method),
                                    timeout=config.timeout_s) as response:
            doc = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise QueryError(f"InfluxDB /query answered {exc.code}: {exc.read()[:300].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise QueryError(f"InfluxDB unreachable at {config.url}: {getattr(exc, 'reason', exc)}") from None
    result = (doc.get("results") or [{}])[0]
    if "error" in result:
        raise QueryError(f"InfluxQL error: {result['error']}")
    rows: list[dict[str, object]] = []
    for series in result.get("series", []):
        for values in series.get("values", []):
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags") or {})
            rows.append(row)
    return rows


def quote_string(value: str) -> str:
    """An InfluxQL single-quoted string literal of ``value`` (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_database(config: InfluxConfig, name: str) -> None:
    influxql(config, f'CREATE DATABASE "{name}"', database=name, method="POST")
