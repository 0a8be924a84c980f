"""Analytic spectral correction factors (Moncrieff et al. 1997 low-pass, Moncrieff et al. 2004 high-pass).

Pure NumPy, arrays in, results out. Everything broadcasts over averaging periods: pass ``u_ms``, ``zL``,
``z_m`` (and ``t_air_k``) as arrays of shape ``S`` and every correction factor comes back with shape ``S``;
the frequency axis is appended last internally.

The method is the fully analytic one of the EddyPro engine (``hf_meth = moncrieff_97``,
``lf_meth = analytic``; EddyPro 7 source files ``bpcf_moncrieff_97.f90``, ``bpcf_anemometric_fluxes.f90``,
``bpcf_analytic_transfer_functions.f90``, ``bpcf_cospectral_models.f90``, ``bpcf_aux_subs.f90``):

    CF = int Co(f) df / int H_w(f) H_x(f) Co(f) df

with the Kaimal et al. (1972) model cospectra as parameterised by Moncrieff et al. (1997), the product of
the per-variable transfer functions ``H_w`` (sonic, vertical wind) and ``H_x`` (the other variable), on
EddyPro's 500-point log frequency grid (1/7200 Hz to 10 Hz) integrated as EddyPro does (left Riemann sum
over 1/5000 Hz < f < 100 Hz). Two EddyPro conventions are reproduced on purpose and can be switched off:

* the high-pass (detrending) transfer function is applied to *both* variables of a covariance, so it
  enters squared (``high_pass_per_variable=True``); the block-average filter of a covariance is strictly
  applied once (Kaimal et al. 1989), set ``False`` for that;
* the sonic line-averaging and time response are applied to w *and* to u or Ts for Tau and H.

With these conventions the factors equal EddyPro 7.0.9's ``*_scf`` columns to <= 2e-4 (relative) on the
reference periods in ``/work/shared/data/ec`` (see ``tests/test_spectral.py``).

Not implemented: the LI-7550 block-average / zero-order-hold filters of old GHG loggers (EddyPro applies
them only for logger software < 7.7.0 at <= 10 Hz), in-situ methods (Horst 1997 fitted, Ibrom et al. 2007,
Fratini et al. 2012); :func:`horst_1997_factor` gives Horst's analytic formula for a known time constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------------------------------
# Instruments
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sonic:
    """Sonic anemometer geometry [m] and first-order time constant [s] (EddyPro ``vpath_length``, ``tau``)."""

    path_length_m: float = 0.0
    time_constant_s: float = 0.0


@dataclass(frozen=True)
class GasAnalyser:
    """Gas analyser geometry, relative to the sonic.

    ``path_length_m`` optical path (EddyPro uses the vertical path length), ``time_constant_s`` first-order
    response, separations [m] from the sonic path centre (horizontal = sqrt(north^2 + east^2)). A closed or
    enclosed path has ``tube_length_m`` > 0, with the inner diameter [m] and the volumetric flow [m3 s-1]
    (l/min / 60000).
    """

    path_length_m: float = 0.0
    time_constant_s: float = 0.0
    horizontal_separation_m: float = 0.0
    vertical_separation_m: float = 0.0
    tube_length_m: float = 0.0
    tube_diameter_m: float = 0.0
    tube_flow_m3_s: float = 0.0

    @property
    def closed_path(self) -> bool:
        return self.tube_length_m > 0.0


#: EddyPro's built-in sonic geometry (``retrieve_sensor_params.f90``): vertical path [m], 1 / output rate [s].
SONICS: dict[str, Sonic] = {
    "csat3": Sonic(0.115, 1.0 / 60.0),
    "csat3b": Sonic(0.115, 1.0 / 60.0),
    "hs_50": Sonic(0.125, 1.0 / 50.0),
    "hs_100": Sonic(0.125, 1.0 / 100.0),
    "r3_50": Sonic(0.125, 1.0 / 50.0),
    "r3_100": Sonic(0.125, 1.0 / 100.0),
    "wm": Sonic(0.125, 1.0 / 32.0),
    "wmpro": Sonic(0.125, 1.0 / 40.0),
    "81000": Sonic(0.150, 1.0 / 40.0),
}

#: EddyPro's built-in analyser path [m] and time constant [s]; add separations and tube with
#: ``dataclasses.replace``.
ANALYSERS: dict[str, GasAnalyser] = {
    "li7500": GasAnalyser(0.127, 0.1),
    "li7500a": GasAnalyser(0.127, 0.1),
    "li7500rs": GasAnalyser(0.127, 0.1),
    "li7200": GasAnalyser(0.127, 0.1),
    "li7200rs": GasAnalyser(0.127, 0.1),
    "li7700": GasAnalyser(0.50, 0.1),
}

#: Molecular diffusivities in air [m2 s-1], Massman (1998) Table 2 (EddyPro's ``Dc``).
DIFFUSIVITY_M2_S = {"co2": 1.381e-5, "h2o": 2.178e-5, "ch4": 1.952e-5}

# ----------------------------------------------------------------------------------------------------
# Frequency grid and integration
# ----------------------------------------------------------------------------------------------------


def eddypro_frequency_grid(n: int = 500, f_min_hz: float = 1.0 / 7200.0, f_max_hz: float = 10.0) -> np.ndarray:
    """EddyPro's natural-frequency grid [Hz]: ``f[0] = f_min``, ``f[i] = f_min exp(i ln(f_max/f_min) / n)``
    for i = 2..n (1-based, so the first step is doubled and ``f[-1] = f_max``) — reproduced exactly."""
    f = np.empty(n)
    f[0] = f_min_hz
    i = np.arange(2, n + 1)
    f[1:] = np.exp(np.log(f_min_hz) + (np.log(f_max_hz) - np.log(f_min_hz)) / n * i)
    return f


def _band_integral(f: np.ndarray, y: np.ndarray, f_lo: float = 1.0 / 5000.0, f_hi: float = 100.0) -> np.ndarray:
    """Left Riemann sum of ``y`` over the last axis where f_lo < f[k] and f[k+1] < f_hi (EddyPro
    ``SpectralCorrectionFactors``)."""
    df = np.diff(f)
    use = (f[:-1] > f_lo) & (f[1:] < f_hi)
    return np.sum(y[..., :-1] * np.where(use, df, 0.0), axis=-1)


# ----------------------------------------------------------------------------------------------------
# Model cospectra
# ----------------------------------------------------------------------------------------------------


def model_cospectra(f_hz: np.ndarray, u_ms, z_m, zL) -> tuple[np.ndarray, np.ndarray]:
    """Model cospectra Co(f) [per Hz, arbitrary scale] of w with a scalar and of w with u.

    Kaimal et al. (1972) as parameterised by Moncrieff et al. (1997) eqs. 12-16, with the normalised
    frequency k = f (z - d) / U:

    * stable (zL > 0): f Co / cov = k / (A + B k^2.1), scalar A = 0.284 (1 + 6.4 zL)^0.75,
      momentum A = 0.124 (1 + 7.9 zL)^0.75, B = 2.34 A^-1.1;
    * unstable and neutral (zL <= 0): scalar 12.92 k / (1 + 26.7 k)^1.375 for k < 0.54, else
      4.378 k / (1 + 3.8 k)^2.4; momentum 20.78 k / (1 + 31 k)^1.575 for k < 0.24, else
      12.66 k / (1 + 9.6 k)^2.4.

    ``z_m`` is the height above the displacement height. Returns ``(scalar, momentum)`` with shape
    ``broadcast(u_ms, z_m, zL) + f.shape``.
    """
    u_ms, z_m, zL = (np.asarray(a, dtype=float)[..., None] for a in (u_ms, z_m, zL))
    k = f_hz * np.abs(z_m / u_ms)
    stable = zL > 0.0
    zl_pos = np.where(stable, zL, 0.0)
    a_c = 0.284 * (1.0 + 6.4 * zl_pos) ** 0.75
    a_u = 0.124 * (1.0 + 7.9 * zl_pos) ** 0.75
    st_c = k / (a_c + 2.34 * a_c**-1.1 * k**2.1)
    st_u = k / (a_u + 2.34 * a_u**-1.1 * k**2.1)
    un_c = np.where(k < 0.54, 12.92 * k / (1.0 + 26.7 * k) ** 1.375, 4.378 * k / (1.0 + 3.8 * k) ** 2.4)
    un_u = np.where(k < 0.24, 20.78 * k / (1.0 + 31.0 * k) ** 1.575, 12.66 * k / (1.0 + 9.6 * k) ** 2.4)
    scalar = np.where(stable, st_c, un_c) / f_hz
    momentum = np.where(stable, st_u, un_u) / f_hz
    return scalar, momentum


# ----------------------------------------------------------------------------------------------------
# Transfer functions (each applies to one variable; a covariance gets the product of two)
# ----------------------------------------------------------------------------------------------------


def tf_first_order(f_hz, time_constant_s) -> np.ndarray:
    """First-order sensor response, H = 1 / sqrt(1 + (2 pi f tau)^2) (Moore 1986 eq. 4; Moncrieff et al.
    1997 eq. 5)."""
    return 1.0 / np.sqrt(1.0 + (2.0 * np.pi * f_hz * np.asarray(time_constant_s)) ** 2)


def tf_sonic_line_averaging(f_hz, u_ms, path_m) -> np.ndarray:
    """Sonic line averaging of w over path p, x = 2 pi f p / U:
    H = (4/x) (1 + e^-x / 2 - 3 (1 - e^-x) / (2x))  (Kaimal et al. 1968; Moore 1986 eq. 5; Moncrieff et al.
    1997 eq. 6); series 1 - x^2/12 near x = 0, 1 for a zero path."""
    x = 2.0 * np.pi * np.asarray(f_hz) * np.abs(np.asarray(path_m) / np.asarray(u_ms))
    xs = np.where(x < 1e-4, 1.0, x)
    full = (4.0 / xs) * (1.0 + np.exp(-xs) / 2.0 - 3.0 * (1.0 - np.exp(-xs)) / (2.0 * xs))
    return np.where(x < 1e-4, 1.0 - x**2 / 12.0, full)


def tf_scalar_line_averaging(f_hz, u_ms, path_m) -> np.ndarray:
    """Scalar (gas analyser) line averaging, x = 2 pi f p / U:
    H = sqrt((3 + e^-x - 4 (1 - e^-x) / x) / x)  (Moore 1986 eq. 6; Moncrieff et al. 1997 eq. 7);
    series sqrt(1 - x/6) near x = 0."""
    x = 2.0 * np.pi * np.asarray(f_hz) * np.abs(np.asarray(path_m) / np.asarray(u_ms))
    xs = np.where(x < 1e-4, 1.0, x)
    full = (3.0 + np.exp(-xs) - 4.0 * (1.0 - np.exp(-xs)) / xs) / xs
    return np.sqrt(np.where(x < 1e-4, 1.0 - x / 6.0, full))


def tf_sensor_separation(f_hz, u_ms, separation_m) -> np.ndarray:
    """Lateral or vertical sensor separation s, H = exp(-9.9 (f s / U)^1.5) (Moore 1986 eq. 11;
    Moncrieff et al. 1997 eq. 9)."""
    return np.exp(-9.9 * (np.asarray(f_hz) * np.abs(np.asarray(separation_m) / np.asarray(u_ms))) ** 1.5)


def air_kinematic_viscosity_m2_s(t_k) -> np.ndarray:
    """Kinematic viscosity of air [m2 s-1] at T [K]: EddyPro's cubic fit
    nu = -1.1555e-14 T^3 + 9.5728e-11 T^2 + 3.7604e-8 T - 3.4484e-6 (1.46e-5 at 288 K)."""
    t = np.asarray(t_k, dtype=float)
    return -1.1555e-14 * t**3 + 9.5728e-11 * t**2 + 3.7604e-8 * t - 3.4484e-6


def tube_reynolds_number(tube_diameter_m, tube_flow_m3_s, t_air_k) -> np.ndarray:
    """Re = V d / nu of the sampling-tube flow, V = Q / (pi d^2 / 4)."""
    velocity = np.asarray(tube_flow_m3_s) / (np.pi * (np.asarray(tube_diameter_m) / 2.0) ** 2)
    return velocity * np.asarray(tube_diameter_m) / air_kinematic_viscosity_m2_s(t_air_k)


def tf_tube(f_hz, tube_length_m, tube_diameter_m, tube_flow_m3_s, t_air_k, diffusivity_m2_s) -> np.ndarray:
    """Attenuation in a sampling tube of radius a, length L, mean velocity V (Lenschow & Raupach 1991;
    Massman 1991), as EddyPro's analytic method uses it:

    * laminar (Re < 2300): H = exp(-(L/V) (pi a f)^2 / (6 D)), Taylor dispersion, D the gas diffusivity;
    * turbulent: H = exp(-80 a f^2 Re^-1/8 L / V^2) (Lenschow & Raupach 1991 eq. 7).

    The cell response itself is in the analyser's ``time_constant_s``; no RH dependence of water vapour
    (Ibrom et al. 2007 needs in-situ spectra). Arguments broadcast with ``f_hz``.
    """
    f = np.asarray(f_hz, dtype=float)
    length = np.asarray(tube_length_m, dtype=float)
    radius = np.asarray(tube_diameter_m, dtype=float) / 2.0
    velocity = np.asarray(tube_flow_m3_s, dtype=float) / (np.pi * radius**2)
    re = tube_reynolds_number(tube_diameter_m, tube_flow_m3_s, t_air_k)
    laminar = np.exp(-(length / velocity) * (np.pi * radius * f) ** 2 / (6.0 * np.asarray(diffusivity_m2_s)))
    turbulent = np.exp(-80.0 * radius * f**2 * re**-0.125 * length / velocity**2)
    return np.where(re < 2300.0, laminar, turbulent)


def tf_block_average(f_hz, period_s) -> np.ndarray:
    """High-pass filter of block averaging over T, H = 1 - sin^2(pi f T) / (pi f T)^2 (Kaimal et al. 1989;
    Moncrieff et al. 2004 eq. 4.12)."""
    x = np.pi * np.asarray(f_hz) * np.asarray(period_s)
    return 1.0 - np.sinc(x / np.pi) ** 2


def tf_linear_detrending(f_hz, period_s, detrend_time_s=None) -> np.ndarray:
    """High-pass filter of linear detrending (Rannik & Vesala 1999 eq. 6; Moncrieff et al. 2004):
    H = 1 - sin^2(x)/x^2 - 3 (sin(y)/y - cos(y))^2 / y^2, x = pi f T, y = pi f T_d. EddyPro takes T_d from
    its detrending time constant; the paper's form has T_d = T (the default)."""
    f = np.asarray(f_hz)
    t_d = period_s if detrend_time_s is None else detrend_time_s
    x = np.pi * f * np.asarray(period_s)
    y = np.pi * f * np.asarray(t_d)
    return 1.0 - np.sinc(x / np.pi) ** 2 - 3.0 * (np.sinc(y / np.pi) - np.cos(y)) ** 2 / y**2


