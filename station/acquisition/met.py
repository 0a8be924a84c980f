"""Slow meteorological sensors on Modbus: each device polled on its own interval, 1-minute means.

One :class:`MetDevice` per ``[[modbus]]`` table wraps the project's
:class:`~firmware_bridge.modbus.poller.ModbusPoller` (TCP or RTU), renames the mapped points to
AmeriFlux met names and converts them to the contract's units (``PA`` kPa, ``TA`` degC, ...).
:class:`MinuteMeans` averages every valid value into clock-aligned minutes; a minute closes
``grace_s`` after its end and becomes one :class:`~fluxedge.common.messages.MetRecord` stamped with the
minute's end. :meth:`MetService.latest` offers the newest values (pressure, air temperature) to
the flux engine. Sensors on one line (an RS-485 port with several addresses, as in
deploy/examples/station.toml, or one Modbus TCP gateway) share one
:class:`~firmware_bridge.modbus.poller.ModbusBus`: the port is opened once and one thread polls
them in turn, each on its own interval; each line has its own thread, so a sensor that times out
delays only its own line.

A relative humidity over 100 % is treated as EddyPro treats it (``FluxParams``, its ``RHmax`` of
130 %): a value above 100 % and below 130 % is saturation, reported as 100 %; 130 % or more, or 0 %
or less, is not a humidity and is reported missing (:func:`eddypro_rh`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from firmware_bridge.link import parse_address
from firmware_bridge.modbus.poller import ModbusBus, ModbusPoller, PollResult
from fluxedge.common.logs import event
from fluxedge.common.messages import MetRecord
from station.health.diagnostics import InstrumentInterval
from station.health.monitorconfig import ModbusDeviceConfig, bus_key, met_base_name

log = logging.getLogger("station.met")


@dataclass(frozen=True)
class Reading:
    """A met value [its AmeriFlux unit] and when it was measured [Unix s]."""

    value: float
    time: float


class MinuteMeans:
    """Thread-safe averaging of met values into clock-aligned periods of ``period_s`` (60 s)."""

    def __init__(self, period_s: float = 60.0, grace_s: float = 5.0) -> None:
        self.period_s = period_s
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._sums: dict[int, dict[str, list[float]]] = {}  # period index -> name -> [sum, count]
        self._closed_upto = -1  # index of the last period handed out
        self.late = 0  # values that arrived after their period had closed (dropped)
        self._latest: dict[str, Reading] = {}

    def add(self, time_s: float, values: dict[str, float]) -> None:
        """Values measured at ``time_s``; NaN / None are ignored."""
        k = math.floor(time_s / self.period_s)
        with self._lock:
            for name, v in values.items():
                if v is None or not math.isfinite(v):
                    continue
                latest = self._latest.get(name)
                if latest is None or time_s >= latest.time:
                    self._latest[name] = Reading(float(v), time_s)
                if k <= self._closed_upto:
                    self.late += 1
                    continue
                acc = self._sums.setdefault(k, {}).setdefault(name, [0.0, 0])
                acc[0] += v
                acc[1] += 1

    def close(self, now_s: float) -> list[MetRecord]:
        """Records of every period that ended at least ``grace_s`` before ``now_s``, oldest first."""
        last = math.floor((now_s - self.grace_s) / self.period_s) - 1
        out = []
        with self._lock:
            for k in sorted(self._sums):
                if k > last:
                    break
                sums = self._sums.pop(k)
                out.append(MetRecord((k + 1) * self.period_s, {n: s / c for n, (s, c) in sorted(sums.items())}))
            self._closed_upto = max(self._closed_upto, last)
        return out

    def latest(self, name: str, max_age_s: float | None = None, now_s: float | None = None) -> Reading | None:
        with self._lock:
            reading = self._latest.get(name)
        if reading is None:
            return None
        if max_age_s is not None and (now_s if now_s is not None else time.time()) - reading.time > max_age_s:
            return None
        return reading


#: EddyPro's RHmax [%]: "max acceptable RH for keep doing calculations"
RH_MAX_PCT = 130.0


def eddypro_rh(value: float) -> float:
    """A sensor's relative humidity [%] as EddyPro treats it: 100 % for a value above 100 % and below
    ``RHmax`` (130 %: saturation, a wet sensor in fog), NaN at or above ``RHmax`` or at or below 0."""
    if not math.isfinite(value) or value <= 0.0 or value >= RH_MAX_PCT:
        return math.nan
    return min(value, 100.0)


def _reasons(errors: list[tuple[str, str]]) -> str:
    """``[(point, reason)]`` as one line, each reason once with the points it hit (points skipped
    after an earlier failure of the same poll left out)."""
    first = [(p, r) for p, r in errors if not r.startswith("skipped:")] or errors
    by_reason: dict[str, list[str]] = {}
    for point, reason in first:
        by_reason.setdefault(reason, []).append(point)
    return "; ".join(f"{', '.join(points)}: {reason}" for reason, points in by_reason.items())


def make_bus(devices: list[ModbusDeviceConfig]) -> ModbusBus:
    """The line the ``devices`` share (same port): its serial settings (equal on every device of a
    line: checked on load), the longest timeout and the most retries any of them asks for."""
    first = devices[0].line_settings()
    addr = parse_address(devices[0].port)
    timeout_s = max(d.line_settings()["timeout_s"] for d in devices)
    retries = max(d.line_settings()["retries"] for d in devices)
    if addr.kind == "tcp":
        return ModbusBus("tcp", host=addr.host, port=addr.port, timeout_s=timeout_s, retries=retries)
    return ModbusBus("rtu", port=addr.path, baudrate=first["baud"], parity=first["parity"],
                     stopbits=first["stopbits"], bytesize=first["bytesize"], timeout_s=timeout_s, retries=retries)


class MetDevice:
    """One configured Modbus sensor: polls, maps its points to met names and feeds ``sink``. With
    ``bus`` it polls through that shared line (:func:`make_bus`)."""

    def __init__(self, config: ModbusDeviceConfig, sink: MinuteMeans, bus: ModbusBus | None = None) -> None:
        self.config = config
        self.sink = sink
        addr = parse_address(config.port)
        common = {"device_id": config.device_id, "timeout_s": config.timeout_s, "retries": config.retries}
        if bus is not None:
            self.poller = ModbusPoller(config.map, device_id=config.device_id, bus=bus)
        elif addr.kind == "tcp":
            self.poller = ModbusPoller(config.map, "tcp", host=addr.host, port=addr.port, **common)
        else:
            self.poller = ModbusPoller(config.map, "rtu", port=addr.path, baudrate=config.baud, parity=config.parity,
                                       stopbits=config.stopbits, **common)
        self.mapping = [(p.point, p.name, *config.factor(p)) for p in config.points]
        self._humidity = {p.name for p in config.points if met_base_name(p.name) == "RH"}
        self.polls = 0
        self.polls_ok = 0
        self.answered = False
        self._before = (0, 0, 0)
        self._interval_start = time.monotonic()
        self._last_error = ""
        #: why the latest failed poll failed (kept after a recovery, for the interval's alarm text)
        self.last_failure = ""

    @property
    def name(self) -> str:
        return self.config.name

    def convert(self, result: PollResult) -> dict[str, float]:
        """The poll's mapped points as {met name: value in its AmeriFlux unit} (NaN where failed;
        relative humidity as :func:`eddypro_rh`)."""
        values = {name: result.values.get(point, math.nan) * scale + offset
                  for point, name, scale, offset in self.mapping}
        for name in self._humidity:
            values[name] = eddypro_rh(values[name])
        return values

    def _rejected(self, result: PollResult) -> list[str]:
        """Reasons for humidities :func:`eddypro_rh` turned into missing values."""
        out = []
        for point, name, scale, offset in self.mapping:
            value = result.values.get(point, math.nan) * scale + offset
            if name in self._humidity and math.isfinite(value) and math.isnan(eddypro_rh(value)):
                out.append(f"{name}: {value:.4g} % is not a relative humidity (EddyPro accepts 0..{RH_MAX_PCT:g} %)")
        return out

    def poll_once(self, time_s: float | None = None) -> dict[str, float]:
        """Poll the device once; ``time_s`` overrides the poll's own wall-clock time stamp."""
        result = self.poller.poll()
        values = self.convert(result)
        self.polls += 1
        mapped_ok = all(math.isfinite(v) for v in values.values())
        self.polls_ok += mapped_ok
        was = self.answered
        self.answered = any(math.isfinite(v) for v in values.values())
        skipped = bool(result.errors) and all(r.startswith("backoff:") for _, r in result.errors)
        if not mapped_ok and skipped:
            pass  # not asked: the device is backed off after failures already logged
        elif not mapped_ok:
            error = "; ".join(r for r in (_reasons(result.errors), *self._rejected(result)) if r)
            self.last_failure = error
            if error != self._last_error or was != self.answered:
                event(log, "met_poll_failed", logging.WARNING if was or not self.polls_ok else logging.INFO,
                      device=self.name, error=error)
            self._last_error = error
        elif self._last_error:
            event(log, "met_poll_recovered", device=self.name)
            self._last_error = ""
        self.sink.add(result.timestamp if time_s is None else time_s, values)
        return values

    def take_interval(self, mono_s: float | None = None) -> InstrumentInterval:
        now = time.monotonic() if mono_s is None else mono_s
        elapsed, self._interval_start = now - self._interval_start, now
        polls, ok, crc = self.polls, self.polls_ok, self.poller.stats.crc_errors
        d_polls, d_ok, d_crc = polls - self._before[0], ok - self._before[1], crc - self._before[2]
        self._before = (polls, ok, crc)
        expected = max(round(elapsed / self.config.poll_interval_s), d_polls)
        values = {"SAMPLES_EXPECTED": expected, "SAMPLES_RECEIVED": d_ok, "SAMPLES_MISSING": max(expected - d_ok, 0),
                  "CHECKSUM_ERRORS": d_crc, "CONNECTED": 1 if self.answered else 0}
        metrics = {"MISSING_PCT": 100.0 * values["SAMPLES_MISSING"] / expected if expected else None}
        return InstrumentInterval(self.name, values, metrics, self.observed(d_polls, d_ok))

    def check_once(self) -> tuple[dict[str, float], str]:
        """One poll for ``fluxedge station check``: the converted values and, if any is missing, why
        (nothing is logged, averaged or counted)."""
        result = self.poller.poll()
        values = self.convert(result)
        why = "; ".join(r for r in (_reasons(result.errors), *self._rejected(result)) if r)
        return values, why

    def status(self) -> dict:
        """For the status file (what ``fluxedge station check`` reports while the daemon runs)."""
        return {"port": self.poller.where, "device_id": self.poller.device_id, "polls": self.polls,
                "polls_ok": self.polls_ok, "answered": self.answered, "last_error": self.last_failure or None}

    def observed(self, polls: int, answered: int) -> dict[str, str]:
        """What the alarm texts say was seen (per metric): polls and replies, the last failure."""
        where = f"Modbus device {self.poller.device_id} at {self.poller.where}"
        last = f" (last error: {self.last_failure})" if self.last_failure else ""
        if not self.answered:
            what = f"no reply from {where}{last}"
        else:
            what = f"{where}: {polls - answered} of {polls} polls incomplete{last}"
        return {"CONNECTED": what, "MISSING_PCT": what}

    def close(self) -> None:
        self.poller.close()


