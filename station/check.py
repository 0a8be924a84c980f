"""``fluxedge station check``: everything the daemon needs, tested before it runs, and never at the
expense of a daemon that runs.

The configuration is loaded first (a problem is one line naming file and key, exit status 2). Then
one line per check, ``OK`` or ``FAIL`` with the reason:

- without a running daemon: each instrument's port opens and frames arrive (rate, checksum
  errors, resyncs, counter gaps); each Modbus sensor answers one poll through its bus, as the
  daemon would poll it (one open per RS-485 port); the MQTT broker accepts a connection with the
  configured credentials and TLS (the daemon's client id, nothing published);
- while the daemon runs (it holds the spool's run lock, :mod:`station.runlock`, or its status file
  is fresh), its ports are its own: opening them would steal its bytes (the daemon logged
  ``instrument_lost``). The check reports instruments, Modbus sensors and the broker link from the
  daemon's status file instead; a daemon that holds the lock with a stale status file is hung;
- in both cases: the spool, archive and status directories are writable (a file is created and
  removed: a read-only or full file system fails here), an existing spool file opens as a spool.

Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from station import config as station_config
from station import runlock
from station.config import StationConfig
from station.health import status
from station.health.diagnostics import diag_source

#: how long to wait for the broker's CONNACK [s]
BROKER_TIMEOUT_S = 10.0
#: an instrument the daemon reports silent for longer than this fails [s]
SILENT_LIMIT_S = 5.0


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, what: str, text: str) -> None:
        self.passed += 1
        print(f"  {what}: OK: {text}", flush=True)

    def fail(self, what: str, text: str) -> None:
        self.failed += 1
        print(f"  {what}: FAIL: {text}", flush=True)


def main(config_path: str, seconds: float = 3.0) -> int:
    cfg, digest = station_config.load(config_path)
    print(f"{config_path}: valid (station {cfg.site.id}, config hash {digest[:12]})", flush=True)
    report = Report()
    daemon = running_daemon(cfg)
    if daemon is not None:
        from_status(cfg, daemon, report)
    else:
        instruments(cfg, seconds, report)
        modbus(cfg, report)
        broker(cfg, report)
    paths(cfg, report)
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    return 1 if report.failed else 0


# -- is the daemon running? -----------------------------------------------------------------------------
def running_daemon(cfg: StationConfig) -> dict[str, Any] | None:
    """``{"pid", "doc", "why"}`` if a daemon runs with this config's spool (its lock is held, or its
    status file is fresh), else None. ``doc`` is the fresh status document or None (``why`` says why)."""
    pid = runlock.holder(cfg.spool.path)
    try:
        doc: dict[str, Any] | None = status.read(status.default_path(cfg))
        why = ""
    except status.StatusError as exc:
        doc, why = None, str(exc)
    if pid is None and doc is None:
        return None
    return {"pid": pid if pid else (doc or {}).get("pid"), "doc": doc, "why": why}


def from_status(cfg: StationConfig, daemon: dict[str, Any], report: Report) -> None:
    doc = daemon["doc"]
    path = status.default_path(cfg)
    if doc is None:
        report.fail(f"daemon (pid {daemon['pid']})", f"holds the spool's lock but its status is not fresh "
                                                    f"({daemon['why']}): hung? (journalctl -u fluxedge-station); "
                                                    f"its ports were not opened")
        return
    age = time.time() - doc["time"]
    print(f"  daemon: running (pid {daemon['pid']}): its ports are in use, so this reports its status file "
          f"{path} ({age:.0f} s old) instead of opening them", flush=True)
    seen = doc.get("instruments") or {}
    for inst in cfg.instruments:
        what = f"instrument {inst.name} ({inst.driver} on {inst.port})"
        st = seen.get(diag_source(inst.name))
        if st is None:
            report.fail(what, "not in the running daemon's status (restart it after changing the config)")
        elif not st.get("connected"):
            report.fail(what, "the daemon reports its port not open")
        elif (st.get("silent_s") or 0.0) > SILENT_LIMIT_S:
            report.fail(what, f"the daemon has had no frame from it for {st['silent_s']:.0f} s")
        else:
            flags = ",".join(st.get("flags") or []) or "none"
            report.ok(what, f"{st.get('rate_hz', 0):.1f} Hz in the daemon, flags {flags}, "
                            f"{st.get('checksum_errors', 0)} checksum errors, {st.get('resyncs', 0)} resyncs")
    devices = doc.get("modbus") or {}
    for dev in cfg.modbus:
        what = f"modbus {dev.name} ({dev.map} on {dev.port})"
        st = devices.get(dev.name)
        if st is None:
            report.fail(what, "not in the running daemon's status (restart it after changing the config)")
        elif not st.get("answered"):
            report.fail(what, f"the daemon gets no reply from device {st.get('device_id')}"
                              + (f" (last error: {st['last_error']})" if st.get("last_error") else ""))
        else:
            report.ok(what, f"device {st.get('device_id')} answers the daemon: {st.get('polls_ok', 0)} of "
                            f"{st.get('polls', 0)} polls complete")
    mqtt = doc.get("mqtt") or {}
    what = f"mqtt broker {cfg.mqtt.host}:{cfg.mqtt.port}"
    if mqtt.get("connected"):
        report.ok(what, f"the daemon is connected, {mqtt.get('published', 0)} messages published since it started")
    else:
        report.fail(what, f"the daemon is not connected ({mqtt.get('state') or 'no reason known'})")


# -- without a daemon: the real things ------------------------------------------------------------------
def instruments(cfg: StationConfig, seconds: float, report: Report) -> None:
    from firmware_bridge.families import family
    from firmware_bridge.link import LinkError, open_link

    for inst in cfg.instruments:
        what = f"instrument {inst.name} ({inst.driver} on {inst.port} @ {inst.baud_rate})"
        fam = family(inst.driver)
        parser = fam.Parser()
        link = open_link(inst.port, inst.baud_rate)
        frames = 0
        try:
            link.open()
            try:
                link.write(fam.command_start(cfg.acquisition.sample_rate_hz))
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    frames += parser.feed(link.read()).n
            finally:
                link.close()
        except LinkError as exc:
            report.fail(what, f"cannot open: {exc}")
            continue
        s = parser.stats
        counts = (f"{frames} frames ({frames / seconds:.1f} Hz), {s.checksum_errors} checksum errors, "
                  f"{s.resyncs} resyncs, {s.malformed} malformed, {s.counter_gaps} counter gaps")
        if frames:
            report.ok(what, counts)
        else:
            report.fail(what, f"{counts}: SILENT (check wiring, baud and that the instrument streams; "
                              f"'fluxedge bridge probe --port PORT' finds family and baud)")


def modbus(cfg: StationConfig, report: Report) -> None:
    """Each sensor polled once, the sensors of one port through one bus (as the daemon does)."""
    if not cfg.modbus:
        return
    from station.acquisition.met import MetDevice, MinuteMeans, make_bus
    from station.health.monitorconfig import bus_key

    lines: dict[str, list] = {}
    for dev in cfg.modbus:
        lines.setdefault(bus_key(dev.port), []).append(dev)
    for group in lines.values():
        bus = make_bus(group)
        try:
            for dev in group:
                md = MetDevice(dev, MinuteMeans(), bus)
                what = f"modbus {dev.name} ({dev.map}, device {md.poller.device_id} at {dev.port})"
                values, why = md.check_once()
                shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if v == v)
                if why:
                    report.fail(what, (f"{shown}; " if shown else "") + why)
                else:
                    report.ok(what, shown)
        finally:
            bus.close()


def broker(cfg: StationConfig, report: Report) -> None:
    """A real connection with the configured credentials and TLS, nothing published."""
    from fluxedge.common.mqttclient import describe_error, make_client

    mq = cfg.mqtt
    what = f"mqtt broker {mq.host}:{mq.port}"
    client_id = mq.client_id or f"fluxedge-station-{cfg.site.id}"
    answer: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        answer["rc"] = reason_code
        done.set()

    client = make_client(mq, client_id)
    client.on_connect = on_connect
    try:
        client.connect(mq.host, mq.port, mq.keepalive_s)
    except OSError as exc:
        report.fail(what, f"cannot connect: {describe_error(exc)}")
        return
    except ValueError as exc:
        report.fail(what, f"cannot connect: {exc}")
        return
    client.loop_start()
    try:
        if not done.wait(BROKER_TIMEOUT_S):
            report.fail(what, f"no answer to the connection within {BROKER_TIMEOUT_S:g} s")
        elif answer["rc"].is_failure:
            report.fail(what, f"refused: {answer['rc']} (user {mq.username or '(none)'}, client id {client_id})")
        else:
            how = ", ".join(x for x in (f"user {mq.username}" if mq.username else "anonymous",
                                        "TLS" if mq.tls is not None else "no TLS", f"client id {client_id}") if x)
            report.ok(what, f"connection accepted ({how}); nothing published")
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()


# -- paths ----------------------------------------------------------------------------------------------
def _writable(directory: Path) -> str | None:
    """None if a file can be created, written, synced and removed in ``directory``; else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".fluxedge-check-", dir=directory)
        try:
            os.write(fd, b"fluxedge station check\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(name)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (what would hold a directory made later)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**20


def paths(cfg: StationConfig, report: Report) -> None:
    spool = Path(cfg.spool.path).expanduser()
    what = f"spool {spool}"
    problem = _writable(spool.parent)
    if problem:
        report.fail(what, f"cannot write in {spool.parent}: {problem}")
    elif spool.exists():
        try:
            with contextlib.closing(sqlite3.connect(spool, timeout=5)) as db:
                depth = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        except sqlite3.Error as exc:
            report.fail(what, f"not a usable spool ({exc}); move it away to start a new one")
        else:
            report.ok(what, f"writable, {depth} messages waiting, {_free_mb(spool.parent):.0f} MiB free")
    else:
        report.ok(what, f"writable (created on start), {_free_mb(spool.parent):.0f} MiB free")
    if cfg.archive.enabled:
        root = cfg.archive.root(cfg.spool.path)
        where = _existing(root)
        problem = _writable(where)
        if problem:
            report.fail(f"archive {root}", f"cannot write in {where}: {problem}")
        else:
            note = "" if where == root else " (created with the first period)"
            report.ok(f"archive {root}", f"writable{note}, {_free_mb(where):.0f} MiB free")
    status_file = status.default_path(cfg)
    problem = _writable(_existing(status_file.parent))
    if problem:
        report.fail(f"status file {status_file}", f"cannot write in {status_file.parent}: {problem}")
    else:
        report.ok(f"status file {status_file}", "writable")
