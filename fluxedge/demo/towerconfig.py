"""Station configs for emulated towers: the demo, the benchmarks and the tests write their
``station.toml`` here, from a few choices, instead of each keeping its own copy of the text.

The TOML is the documented format (deploy/examples/station.toml); :func:`station_toml` only
renders it, and ``station.config.load`` validates it as it would any technician's file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A site like the emulator's: a tropical tower (Singapore), 20 m above a 3-m canopy.
EMULATED_SITE: dict[str, Any] = {"latitude_deg": 1.35, "longitude_deg": 103.8, "canopy_height_m": 3.0,
                                 "measurement_height_m": 20.0}


@dataclass(frozen=True)
class Instrument:
    """One ``[[instruments]]`` entry: name, driver, port, and any other keys (baud, separations ...)."""

    name: str
    driver: str
    port: str
    options: Mapping[str, Any] = field(default_factory=dict)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v))  # a TOML basic string
    if isinstance(v, Sequence):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _table(header: str, keys: Mapping[str, Any]) -> str:
    return "\n".join([header, *(f"{k} = {_value(v)}" for k, v in keys.items() if v is not None)]) + "\n"


def station_toml(site_id: str, instruments: Sequence[Instrument], *, mqtt_port: int, spool_path: str | Path,
                 period_s: int, rate_hz: float = 20.0, site: Mapping[str, Any] | None = None,
                 processing: Mapping[str, Any] | None = None, mqtt: Mapping[str, Any] | None = None,
                 tables: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]] | None = None) -> str:
    """The text of a station config. ``site`` overrides :data:`EMULATED_SITE`; ``tables`` adds
    further sections by name (a mapping is a table, a list of mappings an array of tables, e.g.
    ``{"archive": {...}, "modbus": [{...}, {...}]}``)."""
    parts = [_table("[site]", {"id": site_id, **EMULATED_SITE, **(site or {})}),
             _table("[acquisition]", {"averaging_period_s": period_s, "sample_rate_hz": rate_hz})]
    if processing:
        parts.append(_table("[processing]", processing))
    parts += [_table("[[instruments]]", {"name": i.name, "driver": i.driver, "port": i.port, **i.options})
              for i in instruments]
    parts.append(_table("[mqtt]", {"host": "127.0.0.1", "port": mqtt_port, **(mqtt or {})}))
    parts.append(_table("[spool]", {"path": spool_path}))
    for name, body in (tables or {}).items():
        if isinstance(body, Mapping):
            parts.append(_table(f"[{name}]", body))
        else:
            parts += [_table(f"[[{name}]]", entry) for entry in body]
    return "\n".join(parts)