def tf_running_mean(f_hz, rate_hz, time_constant_s) -> np.ndarray:
    """High-pass filter of exponentially weighted running-mean detrending with time constant tau
    (Geissler & Ibrom 2008, as coded in EddyPro): a = exp(-dt/tau), t = a / (f_s (1 - a)),
    H = (2 pi f t)^2 / (1 + (2 pi f t)^2 / a)."""
    a = np.exp(-1.0 / (np.asarray(rate_hz) * np.asarray(time_constant_s)))
    t = a / (np.asarray(rate_hz) * (1.0 - a))
    phase2 = (2.0 * np.pi * np.asarray(f_hz) * t) ** 2
    return phase2 / (1.0 + phase2 / a)


def high_pass_tf(f_hz, period_s, rate_hz=None, detrending: str = "block", detrend_time_s=None) -> np.ndarray:
    """High-pass transfer function for ``detrending`` in {"block", "linear", "running_mean",
    "exponential", "none"}; ``period_s`` is the averaging period, ``detrend_time_s`` the time constant of
    linear / running-mean detrending."""
    if detrending == "none":
        return np.ones_like(np.asarray(f_hz, dtype=float))
    if detrending == "block":
        return tf_block_average(f_hz, period_s)
    if detrending == "linear":
        return tf_linear_detrending(f_hz, period_s, detrend_time_s)
    if detrending in ("running_mean", "exponential"):
        if rate_hz is None or detrend_time_s is None:
            raise ValueError(f"{detrending} detrending needs rate_hz and detrend_time_s")
        return tf_running_mean(f_hz, rate_hz, detrend_time_s)
    raise ValueError(f"unknown detrending {detrending!r}")


