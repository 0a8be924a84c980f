"""Register maps: a device's serial defaults plus its points, loaded from TOML and validated.

A map file has three tables (see the shipped ones in ``firmware_bridge/modbus/maps/``)::

    [device]                      # defaults the poller starts from (all optional but model)
    model = "HMP4/5/7/8, HMP110"  # free text; also manufacturer, source, notes
    address = 240                 # Modbus device id (1..247)
    baudrate = 19200
    parity = "N"                  # N, E or O
    stopbits = 2
    bytesize = 8
    timeout_s = 1.0               # per request attempt
    retries = 2                   # further attempts after the first
    pause_s = 0.02                # silence between requests (RS-485 turn-around)
    close_after_poll = false      # release the port/socket after every poll

    [point_defaults]              # any point key, applied where a point omits it
    kind = "holding"
    type = "float32"
    order = "CDAB"

    [[points]]
    name = "rh"                   # [a-z0-9_], unique
    kind = "holding"              # coil, discrete, holding, input
    address = 0x0000              # 0-based PDU address ("40001" = 0; instruments.md 7.1)
    type = "float32"              # int16 uint16 int32 uint32 float32 (bool for coil/discrete)
    order = "CDAB"                # ABCD CDAB BADC DCBA (see registers.py)
    scale = 1.0                   # physical = raw * scale + offset
    offset = 0.0
    scale_register = 4            # optional: also divide by 10**(int16 at this address, same kind)
    missing = [-32768]            # optional raw codes meaning "not available" (int16 default)
    min = 0.0                     # optional plausible range: outside -> NaN + error in the poller
    max = 100.0
    default = 0.0                 # optional value an emulator serves when not told otherwise
    unit = "%RH"
    description = "relative humidity"

Errors raise :class:`MapError` naming the file and the key, e.g.
``hmp.toml: points[2].type: 'float' is not one of int16, uint16, int32, uint32, float32, bool``.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_bridge.modbus.registers import BIT_KINDS, KINDS, ORDERS, TYPES

MAPS_DIR = Path(__file__).with_name("maps")
#: Modbus allows at most 125 registers per read (FC 03/04) and 2000 bits (FC 01/02).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
PARITIES = ("N", "E", "O")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_POINT_KEYS = ("name", "kind", "address", "type", "order", "scale", "offset", "scale_register", "missing", "min",
               "max", "default", "unit", "description")
_DEVICE_KEYS = ("model", "manufacturer", "source", "notes", "address", "baudrate", "parity", "stopbits", "bytesize",
                "timeout_s", "retries", "pause_s", "close_after_poll")
_TOP_KEYS = ("device", "point_defaults", "points")


class MapError(ValueError):
    """A register map that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Point:
    """One value of a device: where its registers are and how to turn them into a physical value."""

    name: str
    kind: str
    address: int
    type: str
    order: str = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    scale_register: int | None = None
    missing: tuple[int, ...] | None = None
    min: float | None = None
    max: float | None = None
    default: float | None = None
    unit: str = ""
    description: str = ""

    @property
    def count(self) -> int:
        """Registers (or bits) the point occupies."""
        return TYPES[self.type]

    @property
    def end(self) -> int:
        """One past the last register of the point."""
        return self.address + self.count

    @property
    def function(self) -> int:
        return {"coil": 1, "discrete": 2, "holding": 3, "input": 4}[self.kind]


@dataclass(frozen=True)
class DeviceDefaults:
    """Serial and polling defaults of a device (each can be overridden by the poller's caller)."""

    model: str
    manufacturer: str = ""
    source: str = ""
    notes: str = ""
    address: int = 1
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_s: float = 1.0
    retries: int = 2
    pause_s: float = 0.0
    close_after_poll: bool = False


@dataclass(frozen=True)
class RegisterMap:
    """A device's defaults and points; ``name`` is the file stem (``vaisala_hmp``)."""

    name: str
    device: DeviceDefaults
    points: tuple[Point, ...]
    path: Path | None = None
    _by_name: dict[str, Point] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({p.name: p for p in self.points})

    def point(self, name: str) -> Point:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name}: no point {name!r}; points: {', '.join(self._by_name)}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.points)

    def at(self, kind: str, address: int) -> Point | None:
        """The point whose first register is ``address`` in table ``kind`` (None if none)."""
        for p in self.points:
            if p.kind == kind and p.address == address:
                return p
        return None


def shipped_maps() -> list[str]:
    """Names of the maps shipped in ``firmware_bridge/modbus/maps/`` (for :func:`load_map`)."""
    return sorted(p.stem for p in MAPS_DIR.glob("*.toml"))


