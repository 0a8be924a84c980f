"""Modbus device emulator: register maps served by a real pymodbus 3.12 server, with fault injection.

One :class:`ModbusEmulator` serves one or more :class:`EmulatedDevice` (a register map + a device
id + a value source) over Modbus TCP or Modbus RTU on a serial port (a pty end of
:class:`firmware_bridge.ptypair.NullModem` in tests), from a background thread running its own
asyncio loop. Values come from a callable ``t -> {name: physical value}`` (or a plain dict),
layered over :func:`synthetic_values` (slowly varying, physically consistent met data), and are
encoded through the map at every request, so a poller reads what a real sensor would send.

pymodbus facts this relies on (read in the installed 3.12.1 source, shared/reference/stack-notes.md
section d): ``ModbusDeviceContext.getValues`` adds **+1** to the PDU address before reading the
datablock, so the datablocks here are keyed ``PDU address + 1`` (:func:`datablock_address`; the
tests prove the mapping); ``async_getValues`` may return an ``ExcCodes`` member, which the request
turns into an exception reply; the server's ``trace_packet(sending, bytes) -> bytes`` hook sees
every outgoing ADU, which is where replies are dropped, delayed or corrupted.

Faults (per device, :class:`Faults`; set attributes at any time, ``clear()`` to recover):

- ``exception``: answer every read with this exception code (4 device failure, 6 busy, ...);
- ``point_exceptions``: ``{point name: code}`` for requests touching that point (2 = illegal
  data address, as a sensor without that register answers);
- ``drop_next``: swallow the next N replies (transient timeouts; retries recover);
- ``silent``: swallow every reply until cleared (device dead, cable cut);
- ``delay_s``: reply this late (after the client's timeout: a stale reply);
- ``word_order``: encode 32-bit points with this order instead of the map's (misconfigured
  device or map: values decode to garbage);
- ``noise_before`` / ``noise_after``: raw bytes sent around the reply (line noise);
- ``bad_crc``: flip the last byte of the reply (an RTU CRC error; on TCP, which has no CRC, it
  silently corrupts the last data byte - the reason TCP gateways rely on the TCP checksum).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from firmware_bridge.modbus.maps import Point, RegisterMap, load_map
from firmware_bridge.modbus.registers import BIT_KINDS, ORDERS, encode
from firmware_bridge.turbulence import TurbulenceSpec

ValueSource = Callable[[float], Mapping[str, float]] | Mapping[str, float] | None

#: Datastore table of each function code (as ``ModbusBaseDeviceContext._fx_mapper``).
_KIND_OF_FUNCTION = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 4: "input", 3: "holding", 6: "holding",
                     16: "holding", 22: "holding", 23: "holding"}
_STORE_KEY = {"coil": "c", "discrete": "d", "holding": "h", "input": "i"}


def datablock_address(pdu_address: int) -> int:
    """Datablock key of a PDU address: ``ModbusDeviceContext`` adds 1 before reading the block."""
    return pdu_address + 1


# -- values ---------------------------------------------------------------------------------------------
def met_values(t: float, period_s: float = 3600.0, spec: TurbulenceSpec | None = None) -> dict[str, float]:
    """Slowly varying, mutually consistent met/soil values at time ``t`` [s] (one "day" = ``period_s``).

    The air is the air of the turbulence model the emulated sonic and gas analysers observe
    (``spec``, default :class:`~firmware_bridge.turbulence.TurbulenceSpec`): its mean temperature,
    its pressure and the vapour pressure of its water-vapour mole fraction, so a station that takes
    the met sensor's air temperature as the flux engine's ambient Ta gets the humidity its analyser
    measures (a relative humidity below 100 %). Relative humidity and dew point from that vapour
    pressure with Magnus (Sonntag 1990 constants 17.62/243.12); radiation, soil and supply voltage
    follow a diurnal cycle; names as in the shipped maps.
    """
    spec = spec or TurbulenceSpec()
    phase = 2 * math.pi * (t % period_s) / period_s
    day = math.sin(phase)
    t_air = spec.t_mean_k - 273.15
    p = 10.0 * spec.pressure_kpa  # hPa
    chi_v = spec.chi_v_mean_mmol_mol * 1e-3  # dry mole fraction [mol mol-1]
    e = p * chi_v / (1.0 + chi_v)  # hPa (Dalton: the wet-air mole fraction of the total pressure)
    es = 6.112 * math.exp(17.62 * t_air / (243.12 + t_air))  # hPa
    rh = 100.0 * e / es
    gamma = math.log(rh / 100.0) + 17.62 * t_air / (243.12 + t_air)
    td = 243.12 * gamma / (17.62 - gamma)
    irradiance = max(0.0, 850.0 * day)
    return {
        "t_air": t_air, "rh": rh, "td": td, "tdf": td, "td_atm": td, "tdf_atm": td,
        "t_wet": t_air - (t_air - td) / 3.0,
        "abs_humidity": 100.0 * e / (461.5 * (t_air + 273.15)) * 1000.0,
        "mixing_ratio": 622.0 * e / (p - e), "h2o_ppmv": 1e6 * e / p,
        "pressure": p, "pressure_p1": p + 0.02, "qnh": p + 12.0, "pressure_tendency_3h": 0.0,
        "t_sensor": t_air + 2.0, "irradiance": irradiance, "irradiance_std": 0.02 * irradiance,
        "irradiance_raw": 9.0 * irradiance, "t_body": t_air + 0.004 * irradiance, "ppfd": 2.1 * irradiance,
        "ppfd_immersed": 2.3 * irradiance, "ppfd_solar": 2.0 * irradiance, "detector_mv": 0.2 * irradiance,
        "soil_moisture": 28.0 - 2.0 * day, "soil_temperature": 12.0 + 2.0 * math.sin(phase - 1.0),
        "soil_ec": 420.0 + 30.0 * day, "soil_ph": 6.5, "supply_voltage": 12.6 + 0.8 * day,
    }


def synthetic_values(register_map: RegisterMap, period_s: float = 3600.0) -> Callable[[float], dict[str, float]]:
    """A value source for every point of ``register_map``: :func:`met_values` where the name is
    known, else the point's ``default``, else a slow sine in the middle of its ``min``..``max``
    range, else 0."""
    points = register_map.points

    def source(t: float) -> dict[str, float]:
        met = met_values(t, period_s)
        out = {}
        for k, p in enumerate(points):
            if p.name in met:
                out[p.name] = met[p.name]
            elif p.default is not None:
                out[p.name] = p.default
            elif p.min is not None and p.max is not None:
                mid, amp = (p.min + p.max) / 2, (p.max - p.min) / 5
                out[p.name] = mid + amp * math.sin(2 * math.pi * t / period_s + k)
            else:
                out[p.name] = 0.0
        return out

    return source


# -- faults ---------------------------------------------------------------------------------------------
@dataclass
class Faults:
    """What an :class:`EmulatedDevice` does wrong (module docstring); ``clear()`` restores health."""

    exception: int | None = None
    point_exceptions: dict[str, int] = field(default_factory=dict)
    drop_next: int = 0
    silent: bool = False
    delay_s: float = 0.0
    word_order: str | None = None
    noise_before: bytes = b""
    noise_after: bytes = b""
    bad_crc: bool = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "exception" and value is not None:
            _exc_code(value)
        elif name == "point_exceptions":
            value = {str(k): int(_exc_code(v)) for k, v in dict(value).items()}
        elif name == "word_order" and value is not None and value not in ORDERS:
            raise ValueError(f"word_order {value!r} is not one of {', '.join(ORDERS)}")
        elif name not in _FAULT_NAMES:
            raise AttributeError(f"no fault {name!r}; faults: {', '.join(sorted(_FAULT_NAMES))}")
        super().__setattr__(name, value)

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, {} if f.name == "point_exceptions" else f.default)

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) != ({} if f.name == "point_exceptions" else f.default) for f in fields(self))


_FAULT_NAMES = {"exception", "point_exceptions", "drop_next", "silent", "delay_s", "word_order", "noise_before",
                "noise_after", "bad_crc"}


def _exc_code(code: int) -> ExcCodes:
    try:
        return ExcCodes(code)
    except ValueError:
        raise ValueError(f"{code!r} is not a Modbus exception code; use one of "
                         f"{', '.join(f'{c.value} ({c.name})' for c in ExcCodes)}") from None


# -- device -------------------------------------------------------------------------------------------------
class EmulatedDevice:
    """A register map served under ``device_id`` (default: the map's address) with values from ``values``.

    ``values``: ``t -> {name: value}`` or a dict, layered over :func:`synthetic_values`; assign
    ``device.values`` at any time. ``requests`` logs ``(monotonic time, function, address, count)``
    of every read and write that reached the device; ``faults`` is its :class:`Faults`.
    """

    def __init__(self, register_map: RegisterMap | str, device_id: int | None = None, values: ValueSource = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.map = load_map(register_map) if isinstance(register_map, str) else register_map
        self.device_id = self.map.device.address if device_id is None else device_id
        if not 1 <= self.device_id <= 247:
            raise ValueError(f"device id {self.device_id} is outside 1..247")
        self.values: ValueSource = values
        self.clock = clock
        self.faults = Faults()
        self.requests: deque[tuple[float, int, int, int]] = deque(maxlen=100_000)
        self.replies_dropped = 0
        self._baseline = synthetic_values(self.map)
        blocks = {kind: ModbusSparseDataBlock({datablock_address(reg): 0 for p in self.map.points if p.kind == kind
                                               for reg in range(p.address, p.end)}, mutable=False)
                  for kind in _STORE_KEY}
        self.context = _DeviceContext(self, di=blocks["discrete"], co=blocks["coil"], hr=blocks["holding"],
                                      ir=blocks["input"])

    # values -> registers
    def current_values(self, t: float | None = None) -> dict[str, float]:
        """Physical values the device holds at time ``t`` (default now): baseline overlaid with ``values``."""
        t = self.clock() if t is None else t
        out = self._baseline(t)
        src = self.values
        if src is not None:
            out.update(src(t) if callable(src) else src)
        return out

    def register_values(self, t: float | None = None) -> dict[tuple[str, int], int]:
        """``{(kind, PDU address): raw register/bit}`` as the device would send them at ``t``."""
        values = self.current_values(t)
        order_fault = self.faults.word_order
        if order_fault is not None and order_fault not in ORDERS:
            raise ValueError(f"faults.word_order {order_fault!r} is not one of {', '.join(ORDERS)}")
        out: dict[tuple[str, int], int] = {}
        for p in self.map.points:
            value = float(values.get(p.name, 0.0))
            if p.kind in BIT_KINDS:
                out[(p.kind, p.address)] = int(bool(round(value))) if math.isfinite(value) else 0
                continue
            if p.scale_register is not None:
                s = values.get(self.map.at(p.kind, p.scale_register).name, 0.0)  # type: ignore[union-attr]
                value *= 10.0 ** round(s)
            order = order_fault if (order_fault and p.count == 2) else p.order
            regs = encode(value, p.type, order, p.scale, p.offset, p.missing, clip=True)
            for k, reg in enumerate(regs):
                out[(p.kind, p.address + k)] = reg
        return out

    def refresh(self, t: float | None = None) -> None:
        """Write the current values into the datablocks (done before every read)."""
        for (kind, address), raw in self.register_values(t).items():
            self.context.store[_STORE_KEY[kind]].values[datablock_address(address)] = raw

    def points_touched(self, kind: str, address: int, count: int) -> list[Point]:
        return [p for p in self.map.points if p.kind == kind and p.address < address + count and address < p.end]


class _DeviceContext(ModbusDeviceContext):
    """``ModbusDeviceContext`` that refreshes values and applies faults before the datablock read."""

    def __init__(self, device: EmulatedDevice, **blocks: Any) -> None:
        super().__init__(**blocks)
        self.device = device

    async def async_getValues(self, func_code: int, address: int, count: int = 1):  # type: ignore[override]
        dev = self.device
        dev.requests.append((time.monotonic(), func_code, address, count))
        faults = dev.faults
        if faults.delay_s > 0:
            await asyncio.sleep(faults.delay_s)
        if faults.exception:
            return _exc_code(faults.exception)
        kind = _KIND_OF_FUNCTION.get(func_code)
        if kind is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if faults.point_exceptions:
            for p in dev.points_touched(kind, address, count):
                if p.name in faults.point_exceptions:
                    return _exc_code(faults.point_exceptions[p.name])
        dev.refresh()
        return self.getValues(func_code, address, count)  # parent adds the +1 datablock offset

    async def async_setValues(self, func_code: int, address: int, values):  # type: ignore[override]
        """Writes (FC 05/06/15/16) are logged and refused with 02 "illegal data address": the
        mapped points are measurements, read-only on the sensors of instruments.md 7.2-7.6."""
        dev = self.device
        dev.requests.append((time.monotonic(), func_code, address, len(values)))
        if dev.faults.exception:
            return _exc_code(dev.faults.exception)
        return ExcCodes.ILLEGAL_ADDRESS


# -- server ---------------------------------------------------------------------------------------------
class ModbusEmulator:
    """Serve :class:`EmulatedDevice` s over ``transport="tcp"`` (``host``, ``port``; 0 = a free port)
    or ``"rtu"`` (``serial_port``, e.g. ``NullModem().a_path``) from a background thread.

    ``start()`` returns once the server listens (``RuntimeError`` if it cannot); ``stop()`` shuts it
    down and joins the thread; usable as a context manager. Requests for unknown device ids get
    no reply (as on an RS-485 bus) unless ``ignore_missing_devices=False`` (then exception 0x0B).
    ``connections`` counts client connections (TCP) / port opens (RTU); ``sent`` keeps the last
    replies as sent (after faults).
    """

    def __init__(self, devices: EmulatedDevice | list[EmulatedDevice], *, transport: str = "tcp",
                 host: str = "127.0.0.1", port: int = 0, serial_port: str | None = None, baudrate: int = 19200,
                 parity: str = "N", stopbits: int = 1, bytesize: int = 8, ignore_missing_devices: bool = True) -> None:
        devs = [devices] if isinstance(devices, EmulatedDevice) else list(devices)
        if not devs:
            raise ValueError("ModbusEmulator needs at least one EmulatedDevice")
        self.devices: dict[int, EmulatedDevice] = {}
        for d in devs:
            if d.device_id in self.devices:
                raise ValueError(f"two emulated devices share device id {d.device_id}")
            self.devices[d.device_id] = d
        if transport not in ("tcp", "rtu"):
            raise ValueError(f"transport {transport!r} is not one of tcp, rtu")
        if transport == "rtu" and not serial_port:
            raise ValueError("transport 'rtu' needs serial_port (e.g. NullModem().a_path)")
        self.transport = transport
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.serial = {"baudrate": baudrate, "parity": parity, "stopbits": stopbits, "bytesize": bytesize}
        self.ignore_missing_devices = ignore_missing_devices
        self.connections = 0
        self.sent: deque[bytes] = deque(maxlen=1000)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # convenience
    @property
    def device(self) -> EmulatedDevice:
        """The only device (``ValueError`` when there are several: use ``devices[id]``)."""
        if len(self.devices) != 1:
            raise ValueError(f"{len(self.devices)} devices: pick one with devices[device_id]")
        return next(iter(self.devices.values()))

    @property
    def faults(self) -> Faults:
        return self.device.faults

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}" if self.transport == "tcp" else str(self.serial_port)

    def __enter__(self) -> ModbusEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 5.0) -> ModbusEmulator:
        if self._thread is not None:
            return self
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=f"modbus emulator {self.transport}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"Modbus emulator did not start within {timeout_s} s")
        if self._error is not None:
            self._thread.join(timeout_s)
            self._thread = None
            raise RuntimeError(f"Modbus emulator cannot listen on {self.address}: {self._error}") from self._error
        return self

    def stop(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=5.0)
        self._thread = None

    # thread
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        context = ModbusServerContext(devices={i: d.context for i, d in self.devices.items()}, single=False)
        common = {"trace_packet": self._trace_packet, "trace_connect": self._trace_connect,
                  "ignore_missing_devices": self.ignore_missing_devices}
        server: ModbusTcpServer | ModbusSerialServer
        if self.transport == "tcp":
            server = ModbusTcpServer(context, address=(self.host, self.port), **common)
        else:
            server = ModbusSerialServer(context, framer=FramerType.RTU, port=self.serial_port, **self.serial,
                                        **common)
        if not await server.listen():
            raise OSError(f"listen failed on {self.address} (port in use, or serial port missing/busy?)")
        if self.transport == "tcp":
            self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.shutdown()
            await asyncio.sleep(0)

    def _trace_connect(self, connected: bool) -> None:
        if connected:
            self.connections += 1

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Outgoing ADUs pass here (pymodbus ``trace_packet``): apply the addressed device's faults."""
        if not sending or not data:
            return data
        unit = data[0] if self.transport == "rtu" else (data[6] if len(data) > 6 else 0)
        dev = self.devices.get(unit)
        if dev is not None:
            f = dev.faults
            if f.silent or f.drop_next > 0:
                if f.drop_next > 0:
                    f.drop_next -= 1
                dev.replies_dropped += 1
                return b""
            if f.bad_crc:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            data = f.noise_before + data + f.noise_after
        self.sent.append(data)
        return data
