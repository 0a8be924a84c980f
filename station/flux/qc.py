"""Flux quality tests: steady state, integral turbulence characteristics, and the combined flags.

Exactly the EddyPro engine's rules (``stationarity_test.f90``, ``developed_turbulence_test.f90``,
``qc_flags_subs.f90``; see ``ec-methods.md`` f.1-f.3). Deviations are returned as floats in percent;
EddyPro truncates them to integers before classing (``idint``), which :func:`deviation_class` does too.
Class 0 means "could not be computed" (EddyPro's error code): it makes the Mauder & Foken flag 2 and the
Foken flag 9. Vectorised: the stationarity test is a few batched matrix products; the ITC test and the
flag combinations broadcast over arrays of periods.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Sub-periods of the steady-state test (Foken & Wichura 1996: 6 x 5 min in 30 min).
N_SUB = 6
#: Upper bounds [%] of classes 1..8 (Foken et al. 2004, Handbook of Micrometeorology, table 9.3; EddyPro
#: ``PartialFlagLF``): 0-15 -> 1, 16-30 -> 2, 31-50 -> 3, 51-75 -> 4, 76-100 -> 5, 101-250 -> 6,
#: 251-500 -> 7, 501-1000 -> 8, > 1000 -> 9.
CLASS_UPPER_BOUNDS = np.array([15, 30, 50, 75, 100, 250, 500, 1000])
#: Angular velocity used by EddyPro for the Coriolis parameter [rad s-1] (2 pi per solar day).
OMEGA_RAD_S = 2.0 * np.pi / 86400.0
#: z+ of the neutral ITC model (Thomas & Foken 2002) [m].
Z_PLUS_M = 1.0
#: Fluxes, and the steady-state covariance each is judged by ("w/u" is u*, built from <u'w'> and <v'w'>).
FLUX_SST_KEY = {"tau": "w/u", "h": "w/ts", "co2": "w/co2", "h2o": "w/h2o", "ch4": "w/ch4"}


def pairwise_cov(x: np.ndarray, min_pairs: int = 1) -> np.ndarray:
    """Covariance matrices of (..., k, n) rows of samples, pairwise over samples where both are present,
    each pair with its own means, divided by the pair count (EddyPro ``CovarianceMatrixNoError``).
    -> (..., k, k); NaN where fewer than ``min_pairs`` samples pair up (by default: none). Samples run
    along the last (contiguous) axis."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 2:
        return _pairwise_cov_2d(x, min_pairs)
    out = np.empty((*x.shape[:-1], x.shape[-2]))
    for i in np.ndindex(x.shape[:-2]):
        out[i] = _pairwise_cov_2d(x[i], min_pairs)
    return out


def _pairwise_cov_2d(x: np.ndarray, min_pairs: int = 1) -> np.ndarray:
    """:func:`pairwise_cov` of one (k, n) block. Missing samples are usually few and confined to a
    few sample columns (the ends a lag shift leaves empty), so the sums run over all columns with
    missing values zeroed, and the pair counts and per-pair sums are corrected on those columns only."""
    n = x.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        incomplete = np.isnan(x).any(axis=0)
        if not incomplete.any():  # plain covariances
            c = x - x.mean(axis=1, keepdims=True)
            cov = (c @ c.T) / n
            if n < min_pairs:
                cov[:] = np.nan
            return cov
        bad = np.flatnonzero(incomplete)
        mb = ~np.isnan(x[:, bad])  # presence in the incomplete columns (k, nb)
        c = x.copy()
        c[:, bad] = np.where(mb, c[:, bad], 0.0)
        count = (n - bad.size) + mb.sum(axis=1)
        # centre each row on its own mean first (exactness of the pairwise formula is unaffected)
        c -= (c.sum(axis=1) / np.maximum(count, 1))[:, None]
        cb = np.where(mb, c[:, bad], 0.0)
        c[:, bad] = cb
        mbf = mb.astype(float)
        missing = 1.0 - mbf
        # pair counts: all columns minus those where i or j is missing
        npair = (n - bad.size) + mbf @ mbf.T
        s_xy = c @ c.T
        # s_x[i, j] = sum of x_i over samples where j is present too
        s_x = c.sum(axis=1)[:, None] - cb @ missing.T
        cov = s_xy / npair - (s_x / npair) * (s_x.T / npair)
    return np.where(npair >= max(min_pairs, 1), cov, np.nan)


