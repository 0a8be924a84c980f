"""The registry of instrument families: adding an instrument means adding its module here.

Every family module provides ``Parser`` (``feed(bytes) -> Batch``, ``stats``), ``CHANNELS``,
``UNITS``, ``ROLE`` (``sonic`` or ``gas``), ``encode_observation(obs, first_index) -> bytes`` for
the emulator and ``command_start(rate_hz) -> bytes``-style command builders.
"""

from __future__ import annotations

from types import ModuleType

from firmware_bridge import csat3, li7500

FAMILIES: dict[str, ModuleType] = {"csat3": csat3, "li7500": li7500}


def family(name: str) -> ModuleType:
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown instrument family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None
