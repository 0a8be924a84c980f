"""The full processing chain of one averaging period, in EddyPro's order and with its defaults.

absolute limits -> despiking (Vickers & Mahrt 1997) -> tilt correction (double rotation,
Wilczak et al. 2001) -> time lag (covariance maximisation with default) -> detrending (block
average) -> covariances -> air properties -> Level-0 fluxes -> spectral correction factors
(Moncrieff et al. 1997, 2004) -> van Dijk / WPL corrections -> stability -> QC (Mauder & Foken
2004) -> footprint (Kljun et al. 2004) -> random uncertainty (Finkelstein & Sims 2001).

Arrays in, one dict of AmeriFlux-named results out; no I/O. The defaults of :class:`Options`
are the EddyPro settings of the reference runs in ``shared/data/ec/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from station.flux import (
    despike,
    detrend,
    footprint,
    li7700,
    qc,
    screening,
    selfheating,
    sonicframe,
    spectral,
    timelag,
    uncertainty,
    vm97,
)
from station.flux.air import Air, air_from_sonic, ambient_pressure_pa
from station.flux.constants import G_M_S2, MV_KG_MOL, R_J_MOL_K, VON_KARMAN
from station.flux.fluxes import DENSITY, FluxInputs, Gas, corrected_fluxes
from station.flux.planarfit import PlanarFit, planar_fit_matrix
from station.flux.rotation import double_rotation_matrix, triple_rotation_matrix

WIND = ("u", "v", "w")
#: EddyPro's default absolute limits (u, v, w [m s-1], ts [K]); gases by measure type below.
ABSOLUTE_LIMITS = {"u": (-30.0, 30.0), "v": (-30.0, 30.0), "w": (-5.0, 5.0), "ts": (233.15, 323.15)}
GAS_LIMITS = {("co2", "ratio"): (200.0, 900.0), ("h2o", "ratio"): (0.0, 40.0), ("ch4", "ratio"): (0.17, 1000.0)}


@dataclass(frozen=True)
class GasSetup:
    """One gas: how it is measured, where, and its lag window (nominal, min, max) [s]."""

    name: str  # "co2", "h2o", "ch4"
    measure_type: str = DENSITY
    analyser: spectral.GasAnalyser = field(default_factory=spectral.GasAnalyser)
    lag_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: an LI-7500-family open path, whose surfaces heat the air it measures (Burba et al. 2008)
    self_heating: bool = False
    #: an LI-7700: its CH4 takes the spectroscopic corrections of McDermitt et al. (2011)
    li7700: bool = False

    @property
    def open_path(self) -> bool:
        return not self.analyser.closed_path


@dataclass(frozen=True)
class Setup:
    """What the engine must know of the site and instruments (heights in m, angles in degrees)."""

    rate_hz: float
    period_s: float
    measurement_height_m: float
    canopy_height_m: float = 0.0
    displacement_m: float | None = None
    roughness_m: float | None = None
    latitude_deg: float = 45.0
    longitude_deg: float = 0.0
    altitude_m: float = 0.0
    north_offset_deg: float = 0.0
    sonic: spectral.Sonic = field(default_factory=spectral.Sonic)
    gases: tuple[GasSetup, ...] = ()
    #: middle of the period [Unix s]: with the position it tells day from night (self-heating)
    period_mid_unix_s: float | None = None
    #: day or night if known (e.g. from global radiation); None: from the solar elevation
    daytime: bool | None = None
    #: the anemometer's frame (:mod:`station.flux.sonicframe`): wind format, rotation into the
    #: common frame [deg] and left-handed axes
    wind_format: str = "uvw"
    sonic_rotation_deg: float = 0.0
    sonic_flip_u: bool = False
    sonic_flip_v: bool = False
    #: diagnostic words that screen records before anything else (:mod:`station.flux.screening`)
    diagnostics: tuple[screening.DiagnosticScreen, ...] = ()

    def is_daytime(self) -> bool:
        """Given, or the sun above the horizon at the middle of the period (day if the time is unknown)."""
        if self.daytime is not None:
            return self.daytime
        if self.period_mid_unix_s is None:
            return True
        return selfheating.solar_elevation_deg(self.latitude_deg, self.longitude_deg, self.period_mid_unix_s) > 0.0

    def heights(self) -> tuple[float, float]:
        """(d, z0) with EddyPro's fallbacks (0.67 and 0.15 times the canopy height)."""
        return footprint.eddypro_site_heights(self.canopy_height_m, self.displacement_m, self.roughness_m)


