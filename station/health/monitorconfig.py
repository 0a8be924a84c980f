"""Config tables of the station's monitoring side: ``[diagnostics]``, ``[[alarm]]``, ``[[modbus]]``
and ``[status]`` (documented key by key in deploy/examples/station.toml).

Kept apart from :mod:`station.config` so that module only has to list them; validation follows
:mod:`fluxedge.common.configschema` (each problem names its key).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from firmware_bridge.link import parse_address
from fluxedge.common.configschema import between, check, positive

#: AmeriFlux position qualifier "_<H>_<V>_<R>" or "_<N>" (TS_1, SWC_1_2_1)
_QUALIFIED = re.compile(r"^([A-Z][A-Z0-9_]*?)(?:_\d{1,3}_\d{1,3}_\d{1,3}|_\d{1,3})?$")

#: (map unit, AmeriFlux unit) -> factor, for points mapped onto a met name without an explicit ``scale``
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("hPa", "kPa"): 0.1, ("Pa", "kPa"): 0.001, ("kPa", "kPa"): 1.0, ("mbar", "kPa"): 0.1,
    ("%RH", "%"): 1.0, ("%", "%"): 1.0, ("degC", "degC"): 1.0, ("W m-2", "W m-2"): 1.0,
    ("umol m-2 s-1", "umol m-2 s-1"): 1.0, ("m s-1", "m s-1"): 1.0, ("deg", "deg"): 1.0, ("mm", "mm"): 1.0,
    ("m3 m-3", "%"): 100.0,
}


def met_base_name(name: str) -> str | None:
    """The AmeriFlux base name of ``name`` (``TS_1`` -> ``TS``) if it is a known met name."""
    from fluxedge.common.messages import MET_FIELDS

    if name in MET_FIELDS:
        return name
    m = _QUALIFIED.match(name)
    return m.group(1) if m and m.group(1) in MET_FIELDS else None


def _met_name(value: str) -> str | None:
    if met_base_name(value) is None:
        from fluxedge.common.messages import MET_FIELDS

        return f"{value!r} is not an AmeriFlux met name ({', '.join(MET_FIELDS)}, optionally with _<N> " \
               f"or _<H>_<V>_<R>)"
    return None


def _modbus_port(value: str) -> str | None:
    try:
        parse_address(value)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class DiagnosticsConfig:
    #: diagnostics (a ``diag`` batch) are spooled every this many seconds
    interval_s: float = field(default=60.0, metadata=check(between(1, 3600)))
    #: alarms on silence, disconnection and clock steps are evaluated this often [s]
    alarm_tick_s: float = field(default=1.0, metadata=check(between(0.1, 60)))


@dataclass(frozen=True)
class MetPointConfig:
    #: point name in the register map (``t_air``, ``rh``, ``pressure`` ...)
    point: str
    #: AmeriFlux name it is published as (``TA``, ``RH``, ``PA``, ``SW_IN``, ``TS_1`` ...)
    name: str = field(metadata=check(_met_name))
    #: value = raw x scale + offset; default: converted from the map's unit to the AmeriFlux unit
    scale: float | None = None
    offset: float = 0.0


@dataclass(frozen=True)
class ModbusDeviceConfig:
    name: str = field(metadata=check(lambda v: None if re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", v) else
                                     "must be 1-64 of lower-case letters, digits, '_', '.', '-' (a diag source)"))
    #: a shipped register map (vaisala_hmp, vaisala_barometer, kipp_zonen_smp, apogee_sq422x,
    #: soil_probe_layout_a, campbell_metsens300) or the path of a map TOML
    map: str
    #: serial device path (RTU) or tcp://HOST:PORT (Modbus TCP)
    port: str = field(metadata=check(_modbus_port))
    points: list[MetPointConfig]
    device_id: int | None = field(default=None, metadata=check(between(1, 247)))
    poll_interval_s: float = field(default=10.0, metadata=check(between(0.5, 3600)))
    baud: int | None = None
    parity: str | None = None
    stopbits: int | None = None
    timeout_s: float | None = field(default=None, metadata=check(positive))
    retries: int | None = field(default=None, metadata=check(between(0, 10)))

    def validate(self) -> list[tuple[str, str]]:
        from firmware_bridge.modbus.maps import MapError, load_map
        from fluxedge.common.messages import MET_FIELDS

        try:
            register_map = load_map(self.map)
        except (MapError, OSError, KeyError, ValueError) as exc:
            return [("map", str(exc).splitlines()[0])]
        if not self.points:
            return [("points", "map at least one point onto a met name")]
        seen: set[str] = set()
        for i, pt in enumerate(self.points):
            if pt.point not in register_map.names:
                return [(f"points[{i}].point", f"{register_map.name} has no point {pt.point!r}; points: "
                                               f"{', '.join(register_map.names)}")]
            if pt.name in seen:
                return [(f"points[{i}].name", f"{pt.name} is mapped twice")]
            seen.add(pt.name)
            unit = register_map.point(pt.point).unit
            target = MET_FIELDS[met_base_name(pt.name) or ""][0]
            if pt.scale is None and (unit, target) not in UNIT_FACTORS:
                return [(f"points[{i}].scale", f"no known conversion from {unit!r} ({pt.point}) to {target!r} "
                                               f"({pt.name}): give scale (and offset)")]
        if self.parity is not None and self.parity not in ("N", "E", "O"):
            return [("parity", f"must be N, E or O, got {self.parity!r}")]
        if self.stopbits is not None and self.stopbits not in (1, 2):
            return [("stopbits", f"must be 1 or 2, got {self.stopbits}")]
        return []

    def line_settings(self) -> dict:
        """What this device needs of its line: ``device_id``, ``baud``, ``parity``, ``stopbits``,
        ``bytesize``, ``timeout_s``, ``retries`` (the config's, else the map's factory settings)."""
        from firmware_bridge.modbus.maps import load_map

        d = load_map(self.map).device
        pick = {"device_id": (self.device_id, d.address), "baud": (self.baud, d.baudrate),
                "parity": (self.parity, d.parity), "stopbits": (self.stopbits, d.stopbits),
                "bytesize": (None, d.bytesize), "timeout_s": (self.timeout_s, d.timeout_s),
                "retries": (self.retries, d.retries)}
        return {k: given if given is not None else default for k, (given, default) in pick.items()}

    def factor(self, point: MetPointConfig) -> tuple[float, float]:
        """(scale, offset) turning the map's value of ``point`` into its AmeriFlux unit."""
        from firmware_bridge.modbus.maps import load_map
        from fluxedge.common.messages import MET_FIELDS

        if point.scale is not None:
            return point.scale, point.offset
        unit = load_map(self.map).point(point.point).unit
        return UNIT_FACTORS[(unit, MET_FIELDS[met_base_name(point.name) or ""][0])], point.offset


