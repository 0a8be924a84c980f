"""Replay sources: real raw EC files turned into the observation blocks emulators encode.

Campbell TOA5 (4 header lines: file info, names, units, processing) with a sonic and an open-path
analyser; densities are converted to the analyser's native units on read (CO2 mg m-3 ->
mmol m-3 with M = 44.0095 g mol-1, H2O g m-3 -> mmol m-3 with M = 18.01528 g mol-1).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

#: TOA5 column name (lower case) -> (observation channel, unit -> factor to our unit).
TOA5_COLUMNS = {
    "ux": ("u", {"m/s": 1.0}), "uy": ("v", {"m/s": 1.0}), "uz": ("w", {"m/s": 1.0}),
    "ts": ("t_sonic", {"c": 1.0, "degc": 1.0, "deg c": 1.0}),
    "co2": ("co2", {"mg/m^3": 1 / 44.0095, "mg/m3": 1 / 44.0095, "mmol/m^3": 1.0}),
    "h2o": ("h2o", {"g/m^3": 1000 / 18.01528, "g/m3": 1000 / 18.01528, "mmol/m^3": 1.0}),
    "press": ("pressure", {"kpa": 1.0}),
}


class ReplayError(ValueError):
    """A replay file that cannot be used; the message names the file and the problem."""


def read_toa5(path: str | Path) -> dict[str, np.ndarray]:
    """Observation channels from a TOA5 file; ``temperature`` defaults to the sonic temperature."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{path}: cannot read: {exc}") from None
    if len(rows) < 5 or not rows[0] or rows[0][0] != "TOA5":
        raise ReplayError(f"{path}: not a TOA5 file (first field must be 'TOA5' and 4 header lines)")
    names = [n.lower() for n in rows[1]]
    units = [u.lower() for u in rows[2]]
    obs: dict[str, np.ndarray] = {}
    for col, (name, unit) in enumerate(zip(names, units, strict=False)):
        if name not in TOA5_COLUMNS:
            continue
        channel, factors = TOA5_COLUMNS[name]
        if unit not in factors:
            raise ReplayError(f"{path}: column {rows[1][col]!r} has unit {rows[2][col]!r}; "
                              f"expected one of {sorted(factors)}")
        try:
            values = np.array([float(r[col]) if r[col] not in ("", "NAN") else np.nan for r in rows[4:]])
        except (ValueError, IndexError):
            raise ReplayError(f"{path}: column {rows[1][col]!r} holds a non-numeric value") from None
        obs[channel] = values * factors[unit]
    missing = {"u", "v", "w", "t_sonic"} - set(obs)
    if missing:
        raise ReplayError(f"{path}: no column for {', '.join(sorted(missing))}")
    obs.setdefault("temperature", obs["t_sonic"].copy())
    n = len(obs["u"])
    obs.setdefault("pressure", np.full(n, 101.325))
    return obs
