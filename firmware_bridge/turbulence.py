"""Synthetic surface-layer turbulence with a known covariance, observed as instruments would.

The model draws the true state (u, v, w [m s-1], air temperature T [K], CO2 and H2O dry mole
fractions chi_c [umol mol-1], chi_v [mmol mol-1]) as a stationary Gaussian AR(1) process whose
lag-0 covariance matrix is imposed exactly. Instruments then observe it physically: the sonic
reports Ts = T (1 + 0.51 q) (Schotanus et al. 1983, eq. 2) and an open-path analyser reports
molar densities rho_c = chi_c * n_d, rho_v = chi_v * n_d with n_d = p / (R T (1 + chi_v))
(ideal gas, Dalton), so density fluctuations carry the WPL effect of Webb et al. (1980).
True fluxes are therefore known: F_c = mean(n_d) cov(w, chi_c), E = mean(n_d) cov(w, chi_v) and
H = rho c_p cov(w, T), which the flux engine must recover.

Methane rides along without touching those draws: its dry mole fraction chi_m [umol mol-1] is
chi_m = mean + sigma (r w* + sqrt(1 - r^2) e), with w* the standardised w of the same samples and e
an independent unit-variance AR(1) series (same ``ar1``) from a second random stream, so that
cov(w, chi_m) = r sigma_w sigma_m exactly and F_CH4 = mean(n_d) cov(w, chi_m). An open-path
LI-7700 sees rho_m = chi_m n_d (WPL as above; spectroscopic effects are not modelled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

R_J_MOL_K = 8.314462618
MD_KG_MOL = 28.9645e-3
MV_KG_MOL = 18.01528e-3
STATE = ("u", "v", "w", "t_k", "chi_c", "chi_v")
#: Key of the CH4 dry mole fraction [umol mol-1] that :meth:`TurbulenceModel.draw` adds to the state
#: (outside :data:`STATE`, so the covariance of the six variables and their draws are unchanged).
METHANE = "chi_m"


@dataclass(frozen=True)
class TurbulenceSpec:
    """Means, standard deviations and correlations of the true state (defaults: a humid tropical
    canopy at midday). ``correlations`` maps pairs of :data:`STATE` names to correlation
    coefficients; unnamed pairs are uncorrelated. ``ar1`` is the lag-1 autocorrelation per sample."""

    u_mean_m_s: float = 2.5
    v_mean_m_s: float = 0.8
    w_mean_m_s: float = 0.0
    t_mean_k: float = 300.15
    chi_c_mean_umol_mol: float = 410.0
    chi_v_mean_mmol_mol: float = 28.0
    pressure_kpa: float = 100.5
    sigma: dict[str, float] = field(default_factory=lambda: {
        "u": 0.8, "v": 0.7, "w": 0.35, "t_k": 0.4, "chi_c": 3.0, "chi_v": 0.8})
    correlations: dict[tuple[str, str], float] = field(default_factory=lambda: {
        ("u", "w"): -0.35, ("w", "t_k"): 0.45, ("w", "chi_c"): -0.45, ("w", "chi_v"): 0.45,
        ("t_k", "chi_c"): -0.3, ("t_k", "chi_v"): 0.3, ("chi_c", "chi_v"): -0.4})
    ar1: float = 0.0
    #: CH4 dry mole fraction mean and standard deviation [umol mol-1] and its correlation with w
    #: (defaults: a wetland source of roughly 40 nmol m-2 s-1).
    ch4_mean_umol_mol: float = 1.95
    ch4_sigma_umol_mol: float = 0.01
    ch4_w_correlation: float = 0.3

    def covariance(self) -> np.ndarray:
        """The imposed lag-0 covariance matrix of :data:`STATE` (validated positive definite)."""
        s = np.array([self.sigma[name] for name in STATE])
        corr = np.eye(len(STATE))
        for (a, b), r in self.correlations.items():
            i, j = STATE.index(a), STATE.index(b)
            corr[i, j] = corr[j, i] = r
        cov = corr * np.outer(s, s)
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError("turbulence correlations do not form a positive-definite matrix") from None
        return cov

    def cov(self, a: str, b: str) -> float:
        return float(self.covariance()[STATE.index(a), STATE.index(b)])

    def mean(self) -> np.ndarray:
        return np.array([self.u_mean_m_s, self.v_mean_m_s, self.w_mean_m_s, self.t_mean_k,
                         self.chi_c_mean_umol_mol, self.chi_v_mean_mmol_mol])


class TurbulenceModel:
    """Draws successive blocks of the true state; the AR(1) state carries across calls."""

    def __init__(self, spec: TurbulenceSpec | None = None, seed: int | None = None) -> None:
        self.spec = spec or TurbulenceSpec()
        if not -1.0 <= self.spec.ch4_w_correlation <= 1.0:
            raise ValueError("ch4_w_correlation must lie in [-1, 1]")
        self._chol = np.linalg.cholesky(self.spec.covariance())
        self._mean = self.spec.mean()
        self._rng = np.random.default_rng(seed)
        self._x = self._rng.standard_normal(len(STATE))
        # A separate stream for methane, so the draws of STATE are those of a model without it.
        self._ch4_rng = np.random.default_rng(None if seed is None else [seed, 7700])
        self._xm = self._ch4_rng.standard_normal()

    def draw(self, n: int) -> dict[str, np.ndarray]:
        """``n`` samples of the true state, keyed by :data:`STATE`, plus :data:`METHANE`."""
        a = self.spec.ar1
        e = self._rng.standard_normal((n, len(STATE)))
        em = self._ch4_rng.standard_normal(n)
        if a == 0.0:
            z = e
        else:
            z = np.empty_like(e)
            scale = np.sqrt(1.0 - a * a)
            x, xm = self._x, self._xm
            for i in range(n):  # emulator side only; n is a handful of samples per tick
                x = a * x + scale * e[i]
                z[i] = x
                xm = a * xm + scale * em[i]
                em[i] = xm
            self._x, self._xm = x, xm
        state = z @ self._chol.T + self._mean
        out = {name: state[:, i] for i, name in enumerate(STATE)}
        spec = self.spec
        w_std = (out["w"] - spec.w_mean_m_s) / spec.sigma["w"]
        r = spec.ch4_w_correlation
        out[METHANE] = spec.ch4_mean_umol_mol + spec.ch4_sigma_umol_mol * (r * w_std + np.sqrt(1.0 - r * r) * em)
        return out


def observe(state: dict[str, np.ndarray], pressure_kpa: float) -> dict[str, np.ndarray]:
    """What a sonic and an open-path analyser report for the true state.

    Returns sonic ``u``, ``v``, ``w`` [m s-1], ``t_sonic`` [degC] and analyser ``co2``, ``h2o``
    [mmol m-3], ``temperature`` [degC], ``pressure`` [kPa]; and ``ch4`` [mmol m-3] = chi_m n_d when
    the state carries :data:`METHANE`.
    """
    t_k = state["t_k"]
    chi_v = state["chi_v"] * 1e-3  # mol mol-1 dry air
    n_total = pressure_kpa * 1e3 / (R_J_MOL_K * t_k)  # mol m-3
    n_dry = n_total / (1.0 + chi_v)
    q = chi_v * MV_KG_MOL / (MD_KG_MOL + chi_v * MV_KG_MOL)  # specific humidity, kg kg-1
    n = len(t_k)
    obs = {
        "u": state["u"], "v": state["v"], "w": state["w"],
        "t_sonic": t_k * (1.0 + 0.51 * q) - 273.15,
        "co2": state["chi_c"] * n_dry * 1e-3,
        "h2o": state["chi_v"] * n_dry,
        "temperature": np.full(n, float(np.mean(t_k)) - 273.15),
        "pressure": np.full(n, pressure_kpa),
    }
    if METHANE in state:
        obs["ch4"] = state[METHANE] * n_dry * 1e-3
    return obs


def true_fluxes(spec: TurbulenceSpec) -> dict[str, float]:
    """Population fluxes implied by ``spec``: FC [umol m-2 s-1], FH2O [mmol m-2 s-1], FCH4
    [nmol m-2 s-1, AmeriFlux unit] = n_d r sigma_w sigma_m, cov(w, T) [K m s-1] and cov(w, Ts) to
    first order, for checking the flux engine."""
    t = spec.t_mean_k
    chi_v = spec.chi_v_mean_mmol_mol * 1e-3
    n_dry = spec.pressure_kpa * 1e3 / (R_J_MOL_K * t) / (1.0 + chi_v)
    q = chi_v * MV_KG_MOL / (MD_KG_MOL + chi_v * MV_KG_MOL)
    dq_dchi = MV_KG_MOL * MD_KG_MOL / (MD_KG_MOL + chi_v * MV_KG_MOL) ** 2 * 1e-3
    w_t = spec.cov("w", "t_k")
    w_chi_v = spec.cov("w", "chi_v")
    w_chi_m = spec.ch4_w_correlation * spec.sigma["w"] * spec.ch4_sigma_umol_mol
    return {"FC": n_dry * spec.cov("w", "chi_c"), "FH2O": n_dry * w_chi_v, "FCH4": n_dry * w_chi_m * 1e3, "W_T": w_t,
            "W_TS": w_t * (1 + 0.51 * q) + 0.51 * t * dq_dchi * w_chi_v}