def steady_state_test(samples: Mapping[str, np.ndarray], n_sub: int = N_SUB,
                      cov_period: np.ndarray | None = None) -> dict[str, float]:
    """Steady-state (stationarity) deviations [%] of one period (Foken & Wichura 1996; Foken et al. 2004).

    RN = |cov_period - mean(cov_sub)| / |cov_period| * 100, with the period cut into ``n_sub`` equal
    sub-periods of n // n_sub samples (trailing samples only enter cov_period, as EddyPro). ``samples``:
    ``u``, ``v``, ``w`` [m s-1] (rotated, lag-compensated) and any scalars (``ts``, ``co2``, ``h2o``, ...);
    NaN = missing. Returns the variance tests under the variable name (``"u"``, ``"w"``, ``"ts"``...), the
    flux tests as ``"w/<scalar>"``, and ``"w/u"`` for u* = (<u'w'>^2 + <v'w'>^2)^(1/4) built from the
    period covariances versus from the averaged sub-period covariances (EddyPro). Block averaging within each
    sub-period (the covariance of each sub-period uses its own means). ``cov_period``: the period's
    :func:`pairwise_cov` of the same rows in the same order, if the caller has it already.
    """
    names = list(samples)
    x = np.vstack([np.asarray(samples[k], dtype=float) for k in names])  # (k, n)
    n = x.shape[1]
    sub = n // n_sub
    glb = pairwise_cov(x) if cov_period is None else np.asarray(cov_period, dtype=float)
    blocks = x[:, : sub * n_sub].reshape(len(names), n_sub, sub).swapaxes(0, 1)  # a view: rows stay contiguous
    parts = pairwise_cov(blocks).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.abs((glb - parts) / glb) * 100.0
    dev[glb == 0.0] = np.nan
    idx = {k: i for i, k in enumerate(names)}
    out = {k: float(dev[idx[k], idx[k]]) for k in names if k != "v"}
    iw = idx["w"]
    for k in names:
        if k not in ("u", "v", "w"):
            out[f"w/{k}"] = float(dev[iw, idx[k]])
    iu, iv = idx["u"], idx["v"]
    us_glb = (glb[iu, iw] ** 2 + glb[iv, iw] ** 2) ** 0.25
    us_sub = (parts[iu, iw] ** 2 + parts[iv, iw] ** 2) ** 0.25
    with np.errstate(invalid="ignore", divide="ignore"):
        out["w/u"] = float(abs((us_glb - us_sub) / us_glb) * 100.0) if us_glb != 0 else float("nan")
    return out


def coriolis_parameter(latitude_deg: np.ndarray) -> np.ndarray:
    """|f| = |2 Omega sin(latitude)| [s-1], with Omega = 2 pi / 86400 s as EddyPro."""
    return np.abs(2.0 * OMEGA_RAD_S * np.sin(np.radians(latitude_deg)))