def bus_key(port: str) -> str:
    """The line a ``port`` names: ``tcp://HOST:PORT`` (a gateway), or the serial device with its
    links resolved (``/dev/serial/by-id/...`` and ``/dev/ttyUSB2`` are one RS-485 bus)."""
    addr = parse_address(port)
    return f"tcp://{addr.host}:{addr.port}" if addr.kind == "tcp" else os.path.realpath(addr.path)


def check_buses(devices: list[ModbusDeviceConfig]) -> list[tuple[str, str]]:
    """Problems of sensors sharing a line (key, message): each needs its own address, and a serial
    line has one baud rate, parity and stop bits."""
    seen: dict[str, list[tuple[int, ModbusDeviceConfig, dict]]] = {}
    for k, dev in enumerate(devices):
        try:
            mine = dev.line_settings()
        except Exception:  # the map itself is reported by the device's own check
            continue
        serial = parse_address(dev.port).kind == "serial"
        for j, other, theirs in seen.get(bus_key(dev.port), []):
            if mine["device_id"] == theirs["device_id"]:
                return [(f"modbus[{k}].device_id", f"address {mine['device_id']} on {dev.port} is also "
                                                   f"modbus[{j}] {other.name!r}'s: every sensor on one bus needs its "
                                                   f"own address (set device_id)")]
            for key in ("baud", "parity", "stopbits") if serial else ():
                if mine[key] != theirs[key]:
                    return [(f"modbus[{k}].{key}", f"{mine[key]!r} differs from modbus[{j}] {other.name!r} "
                                                   f"({theirs[key]!r}) on the same port {dev.port}: one bus, one "
                                                   f"serial setting")]
        seen.setdefault(bus_key(dev.port), []).append((k, dev, mine))
    return []


@dataclass(frozen=True)
class StatusConfig:
    #: the JSON file ``fluxedge station status`` reads; default: status.json beside the spool
    path: str | None = None
    #: rewritten every this many seconds; older than 3 x this means the daemon is not running
    interval_s: float = field(default=5.0, metadata=check(between(0.5, 600)))