# ----------------------------------------------------------------------------------------------------
# Correction factors
# ----------------------------------------------------------------------------------------------------


def correction_factor(f_hz: np.ndarray, cospectrum: np.ndarray, transfer: np.ndarray,
                      f_lo_hz: float = 1.0 / 5000.0, f_hi_hz: float = 100.0) -> np.ndarray:
    """CF = int Co df / int H Co df over the last axis (Moncrieff et al. 1997 eq. 1), EddyPro's
    quadrature and band (f_lo, f_hi); NaN when the attenuated integral is zero."""
    num = _band_integral(f_hz, cospectrum, f_lo_hz, f_hi_hz)
    den = _band_integral(f_hz, transfer * cospectrum, f_lo_hz, f_hi_hz)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0.0, num / den, np.nan)


def _analyser_tf(f, u, t_air_k, gas: GasAnalyser, diffusivity: float) -> np.ndarray:
    """Low-pass TF of one gas (EddyPro ``AnalyticLowPassTransferFunction`` for co2/h2o/ch4); ``u`` has the
    period shape, ``t_air_k`` a trailing frequency axis."""
    u_ = u[..., None]
    h = tf_first_order(f, gas.time_constant_s)
    h = h * tf_scalar_line_averaging(f, u_, gas.path_length_m)
    h = h * tf_sensor_separation(f, u_, gas.vertical_separation_m)
    h = h * tf_sensor_separation(f, u_, gas.horizontal_separation_m)
    if gas.closed_path:
        h = h * tf_tube(f, gas.tube_length_m, gas.tube_diameter_m, gas.tube_flow_m3_s, t_air_k, diffusivity)
    return h