def itc_models(zl: np.ndarray, ustar: np.ndarray, latitude_deg: np.ndarray, z_plus: float = Z_PLUS_M
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Modelled sigma_u/u*, sigma_w/u*, sigma_T/|T*| (Thomas & Foken 2002; Goeckede et al. 2004, table 1;
    as coded in EddyPro). ``zl`` = (z-d)/L [-], ``ustar`` [m s-1]; NaN outside the model's ranges.

    z/L < -0.2: sigma_w/u* = 1.3 (1 - 2 z/L)^(1/3), sigma_u/u* = 4.15 |z/L|^(1/8);
    z/L > -0.2: sigma_w/u* = 0.21 ln(z+ f / u*) + 3.1, sigma_u/u* = 0.44 ln(z+ f / u*) + 6.3;
    sigma_T/T*: |z/L|^(-1/3) (z/L < -1), |z/L|^(-1/4) (-1 <= z/L < -0.0625), 0.5 |z/L|^(-1/2)
    (-0.0625 <= z/L < 0.02), 1.4 |z/L|^(-1/4) (z/L > 0.02). z/L = -0.2 or 0.02 exactly: none, as EddyPro.
    """
    zl = np.asarray(zl, dtype=float)
    ustar = np.asarray(ustar, dtype=float)
    f = coriolis_parameter(latitude_deg)
    az = np.abs(zl)
    with np.errstate(invalid="ignore", divide="ignore"):
        lnf = np.log(f * z_plus / ustar)
        sig_w = np.select([zl < -0.2, zl > -0.2], [1.3 * (1.0 - 2.0 * zl) ** (1.0 / 3.0), 0.21 * lnf + 3.1], np.nan)
        sig_u = np.select([zl < -0.2, zl > -0.2], [4.15 * az ** (1.0 / 8.0), 0.44 * lnf + 6.3], np.nan)
        sig_t = np.select([zl < -1.0, zl < -0.0625, zl < 0.02, zl > 0.02],
                          [az ** (-1.0 / 3.0), az ** (-0.25), 0.5 * az ** (-0.5), 1.4 * az ** (-0.25)], np.nan)
    return sig_u, sig_w, sig_t


def itc_test(sigma_u: np.ndarray, sigma_w: np.ndarray, sigma_t: np.ndarray, ustar: np.ndarray, tstar: np.ndarray,
             zl: np.ndarray, latitude_deg: np.ndarray, z_plus: float = Z_PLUS_M) -> dict[str, np.ndarray]:
    """Integral turbulence characteristics deviations [%]: ITC = |model - measured| / model * 100
    (Foken & Wichura 1996; Foken et al. 2004) for ``"u"``, ``"w"`` (normalised by u*) and ``"ts"``
    (sigma_T / |T*|, T* = -<w'T'>/u*). Standard deviations [m s-1, K], u* [m s-1], T* [K], zl = (z-d)/L,
    latitude [deg] for the Coriolis parameter. Broadcasts over periods."""
    mod_u, mod_w, mod_t = itc_models(zl, ustar, latitude_deg, z_plus)
    with np.errstate(invalid="ignore", divide="ignore"):
        us = np.where(np.asarray(ustar, float) != 0.0, ustar, np.nan)
        ts = np.where(np.asarray(tstar, float) != 0.0, tstar, np.nan)
        meas = {"u": np.asarray(sigma_u, float) / us, "w": np.asarray(sigma_w, float) / us,
                "ts": np.abs(np.asarray(sigma_t, float) / ts)}
        model = {"u": mod_u, "w": mod_w, "ts": mod_t}
        out = {k: np.where(model[k] != 0, np.abs((model[k] - meas[k]) / model[k]) * 100.0, np.nan) for k in meas}
    return {k: v if v.ndim else float(v) for k, v in out.items()}


def deviation_class(dev_percent: np.ndarray) -> np.ndarray:
    """Class 1..9 of a deviation [%] after truncation to an integer (EddyPro ``idint`` + ``PartialFlagLF``);
    0 for NaN or negative (not computable)."""
    d = np.asarray(dev_percent, dtype=float)
    ok = np.isfinite(d) & (d >= 0)
    cls = 1 + np.searchsorted(CLASS_UPPER_BOUNDS, np.floor(np.where(ok, d, 0.0)), side="left")
    return np.where(ok, cls, 0).astype(int) if cls.ndim else int(cls) if ok else 0


def mauder_foken_flag(sst_class: np.ndarray, itc_class: np.ndarray) -> np.ndarray:
    """0/1/2 flag (Mauder & Foken 2004, CarboEurope/TK2; EddyPro ``GTK2Flag``): 0 if both classes are 1-2,
    1 if both are 1-5, else 2 (also when a class is 0, not computable)."""
    s, i = np.asarray(sst_class), np.asarray(itc_class)
    ok = (s >= 1) & (i >= 1)
    flag = np.where(ok & (s <= 2) & (i <= 2), 0, np.where(ok & (s <= 5) & (i <= 5), 1, 2))
    return flag if flag.ndim else int(flag)


def foken_flag(sst_class: np.ndarray, itc_class: np.ndarray) -> np.ndarray:
    """1..9 flag (Foken 2003; Foken et al. 2004, HoM table 9.4; EddyPro ``FokenFlag``): rules applied in
    order, later rules win. 1: SST 1 & ITC 1-2; 2: SST 2 & ITC 1-2; 3: SST 1-2 & ITC 3-4; 4: SST 3-4 &
    ITC 1-2; 5: SST 1-4 & ITC 3-5; 6: SST 5 & ITC 1-5; 7: SST 6 & ITC 1-6, or SST 1-6 & ITC 6; 8: SST 7-8 &
    ITC 1-8, or SST 1-8 & ITC 7-8; 9: SST 9 or ITC 9, and whatever no rule covers or a class 0. As in EddyPro,
    rule 5 overrides rule 3, so flag 3 never occurs (kept: the point is to reproduce EddyPro's flags)."""
    s, i = np.asarray(sst_class), np.asarray(itc_class)

    def rng(a, lo, hi):
        return (a >= lo) & (a <= hi)

    flag = np.full(np.broadcast(s, i).shape, 9)
    rules = [
        (1, (s == 1) & rng(i, 1, 2)), (2, (s == 2) & rng(i, 1, 2)), (3, rng(s, 1, 2) & rng(i, 3, 4)),
        (4, rng(s, 3, 4) & rng(i, 1, 2)), (5, rng(s, 1, 4) & rng(i, 3, 5)), (6, (s == 5) & rng(i, 1, 5)),
        (7, (s == 6) & rng(i, 1, 6)), (7, rng(s, 1, 6) & (i == 6)),
        (8, rng(s, 7, 8) & rng(i, 1, 8)), (8, rng(s, 1, 8) & rng(i, 7, 8)),
        (9, (s == 9) | (i == 9)),
    ]
    for value, cond in rules:
        flag = np.where(cond, value, flag)
    flag = np.where((s == 0) | (i == 0), 9, flag)
    return flag if flag.ndim else int(flag)


def goeckede_flag(sst_class: np.ndarray, itc_class: np.ndarray) -> np.ndarray:
    """1..5 flag (Goeckede et al. 2004, table 2, as EddyPro ``GoeckedeFlag``; uncovered combinations -> 5)."""
    s, i = np.asarray(sst_class), np.asarray(itc_class)

    def rng(a, lo, hi):
        return (a >= lo) & (a <= hi)

    flag = np.full(np.broadcast(s, i).shape, 5)
    for value, cond in [(1, rng(s, 1, 2) & rng(i, 1, 2)), (2, rng(s, 1, 2) & rng(i, 3, 4)),
                        (3, rng(s, 3, 4) & rng(i, 3, 4)), (4, rng(s, 3, 4) & rng(i, 5, 6)),
                        (5, rng(s, 5, 9) & rng(i, 5, 9))]:
        flag = np.where(cond, value, flag)
    return flag if flag.ndim else int(flag)


SYSTEMS = {"mauder_foken_2004": mauder_foken_flag, "foken_2003": foken_flag, "goeckede_2006": goeckede_flag}


def itc_classes(itc_dev: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ITC classes as EddyPro combines them: ``"tau"`` = max(class u, class w) (momentum; as in EddyPro, a
    class that could not be computed (0) loses to the other), ``"scalar"`` = class w (every scalar flux),
    ``"ts"`` = class of sigma_T (reported in qc_details, not used in the flags)."""
    cu, cw, ct = (deviation_class(itc_dev[k]) for k in ("u", "w", "ts"))
    tau = np.maximum(cu, cw)
    return {"tau": tau if np.ndim(tau) else int(tau), "scalar": cw, "ts": ct}


def quality_flags(sst_dev: Mapping[str, float], itc_dev: Mapping[str, float], system: str = "mauder_foken_2004"
                  ) -> dict[str, int]:
    """Flag per flux (``"tau"``, ``"h"``, ``"co2"``, ``"h2o"``, ...: those whose steady-state deviation is in
    ``sst_dev``) from :func:`steady_state_test` and :func:`itc_test` outputs. Momentum: SST of u* with
    max(ITC u, ITC w); scalars: SST of w/x with ITC w (EddyPro ``QualityFlags``). ``system``: one of
    :data:`SYSTEMS`."""
    combine = SYSTEMS[system]
    itc = itc_classes(itc_dev)
    out = {}
    for flux, key in FLUX_SST_KEY.items():
        if key in sst_dev:
            out[flux] = combine(deviation_class(sst_dev[key]), itc["tau"] if flux == "tau" else itc["scalar"])
    return out