@dataclass(frozen=True)
class Options:
    despiking: str = "vickers_mahrt"  # "vickers_mahrt" | "mauder" | "none"
    max_consecutive_spikes: int = 3
    sigma: dict[str, float] = field(default_factory=lambda: dict(despike.EDDYPRO_SIGMA))
    rotation: str = "double"  # "double" | "triple" | "planar_fit" (needs ``planar_fit``)
    planar_fit: PlanarFit | None = None
    #: all Vickers & Mahrt (1997) statistical tests (EddyPro default); False: despiking only
    vm97_tests: bool = True
    detrending: str = "block"  # "block" | "linear" | "running_mean" | "exponential"
    detrend_time_constant_s: float = 250.0
    lag: str = "covariance_max_default"  # "covariance_max_default" | "covariance_max" | "fixed" | "none"
    spectral: str = "moncrieff"  # "moncrieff" | "horst" | "none"
    qc_system: str = "mauder_foken_2004"
    footprint: str = "kljun_2004"  # "kljun_2004" | "kljun_2015" | "none"
    boundary_layer_height_m: float = 1000.0  # Kljun et al. (2015) only
    random_uncertainty: bool = True
    #: LI-7500 surface heating (Burba et al. 2008): "none" (EddyPro default) | "burba_linear"
    self_heating: str = "none"


def _limits(name: str, gas: GasSetup | None) -> tuple[float, float] | None:
    if gas is None:
        return ABSOLUTE_LIMITS.get(name)
    if gas.measure_type == DENSITY:
        return None  # limits are defined on mole fractions; densities depend on T and p
    return GAS_LIMITS.get((gas.name, "ratio"))


def _despike(x: np.ndarray, names: list[str], setup: Setup, options: Options) -> tuple[np.ndarray, np.ndarray]:
    if options.despiking == "none":
        return x, np.zeros(len(names), int)
    if options.despiking == "mauder":
        return despike.mauder_mad_despike(x)
    sigma = [options.sigma.get(n, despike.EDDYPRO_SIGMA_OTHER) for n in names]
    window = despike.eddypro_despike_window_s(round(setup.period_s / 60))
    return despike.vickers_mahrt_despike(x, setup.rate_hz, sigma, options.max_consecutive_spikes, window)