def _transfer_functions(f, u, t_air, period_s, rate_hz, sonic: Sonic, analysers: dict[str, GasAnalyser],
                        detrending, detrend_time_s, low_pass, high_pass, high_pass_per_variable,
                        shape) -> dict[str, np.ndarray]:
    """The combined transfer function of each flux (Moncrieff et al. 1997, 2004): the vertical
    wind's and the other variable's low-pass TFs times the high-pass TF of the detrending, per
    covariance (EddyPro ``BandPassSpectralCorrections``)."""
    hp = high_pass_tf(f, period_s, rate_hz, detrending, detrend_time_s) if high_pass else np.ones_like(f)
    hp_cov = hp * hp if high_pass_per_variable else hp
    if low_pass:
        sonic_var = tf_first_order(f, sonic.time_constant_s) * tf_sonic_line_averaging(
            f, u[..., None], sonic.path_length_m)
    else:
        sonic_var = np.ones(shape)
    w_tf = sonic_var  # the vertical wind's own low-pass TF, shared by every flux
    out = {"Tau": w_tf * sonic_var * hp_cov}
    out["H"] = out["Tau"]
    for gas, spec in analysers.items():
        gas_tf = _analyser_tf(f, u, t_air[..., None], spec, DIFFUSIVITY_M2_S[gas]) if low_pass else 1.0
        out[gas] = w_tf * gas_tf * hp_cov
    return out


