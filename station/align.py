"""Aligning instrument streams onto the master sonic's regular sample grid (pure NumPy)."""

from __future__ import annotations

import numpy as np


def regular_grid(t_master: np.ndarray, start: float, end: float, rate_hz: float) -> np.ndarray:
    """Slot times covering [start, end) at ``rate_hz``, phased on the master's own clock ticks
    (the median sub-interval offset of its time tags), so each master sample owns one slot."""
    dt = 1.0 / rate_hz
    phase = float(np.median((t_master - start) % dt)) if len(t_master) else 0.0
    n = round((end - start) * rate_hz)
    return start + phase + dt * np.arange(n)


def nearest_slot(grid: np.ndarray, t: np.ndarray, tolerance_s: float) -> tuple[np.ndarray, np.ndarray]:
    """For each time in ``t``, the index of the nearest grid slot; and a mask of those within
    ``tolerance_s`` (first come wins where two samples claim one slot)."""
    if len(grid) == 0 or len(t) == 0:
        return np.zeros(0, np.int64), np.zeros(len(t), bool)
    i = np.clip(np.searchsorted(grid, t), 1, len(grid) - 1)
    left_closer = (t - grid[i - 1]) < (grid[i] - t)
    i = np.where(left_closer, i - 1, i)
    ok = np.abs(grid[i] - t) <= tolerance_s
    first = np.zeros(len(t), bool)
    _, first_idx = np.unique(i[ok], return_index=True)
    first[np.flatnonzero(ok)[first_idx]] = True
    return i, first


def place_on_grid(grid: np.ndarray, t: np.ndarray, columns: dict[str, np.ndarray], tolerance_s: float
                  ) -> dict[str, np.ndarray]:
    """Columns resampled onto ``grid``: each slot takes the nearest sample within the tolerance,
    slots without one are NaN (missing)."""
    idx, ok = nearest_slot(grid, t, tolerance_s)
    out = {}
    for name, values in columns.items():
        col = np.full(len(grid), np.nan)
        col[idx[ok]] = values[ok]
        out[name] = col
    return out