def process(columns: dict[str, np.ndarray], setup: Setup, options: Options | None = None) -> dict[str, float]:
    """Results of one period from raw high-frequency columns: ``u``, ``v``, ``w`` [m s-1], ``ts``
    [K], gases named as in ``setup.gases`` (molar density [mmol m-3], or mixing ratio / mole
    fraction [umol mol-1 CO2 and CH4, mmol mol-1 H2O]), optional ``pa`` [Pa] and a measured ambient
    air temperature ``ta`` [K] (used as Ta instead of the sonic's, as EddyPro does). NaN = missing."""
    options = options or Options()
    columns, screened = screening.screen(columns, setup.diagnostics)
    gases = {g.name: g for g in setup.gases if g.name in columns}
    names = [*WIND, "ts", *gases]
    x = np.vstack([np.asarray(columns[n], dtype=float) for n in names])
    if setup.wind_format != "uvw" or setup.sonic_rotation_deg or setup.sonic_flip_u or setup.sonic_flip_v:
        x[0], x[1], x[2] = sonicframe.to_common_frame(x[0], x[1], x[2], wind_format=setup.wind_format,
                                                      rotation_deg=setup.sonic_rotation_deg,
                                                      flip_u=setup.sonic_flip_u, flip_v=setup.sonic_flip_v)
    vm_out: dict[str, float] = {}
    if options.vm97_tests:
        x, spikes, vm_out = _vm97(x, names, gases, setup, options)
    else:
        for i, name in enumerate(names):
            lim = _limits(name, gases.get(name))
            if lim is not None:
                x[i, (x[i] < lim[0]) | (x[i] > lim[1])] = np.nan
        x, spikes = _despike(x, names, setup, options)
    n_samples = x.shape[1]
    finite = np.isfinite(x[:4])  # (wind and ts: the wind rows are used again below)
    wind_ok = finite[:3].all(axis=0)
    used = int(np.sum(wind_ok & finite[3]))
    # EddyPro: the circular mean of the sample directions after despiking, before the tilt correction
    wind_dir = sonicframe.mean_wind_direction_deg(x[0], x[1], setup.north_offset_deg)

    # tilt correction of the wind samples
    mean_raw = _row_means(x[:3])
    rot = _rotation(x[:3], mean_raw, options)
    wind = rot @ (x[:3] if wind_ok.all() else np.where(finite[:3], x[:3], 0.0))
    wind[:, ~wind_ok] = np.nan
    x[:3] = wind

    # time lags
    lags: dict[str, float] = {}
    for i, name in enumerate(names[4:], start=4):
        g = gases[name]
        nominal, lo, hi = timelag.eddypro_lag_window(setup.rate_hz, *g.lag_s, closed_path=not g.open_path,
                                                     water=name == "h2o")
        if options.lag == "none":
            lag = 0
        elif options.lag == "fixed":
            lag = nominal
        else:
            default = nominal if options.lag == "covariance_max_default" else None
            lag = timelag.find_lag(x[2], x[i], lo, hi, default)[0]
        x[i] = timelag.shift(x[i], lag)
        lags[name] = lag / setup.rate_hz

    means = _row_means(x)
    fl = detrend.fluctuations(x, options.detrending, fs_hz=setup.rate_hz,
                              time_constant_s=options.detrend_time_constant_s, block_mean=means)
    cov = _cov(fl)
    idx = {n: i for i, n in enumerate(names)}

    p_pa = float(np.nanmean(columns["pa"])) if "pa" in columns and np.isfinite(columns["pa"]).any() \
        else ambient_pressure_pa(setup.altitude_m)
    air = _air(means, idx, gases, p_pa, _measured_ta_k(columns))

    d, z0 = setup.heights()
    zm = setup.measurement_height_m - d
    u_mean = float(np.hypot(means[0], means[1]))
    gas_inputs = {name: Gas(cov[2, idx[name]], means[idx[name]], g.measure_type, g.open_path,
                            spectroscopic=_li7700_multipliers(air) if g.li7700 and g.open_path else None)
                  for name, g in gases.items()}
    surface: dict[str, float] = {}
    extra_out: dict[str, float] = {}
    if options.self_heating == "burba_linear":
        heated = [name for name, g in gases.items() if g.self_heating and g.open_path]
        if heated:
            sh = selfheating.surface_heat(air.ta_k, u_mean, setup.is_daytime())
            surface = dict.fromkeys(heated, sh.total)
            extra_out = {"H_BOT": sh.bottom, "H_TOP": sh.top, "H_SPAR": sh.spar}
    elif options.self_heating != "none":
        raise ValueError(f"self_heating must be 'none' or 'burba_linear', not {options.self_heating!r}")
    base = FluxInputs(w_ts=cov[2, 3], u_w=cov[0, 2], v_w=cov[1, 2], **gas_inputs, surface_heat_w_m2=surface)
    res = corrected_fluxes(base, air)
    scf: dict[str, float] = {}
    transfers: dict[str, np.ndarray] = {}  # the same in every iteration: they do not depend on stability
    for _ in range(3):  # stability needs the corrected fluxes, the corrections need stability
        zl = zm / _obukhov(res, air)
        if options.spectral == "none" or not np.isfinite(zl):
            break
        scf = _spectral(options, setup, gases, u_mean, zl, zm, air, transfers)
        res = corrected_fluxes(FluxInputs(base.w_ts, base.u_w, base.v_w, **gas_inputs, scf=scf,
                                          surface_heat_w_m2=surface), air)
    mo_length = _obukhov(res, air)
    zl = zm / mo_length

    out = dict(res)
    for key in ("FCH4", "FCH4_0"):  # AmeriFlux reports methane fluxes in nmol m-2 s-1
        if key in out:
            out[key] *= 1e3
    out.update(_stats(x, fl, cov, means, idx, air, setup, mean_raw, gases))
    out["WD"] = wind_dir
    diag_names = {"u": "SONIC", "co2": "CO2", "h2o": "H2O", "ch4": "CH4"}
    out.update({f"{diag_names[k]}_DIAG_NREX": float(v) for k, v in screened.items() if k in diag_names})
    out.update(MO_LENGTH=mo_length, ZL=zl, N_SAMPLES=float(used), MISSING_PCT=100.0 * (n_samples - used) / n_samples)
    fluxes = {"TAU", "H", *(_FLUX_OF[n] for n in gases)}
    out.update({f"{k}_SCF": v for k, v in scf.items() if k in fluxes})
    for name, gas in gas_inputs.items():
        if gas.spectroscopic is not None:
            a, b, c = gas.spectroscopic
            out.update(SPEC_CORR_LI7700_A=a, SPEC_CORR_LI7700_B=b, SPEC_CORR_LI7700_C=c)
            key = name.upper()
            if key in out:  # EddyPro reports the LI-7700's mole fraction times A (LI-7700 manual eq. 6.13)
                out[key] *= a
    out.update({f"{n.upper()}_LAG": v for n, v in lags.items()})
    out.update({f"{n.upper()}_SPIKES": float(s) for n, s in zip(names, np.atleast_1d(spikes), strict=True)})
    out.update(_quality(fl, cov, idx, names, res, air, zl, setup, options))
    out.update(vm_out)
    if surface:
        out.update(extra_out)
    if "FH2O" in out:  # evapotranspiration [mm h-1] = E [kg m-2 s-1] x 3600 s h-1 / (1 kg m-2 mm-1)
        out["ET"] = out["FH2O"] * 1e-3 * MV_KG_MOL * 3600.0
    if options.footprint == "kljun_2015":
        fp = footprint.kljun_2015(res["USTAR"], zl, zm, options.boundary_layer_height_m, z0)
        out.update(FETCH_MAX=fp["x_peak"], FETCH_70=fp["x_70%"], FETCH_90=fp["x_90%"])
    elif options.footprint != "none":
        fp = footprint.eddypro_footprint(np.sqrt(cov[2, 2]), res["USTAR"], zl, u_mean, zm, z0)
        out.update(FETCH_MAX=fp["x_peak"], FETCH_70=fp["x_70%"], FETCH_90=fp["x_90%"])
    if options.random_uncertainty:
        out.update(_random_errors(fl, idx, gases, res, setup, zm, u_mean))
    return {k: float(v) for k, v in out.items()}


