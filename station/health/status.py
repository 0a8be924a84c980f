"""The live status file the daemon rewrites every few seconds, and ``fluxedge station status``.

The daemon (:mod:`station.health.monitor`) writes a small JSON document atomically (temporary file,
fsync-free ``os.replace``: a reader sees the old or the new file, never half of one): per
instrument the frame rate over the last interval, last values, diagnostic flags set, connection
state and counters; spool depth; the last flux; the MQTT link state; latest met values and the
active alarms. ``fluxedge station status`` prints it as a table and exits 1 when the file is
missing or older than 3 x its interval (the daemon is not running).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STALE_FACTOR = 3.0


def default_path(config: Any) -> Path:
    """``[status] path``, or ``status.json`` beside the spool."""
    if config.status.path:
        return Path(config.status.path).expanduser()
    return Path(config.spool.path).expanduser().parent / "status.json"


def write_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str))
    os.replace(tmp, path)


class StatusError(Exception):
    """The status file cannot be shown; ``str()`` is a one-line reason."""


def read(path: Path, now_s: float | None = None) -> dict[str, Any]:
    """The status document; :class:`StatusError` if missing, unreadable or stale."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise StatusError(f"{path}: no status file: the station daemon is not running "
                          f"(start it with 'fluxedge station run -c FILE')") from None
    except (OSError, ValueError) as exc:
        raise StatusError(f"{path}: unreadable status file ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("time"), int | float):
        raise StatusError(f"{path}: not a fluxedge status file")
    now = time.time() if now_s is None else now_s
    age = now - doc["time"]
    interval = float(doc.get("interval_s") or 5.0)
    if age > STALE_FACTOR * interval:
        raise StatusError(f"{path}: status is {age:.0f} s old (written every {interval:g} s): "
                          f"the station daemon is not running")
    return doc


def _num(value: Any, fmt: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, fmt)
    return str(value)


def _ago(t: float | None, now: float) -> str:
    return "-" if t is None else f"{now - t:.0f} s ago"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line.rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def render(doc: dict[str, Any], now_s: float | None = None) -> str:
    """The status document as a readable report."""
    now = time.time() if now_s is None else now_s
    lines = [f"station {doc.get('station', '?')}  (fluxedge {doc.get('version', '?')}, pid {doc.get('pid', '?')}, "
             f"up {_num(doc.get('uptime_s'), '.0f')} s, status {now - doc['time']:.0f} s old)"]
    rows = []
    for name, inst in (doc.get("instruments") or {}).items():
        last = inst.get("last") or {}
        shown = ", ".join(f"{k}={_num(v)}" for k, v in last.items()
                          if v is not None and k not in ("counter", "index", "diag", "time", "msec"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        rows.append([name, inst.get("driver", ""), "up" if inst.get("connected") else "DOWN",
                     _num(inst.get("rate_hz"), ".1f"), _num(inst.get("silent_s"), ".1f"),
                     ",".join(inst.get("flags") or []) or "-",
                     f"{inst.get('checksum_errors', 0)}/{inst.get('resyncs', 0)}/{inst.get('counter_gaps', 0)}",
                     shown or "-"])
    lines += ["", *_table(["instrument", "driver", "link", "rate_Hz", "quiet_s", "flags", "cksum/resync/gaps",
                           "last values"], rows)]
    spool = doc.get("spool") or {}
    mqtt = doc.get("mqtt") or {}
    lines += ["", f"spool   {spool.get('depth', '-')} waiting, oldest {_num(spool.get('oldest_age_s'), '.0f')} s, "
                  f"dropped {spool.get('dropped', '-')}",
              f"mqtt    {'connected' if mqtt.get('connected') else 'NOT connected'} "
              f"({mqtt.get('broker', '?')}{'; ' + mqtt['state'] if mqtt.get('state') else ''}), "
              f"{mqtt.get('published', 0)} published since start"]
    flux = doc.get("last_flux")
    if flux:
        v = flux.get("values") or {}
        lines.append(f"flux    period ending {flux.get('period_end')} ({_ago(flux.get('time'), now)}): "
                     f"H {_num(v.get('H'), '.1f')} W m-2, LE {_num(v.get('LE'), '.1f')} W m-2, "
                     f"FC {_num(v.get('FC'), '.2f')} umol m-2 s-1, USTAR {_num(v.get('USTAR'), '.2f')} m s-1")
    else:
        lines.append("flux    none yet")
    met = doc.get("met") or {}
    if met:
        lines.append("met     " + ", ".join(f"{k} {_num(m.get('value'))} ({_num(m.get('age_s'), '.0f')} s)"
                                            for k, m in met.items()))
    for name, dev in (doc.get("modbus") or {}).items():
        state = "answering" if dev.get("answered") else "NO REPLY"
        last = f"; last error: {dev['last_error']}" if dev.get("last_error") and not dev.get("answered") else ""
        lines.append(f"modbus  {name} (device {dev.get('device_id')} at {dev.get('port')}): {state}, "
                     f"{dev.get('polls_ok', 0)}/{dev.get('polls', 0)} polls complete{last}")
    alarms = doc.get("alarms") or []
    lines.append("alarms  " + ("; ".join(f"{a['alarm']} on {a['source']}" for a in alarms) if alarms else "none"))
    return "\n".join(lines)


def main(config_path: str) -> int:
    """``fluxedge station status -c FILE``: print the table, or a one-line error and 1."""
    import sys

    from station import config as station_config

    cfg, _ = station_config.load(config_path)
    try:
        doc = read(default_path(cfg))
    except StatusError as exc:
        print(f"fluxedge: {exc}", file=sys.stderr)
        return 1
    print(render(doc))
    return 0
