"""Aligning instrument streams onto the master sonic's regular sample grid (pure NumPy).

Host receive times are late by whatever the station was doing when a frame arrived (a period
closing, the diagnostics tick): 25-50 ms at 20 Hz is enough for a frame to land in the next slot.
"Nearest slot, first come wins" then drops the frame that really belongs there and shifts the late
one. So frames are placed by the instrument's own record counter where it has one (CSAT3 and CSAT3B
0..63, the LI-COR ``Ndx``): consecutive records go to consecutive slots, a counter jump leaves its
gap, and the receive times only anchor the sequence on the grid (their median offset) and resolve
counter wrap-arounds. Without a counter, two frames that claim one slot are repaired instead of
dropped: the earlier one moves back into a free slot before it (it was the late one), else the later
one moves on into a free slot after it.
"""

from __future__ import annotations

import numpy as np


def regular_grid(t_master: np.ndarray, start: float, end: float, rate_hz: float) -> np.ndarray:
    """Slot times covering [start, end) at ``rate_hz``, phased on the master's own clock ticks
    (the median sub-interval offset of its time tags), so each master sample owns one slot."""
    dt = 1.0 / rate_hz
    inside = t_master[(t_master >= start) & (t_master < end)] if len(t_master) else t_master
    phase = float(np.median((inside - start) % dt)) if len(inside) else 0.0
    n = round((end - start) * rate_hz)
    return start + phase + dt * np.arange(n)


def _sequence(t_pos: np.ndarray, counter: np.ndarray, modulus: int | None) -> np.ndarray | None:
    """Record numbers (0, 1, 2 ... with gaps where records were lost) from the instrument's counter,
    wrap-arounds resolved by the receive times (``t_pos`` in slots); None without any counter value."""
    c = np.asarray(counter, dtype=float)
    if len(c) == 0 or not np.isfinite(c).any():
        return None
    step_time = np.rint(np.diff(t_pos))
    step = np.diff(c)
    if modulus:
        step = np.mod(step, modulus)
        step = step + modulus * np.rint((step_time - step) / modulus)
    # a counter that goes backwards, repeats (instrument restart, garbled record) or is missing
    # (a CSAT3 "no data" frame): trust the clock there
    step = np.where(np.isfinite(step) & (step >= 1), step, np.maximum(step_time, 1.0))
    return np.concatenate([[0.0], np.cumsum(step)])


def assign_slots(grid: np.ndarray, t: np.ndarray, tolerance_s: float, counter: np.ndarray | None = None,
                 modulus: int | None = None, max_late_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Slot index of each sample (may lie outside the grid: before it or in the next period), and
    a mask of the samples placed on the grid. See the module doc for the rules.

    ``counter``: the instrument's record counter per sample (``modulus``: where it wraps, None for
    one that does not); a sample whose counter-given slot is more than ``max_late_s`` from its receive
    time falls back to its nearest slot."""
    n = len(grid)
    if len(t) == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    if n == 0:
        return np.zeros(len(t), np.int64), np.zeros(len(t), bool)
    dt = (grid[-1] - grid[0]) / (n - 1) if n > 1 else tolerance_s * 2.0
    pos = (np.asarray(t, dtype=float) - grid[0]) / dt
    nearest = np.rint(pos).astype(np.int64)
    seq = _sequence(pos, counter, modulus) if counter is not None else None
    if seq is not None:
        offset = np.median(nearest - seq)
        idx = (seq + np.rint(offset)).astype(np.int64)
        sane = np.abs(idx - pos) * dt <= max_late_s
        idx = np.where(sane, idx, nearest)
        ok = sane | (np.abs(pos - nearest) * dt <= tolerance_s)
    else:
        idx = nearest
        ok = np.abs(pos - nearest) * dt <= tolerance_s
    ok &= (idx >= 0) & (idx < n)
    return _repair_collisions(idx, ok, n)


def _repair_collisions(idx: np.ndarray, ok: np.ndarray, n: int, max_shift: int = 5
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Samples (in arrival order) that claim the slot of the one before: the run of frames just
    before it moves back by one slot into the first free slot below them (they were the late ones; at
    most ``max_shift`` of them), else this one moves on into a free slot after it, else it is dropped.
    The loop runs over collisions only (a handful per period), never over all samples."""
    placed = np.flatnonzero(ok)
    if len(placed) < 2:
        return idx, ok
    clash = placed[1:][idx[placed[1:]] <= idx[placed[:-1]]]
    if len(clash) == 0:
        return idx, ok
    idx, ok = idx.copy(), ok.copy()
    taken = np.zeros(n, bool)
    taken[idx[ok]] = True
    for i in clash.tolist():
        slot = int(idx[i])
        before = placed[placed < i]
        before = before[ok[before]]
        if len(before) == 0 or idx[before[-1]] < slot:
            continue  # an earlier repair already moved the frames before it back
        run = 0  # the frames just before it in consecutive slots slot, slot - 1, ...
        while run < len(before) and run <= max_shift and idx[before[-1 - run]] == slot - run:
            run += 1
        free = slot - run
        if 0 < run <= max_shift and free >= 0 and not taken[free]:
            idx[before[len(before) - run:]] -= 1  # they were the late ones
            taken[free] = True
        elif slot + 1 < n and not taken[slot + 1]:
            idx[i] = slot + 1
            taken[slot + 1] = True
        else:
            ok[i] = False
    return idx, ok


def place_on_grid(grid: np.ndarray, t: np.ndarray, columns: dict[str, np.ndarray], tolerance_s: float,
                  counter: np.ndarray | None = None, modulus: int | None = None,
                  slots: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Columns resampled onto ``grid``: each sample in its slot (:func:`assign_slots`, or the given
    ``slots``), slots without one are NaN (missing)."""
    idx, ok = slots if slots is not None else assign_slots(grid, t, tolerance_s, counter, modulus)
    out = {}
    for name, values in columns.items():
        col = np.full(len(grid), np.nan)
        col[idx[ok]] = np.asarray(values)[ok]
        out[name] = col
    return out