def _vm97(x: np.ndarray, names: list[str], gases: dict[str, GasSetup], setup: Setup, options: Options
          ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Absolute limits, despiking and the statistical tests of Vickers & Mahrt (1997) in one go;
    the hard-flag codes come out as EddyPro writes them (``800000099``: one digit per variable)."""
    cols = {n: (x[i] - 273.15 if n == "ts" else x[i]) for i, n in enumerate(names)}  # the tests want degC
    o = vm97.VM97Options(averaging_min=max(1, round(setup.period_s / 60)),
                         gas_measure={n: g.measure_type for n, g in gases.items()}, despike=options.despiking != "none",
                         despike_method="mauder" if options.despiking == "mauder" else "vm97",
                         sigma=options.sigma, max_consecutive=options.max_consecutive_spikes)
    res = vm97.vm97_flags(cols, setup.rate_hz, o)
    cleaned = np.vstack([res.cleaned[n] for n in names])
    np.add(cleaned, np.array([273.15 if n == "ts" else 0.0 for n in names])[:, None], out=cleaned)  # back to K
    spikes = np.array([res.spikes.get(n, 0) for n in names])
    out = {f"VM97_{t.upper()}": float(res.code(t)) for t in (*vm97.VARIABLE_TESTS, *vm97.WIND_TESTS)}
    out["VM97_HARD_FLAGS"] = float(sum(v == 1 for t, f in res.flags.items() if t.endswith("_hf") for v in f.values())
                                   + sum(v == 1 for v in res.wind_flags.values()))
    return cleaned, spikes, out


_FLUX_OF = {"co2": "FC", "h2o": "LE", "ch4": "FCH4"}


def _li7700_multipliers(air: Air) -> tuple[float, float, float]:
    """McDermitt et al. (2011) multipliers A, B, C at the period's mean p, Ta and H2O mole fraction
    (EddyPro 7 ``Multipliers7700``; :mod:`station.flux.li7700`)."""
    chi_w_mmol_mol = air.e_pa / air.p_pa * 1e3
    return li7700.multipliers(air.p_pa, air.ta_k, chi_w_mmol_mol)


def _row_means(x: np.ndarray) -> np.ndarray:
    """Mean of each row over its present samples (NaN = missing), without nanmean's copy when there is no gap."""
    if not np.isnan(x).any():
        return x.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(x, axis=1)


def _rotation(wind: np.ndarray, mean: np.ndarray, options: Options) -> np.ndarray:
    """Tilt correction: double or triple rotation (Wilczak et al. 2001 eqs. 22-26), or the
    sector-wise planar fit (Wilczak et al. 2001 section 3) fitted beforehand."""
    if options.rotation == "planar_fit":
        if options.planar_fit is None:
            raise ValueError("rotation 'planar_fit' needs fitted coefficients (fluxedge flux planarfit)")
        return planar_fit_matrix(options.planar_fit, mean)
    if options.rotation == "triple":
        return triple_rotation_matrix(mean, _cov(wind - mean[:, None]))
    return double_rotation_matrix(mean)


def _cov(fl: np.ndarray) -> np.ndarray:
    """Covariance matrix of the fluctuations, each pair over the samples where both exist, each with
    that subset's means (:func:`qc.pairwise_cov`); NaN where fewer than two samples pair up."""
    return qc.pairwise_cov(fl, min_pairs=2)


def _measured_ta_k(columns: dict[str, np.ndarray]) -> float | None:
    """Mean of a measured ambient air temperature ``ta`` [K] over its samples within the sonic
    temperature's absolute limits; None if there is none (then Ta comes from the sonic)."""
    ta = columns.get("ta")
    if ta is None:
        return None
    lo, hi = ABSOLUTE_LIMITS["ts"]
    ok = (ta >= lo) & (ta <= hi)
    return float(np.mean(ta[ok])) if ok.any() else None


def _air(means: np.ndarray, idx: dict[str, int], gases: dict[str, GasSetup], p_pa: float,
         ta_k: float | None = None) -> Air:
    ts = means[idx["ts"]]
    if "h2o" not in gases:
        return air_from_sonic(ts, p_pa, ta_k=ta_k)
    h2o = gases["h2o"]
    mean = means[idx["h2o"]]
    if h2o.measure_type == DENSITY:
        return air_from_sonic(ts, p_pa, rho_w_kg_m3=mean * 1e-3 * MV_KG_MOL, ta_k=ta_k)
    chi = mean * 1e-3  # mmol mol-1 -> mol mol-1
    if h2o.measure_type == "mixing_ratio":
        chi = chi / (1.0 + chi)
    return air_from_sonic(ts, p_pa, h2o_mole_fraction=chi, ta_k=ta_k)


def _obukhov(res: dict[str, float], air: Air) -> float:
    """Obukhov (1946) length [m]: L = -u*^3 theta / (k g w'T'), w'T' = H / (rho cp), with the potential
    temperature theta = Ta (1e5 Pa / p)^0.286 (EddyPro 7 ``fluxes23``)."""
    wt = res["H"] / air.rho_cp
    theta = air.ta_k * (1e5 / air.p_pa) ** 0.286
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(-(res["USTAR"] ** 3) * theta / (VON_KARMAN * G_M_S2 * wt))


def _spectral(options: Options, setup: Setup, gases: dict[str, GasSetup], u: float, zl: float, zm: float,
              air: Air, transfers: dict[str, np.ndarray]) -> dict[str, float]:
    """The spectral correction factors; ``transfers`` holds the period's transfer functions (filled
    at the first call, reused by the stability iteration's next calls)."""
    if options.spectral == "horst":
        tau = {name: g.analyser.time_constant_s for name, g in gases.items()}
        f = {name: float(spectral.horst_1997_factor(u, zl, zm, t)) for name, t in tau.items()}
        return {"TAU": 1.0, "H": 1.0, "LE": f.get("h2o", 1.0), "FC": f.get("co2", 1.0), "FCH4": f.get("ch4", 1.0)}
    analysers = {n: g.analyser for n, g in gases.items()}
    common = {"sonic": setup.sonic, "analysers": analysers, "t_air_k": air.ta_k, "detrending": options.detrending,
              "detrend_time_s": options.detrend_time_constant_s}
    if not transfers:
        transfers.update(spectral.transfer_functions(u, setup.period_s, setup.rate_hz, **common))
    f = spectral.spectral_correction_factors(u, zl, zm, setup.period_s, setup.rate_hz, transfers=transfers, **common)
    return {"TAU": float(f["Tau"]), "H": float(f["H"]), "LE": float(f.get("h2o", 1.0)),
            "FC": float(f.get("co2", 1.0)), "FCH4": float(f.get("ch4", 1.0))}


def _stats(x, fl, cov, means, idx, air: Air, setup: Setup, mean_raw, gases: dict[str, GasSetup]) -> dict[str, float]:
    out = {"WS": float(np.hypot(mean_raw[0], mean_raw[1])),
           "U_SIGMA": float(np.sqrt(cov[0, 0])), "V_SIGMA": float(np.sqrt(cov[1, 1])),
           "W_SIGMA": float(np.sqrt(cov[2, 2])), "T_SONIC": air.ts_k - 273.15, "TA": air.ta_k - 273.15,
           "PA": air.p_pa / 1e3, "RHO_AIR": air.rho_a, "CP": air.cp, "RH": air.rh_pct,
           "W_TS_COV": float(cov[2, 3]), "U_W_COV": float(cov[0, 2]), "V_W_COV": float(cov[1, 2])}
    chi_w = air.e_pa / air.p_pa  # water vapour mole fraction [mol mol-1]
    for gas, key, per_mol in (("co2", "CO2", 1e-6), ("h2o", "H2O", 1e-3), ("ch4", "CH4", 1e-9)):
        if gas not in idx:
            continue
        mean = float(means[idx[gas]])
        out[f"W_{key}_COV"] = float(cov[2, idx[gas]])
        out[f"{key}_MEAN"] = mean
        kind = gases[gas].measure_type
        if kind == DENSITY:  # AmeriFlux CO2 / H2O / CH4 are mole fractions in moist air: rho R Ta / p
            # (EddyPro divides by R Ts / p instead, 0.5-1 % high; we use the air temperature)
            wet = mean * 1e-3 * R_J_MOL_K * air.ta_k / air.p_pa / per_mol
        elif kind == "mixing_ratio":
            wet = mean * (1.0 - chi_w)
        else:
            wet = mean
        out[key] = wet * (1e3 if key == "CH4" and kind != DENSITY else 1.0)  # CH4 nmol mol-1
    return out


def _quality(fl, cov, idx, names, res, air: Air, zl, setup: Setup, options: Options) -> dict[str, float]:
    samples = {n: fl[idx[n]] for n in names}
    sst = qc.steady_state_test(samples, cov_period=cov)
    ustar = res["USTAR"]
    tstar = -(res["H"] / air.rho_cp) / ustar if ustar else np.nan
    sd = np.sqrt(np.diag(cov))  # population standard deviations of u, v, w, ts ...
    itc = qc.itc_test(sd[0], sd[2], sd[3], ustar, tstar, zl, setup.latitude_deg)
    flags = qc.quality_flags(sst, itc, options.qc_system)
    mapping = {"tau": "TAU", "h": "H", "h2o": "LE", "co2": "FC", "ch4": "FCH4"}
    return {f"{mapping[k]}_SSITC_TEST": float(v) for k, v in flags.items() if k in mapping}


def _random_errors(fl, idx, gases, res, setup: Setup, zm: float, u_mean: float) -> dict[str, float]:
    """Finkelstein & Sims (2001) random error of each covariance, scaled like its flux; all fluxes
    of the period in one batched call (the FFTs are shared)."""
    pairs = [(key, var, res.get(f"{key}_0")) for key, var in
             (("TAU", "u"), ("H", "ts"), ("LE", "h2o"), ("FC", "co2"), ("FCH4", "ch4"))]
    pairs = [(key, var, f0) for key, var, f0 in pairs if var in idx and f0 is not None and np.isfinite(f0)]
    if not pairs:
        return {}
    x = np.vstack([fl[idx[var]] for _, var, _ in pairs])
    w = fl[2]  # one w series shared by every row: its FFTs are computed once
    # the lag shift leaves missing samples only at the ends: trim them so the FFT correlations can
    # skip the missing-sample masks (same sums; interior gaps still take the masked path)
    ok = np.flatnonzero(np.isfinite(x).all(axis=0) & np.isfinite(w))
    if len(ok):
        x, w = x[:, ok[0]:ok[-1] + 1], w[ok[0]:ok[-1] + 1]
    err = np.atleast_1d(uncertainty.random_error(w, x, setup.rate_hz, z_m=zm, u_mean_ms=u_mean)["sigma"])
    with np.errstate(invalid="ignore", divide="ignore"):
        # no gap left (the usual case): the plain mean, the same sums as nanmean's without its copy
        c = (w * x).mean(axis=1) if len(ok) and len(ok) == x.shape[1] else np.nanmean(w * x, axis=1)
        scaled = np.abs(err * np.array([f0 for _, _, f0 in pairs]) / c)
    # like FCH4 itself, its uncertainty in nmol m-2 s-1 (AmeriFlux); the level-0 fluxes here are in umol
    unit = {"FCH4": 1e3}
    return {f"{key}_RANDUNC": float(v) * unit.get(key, 1.0) for (key, _, _), v in zip(pairs, scaled, strict=True)}
