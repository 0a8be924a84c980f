"""Values at an instrument's resolution: the step its output can resolve, as a format spec.

A family module declares ``RESOLUTION``: channel -> ``".Nf"`` (N decimals: a fixed step, e.g. the
CSAT3's 0.25 mm s-1 counts need 5) or ``".Ng"`` (N significant digits: LI-COR writes 8, as in
3.2183277e1). A value parsed from an instrument's text already is at its resolution; one derived
in float64 (counts times a scale, Ts from the speed of sound) carries 17 digits of which the last
nine are noise of the arithmetic. :func:`at_resolution` rounds to the step, whole arrays at once.

The result is the double nearest the decimal (``m / 10**k``, one correctly rounded division), so
``float(repr(x))`` gives it back and ``repr`` is short (at most N digits): an archive written with
``repr`` holds the value exactly and reads fast, and text that already was at the resolution is
left unchanged (rounding it again is a no-op).
"""

from __future__ import annotations

import re

import numpy as np

_SPEC = re.compile(r"^\.(\d{1,2})([fg])$")
_P10 = 10.0 ** np.arange(23)  # exact doubles up to 1e22


def parse_spec(spec: str) -> tuple[int, str]:
    """``".5f"`` -> (5, "f"); ValueError naming the spec otherwise."""
    m = _SPEC.match(spec)
    if m is None or (m.group(2) == "g" and int(m.group(1)) == 0):
        raise ValueError(f"resolution {spec!r}: expected '.Nf' (N decimals) or '.Ng' (N >= 1 significant digits)")
    return int(m.group(1)), m.group(2)


def _scaled(x: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    """``x`` rounded to ``decimals`` places per element (negative: tens, hundreds ...); elements
    whose power of ten is not an exact double (beyond 1e22) are left as they are."""
    out = x.copy()
    up = (decimals >= 0) & (decimals <= 22)
    down = (decimals < 0) & (decimals >= -22)
    if up.any():
        p = _P10[decimals[up]]
        out[up] = np.rint(x[up] * p) / p
    if down.any():
        p = _P10[-decimals[down]]
        out[down] = np.rint(x[down] / p) * p
    return out


def at_resolution(values: np.ndarray, spec: str) -> np.ndarray:
    """``values`` (float64, NaN kept) rounded to the step ``spec`` names: a new array."""
    digits, kind = parse_spec(spec)
    x = np.asarray(values, dtype=np.float64)
    if kind == "f":
        if digits > 22:
            return x.copy()
        p = _P10[digits]
        return np.rint(x * p) / p
    finite = np.isfinite(x) & (x != 0.0)
    exponent = np.zeros(x.shape, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent[finite] = np.floor(np.log10(np.abs(x[finite]))).astype(np.int64)
    decimals = np.where(finite, digits - 1 - exponent, 0)
    return _scaled(x, decimals)