class MetService:
    """Every configured Modbus sensor: one :class:`ModbusBus` and one polling thread per line, each
    sensor on its own interval."""

    def __init__(self, devices: list[ModbusDeviceConfig], period_s: float = 60.0) -> None:
        self.means = MinuteMeans(period_s, grace_s=min(5.0, period_s / 2))
        lines: dict[str, list[ModbusDeviceConfig]] = {}
        for d in devices:
            lines.setdefault(bus_key(d.port), []).append(d)
        self.buses = {key: make_bus(group) for key, group in lines.items()}
        by_config = {id(d): MetDevice(d, self.means, self.buses[key]) for key, group in lines.items() for d in group}
        self.devices = [by_config[id(d)] for d in devices]  # in the config's order
        self._lines = {key: [by_config[id(d)] for d in group] for key, group in lines.items()}
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for devs in self._lines.values():
            t = threading.Thread(target=self._run, args=(devs,), name=f"met-{'+'.join(d.name for d in devs)}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, devs: list[MetDevice]) -> None:
        """Poll the devices of one line in turn, each when its own interval comes round."""
        start = time.monotonic()
        due = {id(dev): start for dev in devs}
        while not self._halt.is_set():
            dev = min(devs, key=lambda d: due[id(d)])
            wait = due[id(dev)] - time.monotonic()
            if wait > 0:
                self._halt.wait(wait)
                continue
            try:
                dev.poll_once()
            except Exception as exc:  # a poller bug must not end polling; the poller itself never raises on devices
                event(log, "met_poll_error", logging.ERROR, device=dev.name, error=f"{type(exc).__name__}: {exc}")
            interval = dev.config.poll_interval_s
            due[id(dev)] += interval
            now = time.monotonic()
            if due[id(dev)] < now:  # a poll overran its interval: skip the missed slots
                due[id(dev)] = now + interval - (now - due[id(dev)]) % interval
        for dev in devs:
            dev.close()

    def stop(self) -> None:
        self._halt.set()
        for t in self._threads:
            t.join(10)

    def flush(self, now_s: float) -> list[MetRecord]:
        """Minute means that are complete at ``now_s``."""
        return self.means.close(now_s)

    def latest(self, name: str, max_age_s: float | None = None) -> float | None:
        """The newest value of met ``name`` (``PA`` kPa, ``TA`` degC, ...) no older than ``max_age_s``."""
        reading = self.means.latest(name, max_age_s)
        return None if reading is None else reading.value

    def snapshot(self) -> dict[str, dict]:
        """Latest value and time per met name, for the status file."""
        out = {}
        for dev in self.devices:
            for _, name, _, _ in dev.mapping:
                reading = self.means.latest(name)
                if reading is not None:
                    out[name] = {"value": round(reading.value, 4), "age_s": round(time.time() - reading.time, 1),
                                 "device": dev.name}
        return out


#: a met pressure or air temperature older than this is not used for a period [s]
PRESSURE_MAX_AGE_S = 600.0
TA_MAX_AGE_S = PRESSURE_MAX_AGE_S


def _fill_latest(samples: dict, met: MetService | None, n: int, point: str, channel: str,
                 max_age_s: float) -> bool:
    """Set ``channel`` to the met sensor's latest ``point`` over the period's ``n`` samples."""
    import numpy as np

    value = None if met is None else met.latest(point, max_age_s=max_age_s)
    if value is None:
        return False
    samples[channel] = np.full(n, value)
    return True


def fill_pressure(samples: dict, met: MetService | None, n: int) -> bool:
    """Give the period the met sensor's latest pressure [kPa] when the gas analyser has no pressure
    channel (or only NaN); True if it did."""
    import numpy as np

    p = samples.get("pressure")
    if p is not None and np.isfinite(p).any():
        return False
    return _fill_latest(samples, met, n, "PA", "pressure", PRESSURE_MAX_AGE_S)


def fill_air_temperature(samples: dict, met: MetService | None, n: int) -> bool:
    """Give the period the met sensor's latest air temperature ``TA`` [degC] as channel ``ta_met``,
    which the flux engine takes as the ambient Ta in place of the one derived from the sonic
    temperature (EddyPro's order of priority); True if it did."""
    return _fill_latest(samples, met, n, "TA", "ta_met", TA_MAX_AGE_S)