def transfer_functions(u_ms, period_s: float, rate_hz: float | None = None, *, sonic: Sonic | None = None,
                       analysers: dict[str, GasAnalyser] | None = None, t_air_k=293.15, detrending: str = "block",
                       detrend_time_s: float | None = None, low_pass: bool = True, high_pass: bool = True,
                       high_pass_per_variable: bool = True, f_hz: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each flux's combined transfer function on the frequency grid (Moncrieff et al. 1997, 2004),
    for :func:`spectral_correction_factors`' ``transfers``: they do not depend on stability, so the
    engine's stability iteration computes them once per period. Arguments as there."""
    sonic = sonic or Sonic()
    u, t_air = np.broadcast_arrays(np.asarray(u_ms, dtype=float), np.asarray(t_air_k, dtype=float))
    u = np.where(np.isfinite(u) & (u != 0.0), u, np.nan)
    f = eddypro_frequency_grid() if f_hz is None else np.asarray(f_hz, dtype=float)
    for gas in analysers or {}:
        if gas not in DIFFUSIVITY_M2_S:
            raise ValueError(f"unknown gas {gas!r}; expected one of {sorted(DIFFUSIVITY_M2_S)}")
    return _transfer_functions(f, u, t_air, period_s, rate_hz, sonic, analysers or {}, detrending, detrend_time_s,
                               low_pass, high_pass, high_pass_per_variable, u.shape + f.shape)


def spectral_correction_factors(u_ms, zL, z_m, period_s: float, rate_hz: float | None = None, *,
                                sonic: Sonic | None = None, analysers: dict[str, GasAnalyser] | None = None,
                                t_air_k=293.15, detrending: str = "block", detrend_time_s: float | None = None,
                                low_pass: bool = True, high_pass: bool = True, high_pass_per_variable: bool = True,
                                f_hz: np.ndarray | None = None,
                                transfers: dict[str, np.ndarray] | None = None) -> dict[str, float | np.ndarray]:
    """Spectral correction factors (multiply the measured covariance) for Tau, H and each gas.

    ``u_ms`` mean horizontal wind speed [m s-1], ``zL`` stability (z - d)/L [-], ``z_m`` measurement height
    above the displacement height (z - d) [m], ``period_s`` averaging period [s], ``rate_hz`` sampling rate
    (needed only for running-mean detrending), ``t_air_k`` air temperature [K] (tube Reynolds number).
    ``analysers`` maps "co2", "h2o", "ch4" to their :class:`GasAnalyser`; results get "LE" equal to "h2o".
    The first four arguments (and ``t_air_k``) broadcast over periods. ``transfers``: the
    :func:`transfer_functions` of the same wind, temperature, instruments and options, if already
    computed. Method: module docstring.
    """
    sonic = sonic or Sonic()
    u = np.asarray(u_ms, dtype=float)
    zl = np.asarray(zL, dtype=float)
    zm = np.asarray(z_m, dtype=float)
    t_air = np.asarray(t_air_k, dtype=float)
    u, zl, zm, t_air = np.broadcast_arrays(u, zl, zm, t_air)
    bad = ~(np.isfinite(u) & np.isfinite(zl) & np.isfinite(zm) & (u != 0.0) & (zm > 0.0))
    u, zm = np.where(bad, np.nan, u), np.where(bad, np.nan, zm)  # NaN propagates without warnings
    f = eddypro_frequency_grid() if f_hz is None else np.asarray(f_hz, dtype=float)
    co_scalar, co_momentum = model_cospectra(f, u, zm, zl)
    for gas in analysers or {}:
        if gas not in DIFFUSIVITY_M2_S:
            raise ValueError(f"unknown gas {gas!r}; expected one of {sorted(DIFFUSIVITY_M2_S)}")
    if transfers is None:
        transfers = _transfer_functions(f, u, t_air, period_s, rate_hz, sonic, analysers or {}, detrending,
                                        detrend_time_s, low_pass, high_pass, high_pass_per_variable,
                                        co_scalar.shape)
    out: dict[str, np.ndarray] = {
        "Tau": correction_factor(f, co_momentum, transfers["Tau"]),
        "H": correction_factor(f, co_scalar, transfers["H"]),
    }
    for gas in analysers or {}:
        out[gas] = correction_factor(f, co_scalar, transfers[gas])
    if "h2o" in out:
        out["LE"] = out["h2o"]
    return {k: (float(np.where(bad, np.nan, v)) if np.ndim(v) == 0 else np.where(bad, np.nan, v))
            for k, v in out.items()}


def horst_1997_factor(u_ms, zL, z_m, time_constant_s, variant: str = "horst") -> np.ndarray:
    """Analytic correction for a first-order scalar sensor of time constant tau (Horst 1997, eqs. 11-12):
    F / F_m = 1 + (2 pi n_m tau U / z)^alpha, with n_m = 0.085, alpha = 7/8 for zL <= 0 and
    n_m = 2 - 1.915 / (1 + 0.5 zL), alpha = 1 for zL > 0. ``variant="eddypro"`` gives EddyPro's
    ``CorrectionFactorsHorst97`` form (1 + 2 pi n_m tau U / z)^alpha (identical for stable cases)."""
    u = np.asarray(u_ms, dtype=float)
    zl = np.asarray(zL, dtype=float)
    stable = zl > 0.0
    n_m = np.where(stable, 2.0 - 1.915 / (1.0 + 0.5 * np.where(stable, zl, 0.0)), 0.085)
    alpha = np.where(stable, 1.0, 7.0 / 8.0)
    x = 2.0 * np.pi * n_m * np.asarray(time_constant_s) * u / np.asarray(z_m, dtype=float)
    if variant == "horst":
        return 1.0 + x**alpha
    if variant == "eddypro":
        return (1.0 + x) ** alpha
    raise ValueError(f"unknown variant {variant!r}")
