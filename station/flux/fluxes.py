"""From covariances to corrected fluxes, in the order EddyPro applies the corrections.

Level 0: fluxes straight from the covariances. Level 1: spectral correction factors applied to
the covariance fluxes. Level 2-3: the humidity correction of the sonic heat flux (van Dijk et al.
2004 eq. 3.53, revising Schotanus et al. 1983), then the density corrections of Webb et al.
(1980) for open-path densities (eqs. 24-25, in the molar form of Burba et al. 2008 for CO2 and
CH4), with the spectrally corrected H. Closed-path gases measured as dry mixing ratios need no
density terms (Ibrom et al. 2007): F = rho_d w'chi'. For an LI-7500 the heat of its own surfaces
(Burba et al. 2008) may be added to H in those density terms.

Units: covariances of w [m s-1] with Ts [K], u, v [m s-1], gas molar densities [mmol m-3] or
mixing ratios / mole fractions [umol mol-1 for CO2 and CH4, mmol mol-1 for H2O].
Results: TAU [kg m-1 s-2], H, LE [W m-2], FH2O [mmol m-2 s-1], FC and FCH4 [umol m-2 s-1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from station.flux.air import ALPHA, MU, Air
from station.flux.constants import MV_KG_MOL

DENSITY = "molar_density"
MIXING_RATIO = "mixing_ratio"
MOLE_FRACTION = "mole_fraction"


@dataclass(frozen=True)
class Gas:
    """One gas of the period: its w-covariance, mean, how it was measured, and where."""

    w_cov: float
    mean: float
    measure_type: str = DENSITY
    open_path: bool = True
    #: LI-7700 spectroscopic multipliers (A, B, C) of McDermitt et al. (2011), or None
    spectroscopic: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class FluxInputs:
    w_ts: float
    u_w: float
    v_w: float
    h2o: Gas | None = None
    co2: Gas | None = None
    ch4: Gas | None = None
    #: Spectral correction factors by flux name (``TAU``, ``H``, ``LE``, ``FC``, ``FCH4``); 1 if absent.
    scf: dict[str, float] = field(default_factory=dict)
    #: Extra sensible heat of the analyser's own surfaces [W m-2] by gas (``h2o``, ``co2``, ``ch4``),
    #: added to H in that gas's density corrections (Burba et al. 2008; :mod:`station.flux.selfheating`).
    surface_heat_w_m2: dict[str, float] = field(default_factory=dict)


def _molar_flux(gas: Gas, air: Air, per_mol: float) -> float:
    """Level-0 flux [mol m-2 s-1]: densities [mmol m-3] directly, mixing ratios times the
    dry-air molar density, mole fractions times the moist-air molar density 1/Va; ``per_mol``
    is the unit of the ratio (1e-6 for umol mol-1, 1e-3 for mmol mol-1)."""
    if gas.measure_type == DENSITY:
        return gas.w_cov * 1e-3
    n = air.dry_molar_density_sonic if gas.measure_type == MIXING_RATIO else 1.0 / air.va_m3_mol
    return gas.w_cov * per_mol * n


def _density_mol_m3(gas: Gas, air: Air, per_mol: float) -> float:
    """Mean molar density [mol m-3] whatever the measure type."""
    if gas.measure_type == DENSITY:
        return gas.mean * 1e-3
    n = air.dry_molar_density_sonic if gas.measure_type == MIXING_RATIO else 1.0 / air.va_m3_mol
    return gas.mean * per_mol * n


def corrected_fluxes(inp: FluxInputs, air: Air) -> dict[str, float]:
    """Level 0 (``*_0``) and fully corrected fluxes of one period."""
    scf = {k: float(v) for k, v in inp.scf.items()}
    f = {name: scf.get(name, 1.0) for name in ("TAU", "H", "LE", "FC", "FCH4")}
    out: dict[str, float] = {}
    # EddyPro 7: rho u*^2 with the sign of cov(u', w') (negative for a downward momentum flux)
    tau0 = np.copysign(air.rho_a * np.sqrt(inp.u_w**2 + inp.v_w**2), inp.u_w)
    tau = tau0 * f["TAU"]
    out.update(TAU_0=tau0, TAU=tau, USTAR=np.sqrt(abs(tau) / air.rho_a))

    # Level 0 water vapour flux [mol m-2 s-1] and its mass flux [kg m-2 s-1]
    e0 = _molar_flux(inp.h2o, air, 1e-3) if inp.h2o is not None else np.nan
    h0 = air.rho_cp * inp.w_ts
    # van Dijk et al. (2004) eq. 3.53: H = H_s - rho cp 0.51 Ts E / rho_a - rho cp 0.51 q w'Ts'
    e0_mass = 0.0 if np.isnan(e0) else e0 * MV_KG_MOL
    h2 = h0 - air.rho_cp * ALPHA * air.ts_k * e0_mass / air.rho_a - air.rho_cp * ALPHA * air.q * inp.w_ts
    h3 = h2 * f["H"]
    out.update(H_0=h0, H=h3)

    e3 = np.nan
    if inp.h2o is not None:
        e1 = e0 * f["LE"]
        if inp.h2o.open_path and inp.h2o.measure_type == DENSITY:
            # Webb et al. (1980) eq. 25 with the spectrally corrected H
            rho_w_mol = air.rho_w / MV_KG_MOL
            h_path = h3 + inp.surface_heat_w_m2.get("h2o", 0.0)
            e3 = (1.0 + MU * air.sigma) * (e1 + h_path * rho_w_mol / (air.rho_cp * air.ta_k))
        else:
            e3 = e1
        out.update(FH2O_0=e0 * 1e3, FH2O=e3 * 1e3, LE=e3 * MV_KG_MOL * air.lambda_j_kg, LE_0=e0_mass * air.lambda_j_kg)

    for gas, key, name in ((inp.co2, "FC", "co2"), (inp.ch4, "FCH4", "ch4")):
        if gas is None:
            continue
        f0 = _molar_flux(gas, air, 1e-6) * 1e6  # umol m-2 s-1
        f1 = f0 * f[key]
        if gas.open_path and gas.measure_type == DENSITY:
            # Webb et al. (1980) eq. 24 in molar form (Burba et al. 2008): the vapour term with
            # E / (1 + mu sigma) = w'rho_v' + rho_v/T w'T', the heat term with the corrected H.
            rho_c = _density_mol_m3(gas, air, 1e-6) * 1e6  # umol m-3
            h_path = h3 + inp.surface_heat_w_m2.get(name, 0.0)
            if gas.spectroscopic is not None:
                # LI-7700, McDermitt et al. (2011) eq. 10 as EddyPro 7 (fluxes23): the original WPL
                # form with E spectrally corrected but not WPL-corrected, H as corrected here,
                # F = A [F1 + B mu (rho_c / rho_d) E + C (1 + mu sigma) rho_c H / (rho cp Ta)]
                a, b, c = gas.spectroscopic
                e1_mol = 0.0 if inp.h2o is None or np.isnan(e0) else e0 * f["LE"]
                f1 = a * (f1 + b * e1_mol * rho_c / air.rho_d_mol
                          + c * (1.0 + MU * air.sigma) * h_path * rho_c / (air.rho_cp * air.ta_k))
            else:
                e_term = 0.0 if np.isnan(e3) else e3 * rho_c / ((1.0 + MU * air.sigma) * air.rho_d_mol)
                f1 = f1 + e_term + h_path * rho_c / (air.rho_cp * air.ta_k)
        out[f"{key}_0"] = f0
        out[key] = f1
    return {k: float(v) for k, v in out.items()}
