"""The registry of instrument families: adding an instrument means one module and one line here.

Every family module has the same shape (like a Telegraf input plugin):

- ``NAME`` (the registry name), ``ROLE`` (``"sonic"``, ``"gas"`` or ``"met"``), ``TRANSPORT``
  (``"serial"``, ``"tcp"`` or ``"modbus"``), ``DEFAULT_BAUD`` and ``BAUDS`` (serial rates the
  instrument can run at, tried by ``bridge probe``) or ``DEFAULT_TCP_PORT``;
- ``CHANNELS`` and ``UNITS``: documented channel names (sonics ``u``, ``v``, ``w`` [m s-1],
  ``t_sonic`` [degC], ``diag``; gas analysers ``co2``, ``h2o`` [mmol m-3], ``pressure`` [kPa],
  ``temperature`` [degC], ``diag``, ``signal_strength`` [%]);
- ``RESOLUTION``: float channel -> the step the instrument resolves, as a format spec (``".5f"``
  five decimals, ``".8g"`` eight significant digits; :mod:`firmware_bridge.resolution`): the
  station keeps and archives every value at it, so a value derived in float64 (counts times a
  scale) carries no digits the instrument never had;
- ``Parser(**options)``: ``feed(bytes) -> Batch`` and ``stats`` (:class:`frames.ParseStats`);
  never raises on bytes, counts what it rejects;
- ``RECORD_COUNTER``: ``(channel, modulus)`` of the instrument's own record counter (CSAT3
  ``("counter", 64)``, LI-COR ``("index", None)``: ``Ndx`` does not wrap), or None: the station
  places records on its sample grid by it (:mod:`station.acquisition.align`);
- ``decode_flags(diag) -> {name: bool array}``: the diagnostic bits by name, True meaning the
  condition is present (a fault, or a state such as a heater being on);
- ``valid(columns) -> bool array``: samples whose diagnostics allow them into flux statistics;
- ``command_start(rate_hz) -> bytes``: what the driver sends when it opens the port;
- ``Device`` (:class:`device.Device`): the emulator side, speaking the same bytes.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Registry name -> module implementing the family.
FAMILIES: dict[str, str] = {
    "csat3": "firmware_bridge.csat3",
    "csat3b": "firmware_bridge.csat3b",
    "windmaster": "firmware_bridge.windmaster",
    "li7500": "firmware_bridge.li7500",
    "li7200": "firmware_bridge.li7200",
    "li7700": "firmware_bridge.li7700",
    "modbus": "firmware_bridge.modbus.rtu",
}


def family(name: str) -> ModuleType:
    """The module of family ``name``; ``KeyError`` naming the known families otherwise."""
    try:
        path = FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown instrument family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None
    return importlib.import_module(path)


def streaming_families() -> list[str]:
    """Families whose instruments stream frames on a serial line or TCP socket (not polled)."""
    return [name for name in FAMILIES if family(name).TRANSPORT != "modbus"]