def load_map(name_or_path: str | Path) -> RegisterMap:
    """Load a shipped map by name (``"vaisala_hmp"``) or any TOML file by path; :class:`MapError`
    (a ``ValueError``) when the file is missing, not TOML, or fails validation."""
    text = str(name_or_path)
    path = Path(text)
    bare = "/" not in text and "\\" not in text
    if bare and path.suffix == ".toml" and not path.exists() and (MAPS_DIR / text).exists():
        path = MAPS_DIR / text
    elif bare and not path.suffix:
        path = MAPS_DIR / f"{text}.toml"
        if not path.exists():
            raise MapError(f"no shipped register map {text!r}; shipped: {', '.join(shipped_maps())} "
                           "(or give a path to a .toml file)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MapError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MapError(f"{path.name}: not valid TOML: {exc}") from None
    return parse_map(data, source=path.name, name=path.stem, path=path)


def parse_map(data: dict[str, Any], source: str = "<map>", name: str | None = None,
              path: Path | None = None) -> RegisterMap:
    """Validate an already parsed map (a dict shaped like the TOML file); ``source`` names it in errors."""
    v = _Validator(source)
    if not isinstance(data, dict):
        v.fail("", f"a map must be a table, got {type(data).__name__}")
    v.unknown("", data, _TOP_KEYS)
    device = _device(v, data.get("device"))
    defaults = data.get("point_defaults", {})
    if not isinstance(defaults, dict):
        v.fail("point_defaults", "must be a table")
    v.unknown("point_defaults", defaults, tuple(k for k in _POINT_KEYS if k not in ("name", "address")))
    raw_points = data.get("points")
    if not isinstance(raw_points, list) or not raw_points:
        v.fail("points", "at least one [[points]] table is required")
    points = [_point(v, i, {**defaults, **p} if isinstance(p, dict) else p, p) for i, p in enumerate(raw_points)]
    _cross_checks(v, points)
    return RegisterMap(name or Path(source).stem, device, tuple(points), path)


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source
        #: Appended to messages while a named point is being checked.
        self.context = ""

    def fail(self, key: str, message: str) -> None:
        where = f"{self.source}: {key}: " if key else f"{self.source}: "
        raise MapError(where + message + self.context)

    def unknown(self, key: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
        for k in table:
            if k not in known:
                self.fail(f"{key}.{k}" if key else k, f"unknown key; known keys: {', '.join(known)}")

    def integer(self, key: str, value: Any, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"{value!r} is not an integer")
        if not lo <= value <= hi:
            self.fail(key, f"{value} is outside {lo}..{hi}")
        return value

    def number(self, key: str, value: Any, positive: bool = False, nonzero: bool = False,
               nonnegative: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(key, f"{value!r} is not a finite number")
        if positive and value <= 0:
            self.fail(key, f"{value!r} must be > 0")
        if nonzero and value == 0:
            self.fail(key, "must not be 0")
        if nonnegative and value < 0:
            self.fail(key, f"{value!r} must be >= 0")
        return float(value)

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(key, f"{value!r} is not a string")
        return value

    def choice(self, key: str, value: Any, options: tuple[Any, ...]) -> Any:
        if value not in options or isinstance(value, bool) != isinstance(options[0], bool):
            self.fail(key, f"{value!r} is not one of {', '.join(str(o) for o in options)}")
        return value


def _device(v: _Validator, table: Any) -> DeviceDefaults:
    if not isinstance(table, dict):
        v.fail("device", "a [device] table is required (model, address, baudrate, ...)")
    v.unknown("device", table, _DEVICE_KEYS)
    if "model" not in table:
        v.fail("device.model", "required (free text naming the instrument)")
    kw: dict[str, Any] = {}
    for key in ("model", "manufacturer", "source", "notes"):
        if key in table:
            kw[key] = v.string(f"device.{key}", table[key])
    checks = {
        "address": lambda k, x: v.integer(k, x, 1, 247),
        "baudrate": lambda k, x: v.integer(k, x, 300, 4_000_000),
        "parity": lambda k, x: v.choice(k, x, PARITIES),
        "stopbits": lambda k, x: v.choice(k, x, (1, 2)),
        "bytesize": lambda k, x: v.choice(k, x, (7, 8)),
        "timeout_s": lambda k, x: v.number(k, x, positive=True),
        "retries": lambda k, x: v.integer(k, x, 0, 20),
        "pause_s": lambda k, x: v.number(k, x, nonnegative=True),
        "close_after_poll": lambda k, x: v.choice(k, x, (False, True)),
    }
    for key, check in checks.items():
        if key in table:
            kw[key] = check(f"device.{key}", table[key])
    return DeviceDefaults(**kw)


def _point(v: _Validator, i: int, p: Any, own: Any) -> Point:
    at = f"points[{i}]"
    if not isinstance(p, dict):
        v.fail(at, "must be a table")
    v.unknown(at, own, _POINT_KEYS)
    for key in ("name", "kind", "address"):
        if key not in p:
            v.fail(f"{at}.{key}", "required")
    name = v.string(f"{at}.name", p["name"])
    if not _NAME.match(name):
        v.fail(f"{at}.name", f"{name!r} must be lower case letters, digits and _, starting with a letter")
    v.context = f" (point {name!r})"
    kind = v.choice(f"{at}.kind", p["kind"], KINDS)
    if kind in BIT_KINDS:
        type_ = own.get("type", "bool") if isinstance(own, dict) else "bool"
        if type_ != "bool":
            v.fail(f"{at}.type", f"{type_!r}: {kind} points are single bits, type must be bool")
    else:
        if "type" not in p:
            v.fail(f"{at}.type", "required for register points")
        type_ = v.choice(f"{at}.type", p["type"], tuple(TYPES))
        if type_ == "bool":
            v.fail(f"{at}.type", f"bool is only for coil/discrete points, not {kind}")
    count = TYPES[type_]
    address = v.integer(f"{at}.address", p["address"], 0, 0x10000 - count)
    order = v.choice(f"{at}.order", p.get("order", "ABCD"), ORDERS)
    scale = v.number(f"{at}.scale", p.get("scale", 1.0), nonzero=True)
    offset = v.number(f"{at}.offset", p.get("offset", 0.0))
    missing = None
    if "missing" in p:
        if not isinstance(p["missing"], list):
            v.fail(f"{at}.missing", "must be a list of raw integer codes")
        missing = tuple(v.integer(f"{at}.missing[{j}]", x, -0x80000000, 0xFFFFFFFF) for j, x in enumerate(p["missing"]))
        if type_ == "float32" and missing:
            v.fail(f"{at}.missing", "float32 points signal missing values with NaN, not raw codes")
    lo = v.number(f"{at}.min", p["min"]) if "min" in p else None
    hi = v.number(f"{at}.max", p["max"]) if "max" in p else None
    if lo is not None and hi is not None and lo >= hi:
        v.fail(f"{at}.min", f"min {lo} must be below max {hi}")
    scale_register = None
    if "scale_register" in p:
        scale_register = v.integer(f"{at}.scale_register", p["scale_register"], 0, 0xFFFF)
        if type_ in ("float32", "bool"):
            v.fail(f"{at}.scale_register", f"only integer points can use a scale register, not {type_}")
    default = v.number(f"{at}.default", p["default"]) if "default" in p else None
    unit = v.string(f"{at}.unit", p.get("unit", ""))
    description = v.string(f"{at}.description", p.get("description", ""))
    v.context = ""
    return Point(name, kind, address, type_, order, scale, offset, scale_register, missing, lo, hi, default, unit,
                 description)


def _cross_checks(v: _Validator, points: list[Point]) -> None:
    seen: dict[str, int] = {}
    owner: dict[tuple[str, int], str] = {}
    for i, p in enumerate(points):
        if p.name in seen:
            v.fail(f"points[{i}].name", f"{p.name!r} already used by points[{seen[p.name]}]")
        seen[p.name] = i
        for reg in range(p.address, p.end):
            if (p.kind, reg) in owner:
                v.fail(f"points[{i}].address",
                       f"{p.name!r}: {p.kind} register {reg} (0x{reg:04X}) overlaps point {owner[(p.kind, reg)]!r}")
            owner[(p.kind, reg)] = p.name
    by_address = {(p.kind, p.address): p for p in points}
    for i, p in enumerate(points):
        if p.scale_register is None:
            continue
        ref = by_address.get((p.kind, p.scale_register))
        if ref is None or ref.type not in ("int16", "uint16"):
            v.fail(f"points[{i}].scale_register", f"{p.name!r} needs an int16 point at {p.kind} address "
                                                  f"{p.scale_register} in this map (the scale factor)")
        if ref.scale_register is not None:
            v.fail(f"points[{i}].scale_register", f"{p.name!r}: point {ref.name!r} is itself scaled by a register")
