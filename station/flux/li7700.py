"""LI-COR LI-7700 spectroscopic correction multipliers A, B, C (McDermitt et al. 2011).

McDermitt, D. et al. (2011): A new low-power, open-path instrument for measuring methane flux by
eddy covariance. Appl. Phys. B 102:391-405. The CH4 flux is
``F = A [F_raw + B mu (rho_c / rho_d) E + C (1 + mu sigma) rho_c H / (rho cp T)]``.

This follows EddyPro 7's ``Multipliers7700`` and its bilinear ``LinearLookUp`` / ``LookUp2D``
exactly: with the equivalent pressure ``Peq = P (1 + 0.455 chi_w / 1000) / 1000`` [kPa] and
``t = T - 273.15`` [degC],

* ``A = key(Peq, t)``
* ``B = 1 + (1 - 1.46 chi_w / 1000) kp(Peq, t)``
* ``C = 1 + (1 - chi_w / 1000) kt(Peq, t)``

where key, kt, kp are EddyPro's KeyTable, KeyTTable and KeyPTable (module ``m_methane_tables``),
shipped as ``data/li7700_multipliers.npz``: equivalent pressure 50-115 kPa (kp: 50-114) in 1 kPa
steps, temperature -50..55 degC (kt: -50..54, kp: -50..50) in 1 degC steps. The lookup uses
half-open cells ``(lo, hi]`` in both axes, as EddyPro does: a value exactly on a node belongs to
the cell below it, and the first node of each axis (50 kPa, -50 degC) is outside every table.

Differences from EddyPro, both deliberate: missing inputs are NaN (EddyPro: -9999) and give
``A = B = C = 1`` as EddyPro does; inputs outside a table give NaN for the multiplier(s) that
use it, where EddyPro computes garbage from its -9999 error code.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import numpy as np


@cache
def _tables() -> dict[str, np.ndarray]:
    with files("station.flux").joinpath("data/li7700_multipliers.npz").open("rb") as f, np.load(f) as z:
        return {k: z[k] for k in z.files}


def _lookup(name: str, peq_kpa: np.ndarray, t_c: np.ndarray) -> np.ndarray:
    """EddyPro's LinearLookUp(xfirst=.true.): bilinear on the (lo, hi] cell; NaN outside."""
    tab = _tables()
    x, y, z = tab[f"peq_kpa_{name}"], tab[f"t_c_{name}"], tab[name]
    # searchsorted(side="left") gives the first node >= value, i.e. the upper node of (lo, hi]
    i = np.searchsorted(x, peq_kpa, side="left") - 1
    j = np.searchsorted(y, t_c, side="left") - 1
    ok = (i >= 0) & (i < x.size - 1) & (j >= 0) & (j < y.size - 1)
    i, j = np.where(ok, i, 0), np.where(ok, j, 0)
    x0, x1, y0, y1 = x[i], x[i + 1], y[j], y[j + 1]
    tlz, trz, blz, brz = z[i, j], z[i, j + 1], z[i + 1, j], z[i + 1, j + 1]
    tcz = (trz - tlz) / (y1 - y0) * (t_c - y0) + tlz  # along T at the lower pressure
    bcz = (brz - blz) / (y1 - y0) * (t_c - y0) + blz  # along T at the upper pressure
    out = (bcz - tcz) / (x1 - x0) * (peq_kpa - x0) + tcz  # along pressure
    return np.where(ok, out, np.nan)


def multipliers(p_pa, t_k, chi_w_mmol_mol) -> tuple[float, float, float] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectroscopic multipliers ``(A, B, C)`` of the LI-7700 for air pressure ``p_pa`` [Pa], air
    temperature ``t_k`` [K] and water-vapour mole fraction ``chi_w_mmol_mol`` [mmol mol-1].

    Scalars give floats, arrays give arrays (broadcast). A NaN in any input gives 1, 1, 1;
    inputs outside the tables give NaN.
    """
    p, t, chi = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (p_pa, t_k, chi_w_mmol_mol)))
    missing = np.isnan(p) | np.isnan(t) | np.isnan(chi)
    peq_kpa = p * (1.0 + 0.455 * chi * 1e-3) * 1e-3
    t_c = t - 273.15
    a = _lookup("key", peq_kpa, t_c)
    b = 1.0 + (1.0 - 1.46 * chi * 1e-3) * _lookup("kp", peq_kpa, t_c)
    c = 1.0 + (1.0 - chi * 1e-3) * _lookup("kt", peq_kpa, t_c)
    a, b, c = (np.where(missing, 1.0, v) for v in (a, b, c))
    if a.ndim == 0:
        return float(a), float(b), float(c)
    return a, b, c
