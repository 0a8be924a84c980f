"""Modbus RTU/TCP for the slow "biomet" sensors of a flux tower (shared/reference/instruments.md section 7).

- :mod:`.registers`: register values <-> physical values (types, word orders, scale, missing codes);
- :mod:`.maps`: TOML register maps (device defaults + points), shipped ones in ``maps/``;
- :mod:`.poller`: :class:`ModbusPoller`, the driver (pymodbus sync clients, never raises on devices);
- :mod:`.server`: :class:`ModbusEmulator`, maps served by a real pymodbus server with fault injection;
- :mod:`.rtu`: CRC-16/MODBUS, frame builders and the bus-capture parser (family ``"modbus"``).

Lazy attributes keep ``import firmware_bridge.modbus.rtu`` (the family registry) free of pymodbus.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ModbusPoller": "poller", "PollResult": "poller", "PollerStats": "poller", "plan_requests": "poller",
    "ModbusEmulator": "server", "EmulatedDevice": "server", "Faults": "server", "synthetic_values": "server",
    "RegisterMap": "maps", "Point": "maps", "MapError": "maps", "load_map": "maps", "parse_map": "maps",
    "shipped_maps": "maps",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
