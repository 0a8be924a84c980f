"""Flux footprint distances: Kljun et al. (2004) as in EddyPro, Kormann & Meixner (2001) (EddyPro's fallback)
and the crosswind-integrated Kljun et al. (2015) FFP.

Pure NumPy, arrays in, results out; every input broadcasts over periods. Results are dicts named like
EddyPro's full-output columns: ``x_peak``, ``x_offset`` and ``x_10%`` ... ``x_90%`` [m, upwind of the
tower]. Where a model is not valid the distances are NaN (EddyPro writes -9999, or for Kljun 2004 switches
to Kormann & Meixner: :func:`eddypro_footprint` does the same).
"""

from __future__ import annotations

import math

import numpy as np

#: EddyPro ``kj_us_min``, ``kj_zL_min``, ``kj_zL_max`` and Kljun et al. (2004) p. 512 validity limits.
KJ04_USTAR_MIN = 0.2
KJ04_ZL_MIN = -200.0
KJ04_ZL_MAX = 1.0
KJ04_ZM_MIN = 1.0

#: L'(R) for R = 0, 1, ..., 95 % of the crosswind-integrated footprint, b = 3.70: Kljun et al. (2004)
#: Fig. A1, as tabulated in the EddyPro engine (``footprint_handle.f90``). Within 0.3 % of the inversion of
#: the model's own cumulative for R = 5 ... 95 % (:func:`kljun_2004_lprime` ``method="analytic"``).
_KJ04_LPRIME = np.array([
    0.000000, 0.302000, 0.368000, 0.414000, 0.450000, 0.482000, 0.510000, 0.536000, 0.560000, 0.579999,
    0.601999, 0.621999, 0.639999, 0.657998, 0.675998, 0.691998, 0.709998, 0.725998, 0.741997, 0.755997,
    0.771997, 0.785997, 0.801997, 0.815996, 0.829996, 0.843996, 0.857996, 0.871996, 0.885995, 0.899995,
    0.911995, 0.925995, 0.939995, 0.953995, 0.965994, 0.979994, 0.993994, 1.005994, 1.019994, 1.033994,
    1.045993, 1.059993, 1.073993, 1.085993, 1.099993, 1.113993, 1.127992, 1.141992, 1.155992, 1.169992,
    1.183992, 1.197991, 1.211991, 1.225991, 1.239991, 1.253991, 1.269991, 1.283990, 1.299990, 1.315990,
    1.329990, 1.345990, 1.361989, 1.379989, 1.395989, 1.411989, 1.429989, 1.447988, 1.465988, 1.483988,
    1.501988, 1.521987, 1.539987, 1.559987, 1.581987, 1.601986, 1.623986, 1.647986, 1.669985, 1.693985,
    1.719985, 1.745984, 1.773984, 1.801984, 1.831983, 1.863983, 1.895983, 1.931982, 1.969982, 2.009982,
    2.053984, 2.101986, 2.153988, 2.211991, 2.279994, 2.355998,
])

#: The distances every function returns, in EddyPro's column names (fractions of the footprint).
FRACTIONS = {"x_10%": 0.1, "x_30%": 0.3, "x_50%": 0.5, "x_70%": 0.7, "x_90%": 0.9}


def eddypro_site_heights(canopy_height_m: float, displacement_m: float | None = None,
                         roughness_m: float | None = None) -> tuple[float, float]:
    """Displacement height d and roughness length z0 [m] as EddyPro 7 takes them from the metadata:
    a missing, non-positive or larger-than-canopy d becomes 0.67 h_c and such a z0 becomes 0.15 h_c
    (confirmed on both reference data sets: fluxpart d = 0, z0 = 0 -> 2.961, 0.663 m; degeb d = 0.4 > h_c
    -> 0.067 m, z0 = 0.1 kept)."""
    h_c = float(canopy_height_m)
    d = displacement_m
    if d is None or not 0.0 < d <= h_c:
        d = 0.67 * h_c
    z0 = roughness_m
    if z0 is None or not 0.0 < z0 <= h_c:
        z0 = 0.15 * h_c
    return float(d), float(z0)


def _lower_regularised_gamma(s: float, x: np.ndarray, terms: int = 400) -> np.ndarray:
    """P(s, x) = gamma(s, x) / Gamma(s) by its power series x^s e^-x sum x^n / (s (s+1) ... (s+n))
    (Abramowitz & Stegun 6.5.29); adequate for the x < 40 used here."""
    x = np.asarray(x, dtype=float)
    term = np.full_like(x, 1.0 / s)
    total = term.copy()
    for n in range(1, terms):
        term = term * x / (s + n)
        total += term
    with np.errstate(divide="ignore"):
        return np.where(x > 0, np.exp(s * np.log(np.where(x > 0, x, 1.0)) - x - math.lgamma(s)) * total, 0.0)


def kljun_2004_lprime(r, method: str = "table") -> np.ndarray:
    """L' for a cumulative footprint fraction ``r`` in [0, 0.95] (NaN outside).

    ``"table"``: Kljun et al. (2004) Fig. A1 at 1 % steps (EddyPro's values), linearly interpolated.
    ``"analytic"``: inverts the model's normalised cumulative: with F* = a L^b exp(b (1 - L)), L = (X* + d)/c
    (Kljun et al. 2004 eq. 9), int F* dX* is proportional to the regularised incomplete gamma P(b+1, b L),
    so L' = P^-1(b+1, r) / b, b = 3.69895 (bisection).
    """
    r = np.asarray(r, dtype=float)
    ok = (r >= 0.0) & (r <= 0.95)
    if method == "table":
        val = np.interp(np.where(ok, r, 0.0) * 100.0, np.arange(_KJ04_LPRIME.size), _KJ04_LPRIME)
    elif method == "analytic":
        b = 3.69895
        lo = np.zeros_like(r)
        hi = np.full_like(r, 6.0)
        target = np.where(ok, r, 0.5)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = _lower_regularised_gamma(b + 1.0, b * mid) < target
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        val = 0.5 * (lo + hi)
    else:
        raise ValueError(f"unknown method {method!r}")
    return np.where(ok, val, np.nan)


def kljun_2004(sigma_w, ustar, zL, z_m, z0_m, lprime: str = "table") -> dict[str, np.ndarray]:
    """Kljun et al. (2004) footprint distances [m].

    ``sigma_w`` [m s-1], ``ustar`` [m s-1], ``zL`` = (z - d)/L, ``z_m`` = z - d [m], ``z0_m`` roughness [m].
    Parameters from z0 only (eqs. 13-16): c = 4.277 (3.418 - ln z0), d = 1.685 (3.418 - ln z0); distances
    x_R = (L'_R c - d) z_m (sigma_w / u*)^-0.8 (eqs. 17-18), peak with L' = 1, offset (1 %) with
    L'(0.01). The boundary-layer height of the paper's validity range is not used, as in EddyPro.
    NaN outside the validity ranges (u* >= 0.2 m/s, -200 <= zL <= 1, z_m >= 1 m, z0 > 0, sigma_w > 0).
    """
    sw, us, zl, zm, z0 = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (sigma_w, ustar, zL, z_m, z0_m)))
    valid = ((us >= KJ04_USTAR_MIN) & (zl >= KJ04_ZL_MIN) & (zl <= KJ04_ZL_MAX) & (zm >= KJ04_ZM_MIN)
             & (z0 > 0.0) & (sw > 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_term = 3.418 - np.log(np.where(z0 > 0, z0, np.nan))
        c = 4.277 * ln_term
        d = 1.685 * ln_term
        scale = zm * (sw / us) ** -0.8

    def dist(lp):
        return np.where(valid, (lp * c - d) * scale, np.nan)

    out = {"x_peak": dist(1.0), "x_offset": dist(kljun_2004_lprime(0.01, lprime))}
    for name, r in FRACTIONS.items():
        out[name] = dist(kljun_2004_lprime(r, lprime))
    return _scalarise(out)


def kormann_meixner_2001(ustar, zL, u_ms, z_m, step_m: float = 1.0, max_m: float = 10000.0) -> dict[str, np.ndarray]:
    """Kormann & Meixner (2001) analytic footprint distances [m], as EddyPro computes them (its fallback
    when Kljun 2004 is out of range).

    Power-law profiles fitted at z_m (eqs. 11, 31, 32 with Paulson 1970 / Businger-Dyer phi: phi_m = 1 + 5 zL,
    phi_c = phi_m stable; (1 - 16 zL)^-1/4, ^-1/2 unstable): m = u* phi_m / (k U), n = 1/phi_m stable or
    (1 - 24 zL)/(1 - 16 zL) unstable, kappa = k u* z / (phi_c z^n), U' = U / z^m, r = 2 + m - n,
    mu = (1 + m)/r, xi = U' z^r / (r^2 kappa). Crosswind-integrated footprint
    f(x) = xi^mu e^(-xi/x) / (Gamma(mu) x^(1+mu)) (eq. 21), peak at xi / (1 + mu); the R-distances are the
    first grid point (``step_m``, up to ``max_m``) where the left Riemann sum of f exceeds R (EddyPro).
    """
    us, zl, u, zm = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (ustar, zL, u_ms, z_m)))
    k = 0.41
    stable = zl > 0
    zl_u = np.where(stable, 0.0, zl)
    phi_m = np.where(stable, 1.0 + 5.0 * zl, (1.0 - 16.0 * zl_u) ** -0.25)
    phi_c = np.where(stable, phi_m, (1.0 - 16.0 * zl_u) ** -0.5)
    n = np.where(stable, 1.0 / phi_m, (1.0 - 24.0 * zl_u) / (1.0 - 16.0 * zl_u))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = k * us * zm / (phi_c * zm**n)
        m = us * phi_m / (k * u)
        u_coef = u / zm**m
        r = 2.0 + m - n
        mu = (1.0 + m) / r
        xi = u_coef * zm**r / (r**2 * kappa)
    valid = np.isfinite(xi) & (xi > 0) & (us > 0) & (u > 0) & (zm > 0) & np.isfinite(mu) & (mu > 0)
    x = np.arange(1, int(max_m / step_m) + 1) * step_m
    xi_, mu_ = (np.where(valid, a, 1.0)[..., None] for a in (xi, mu))
    lgam = np.vectorize(math.lgamma)(mu_)
    f = np.exp(mu_ * np.log(xi_) - xi_ / x - lgam - (1.0 + mu_) * np.log(x))
    cum = np.cumsum(f * step_m, axis=-1)

    def first_above(level):
        above = cum > level
        idx = np.argmax(above, axis=-1)
        hit = above.any(axis=-1)
        return np.where(valid & hit, x[idx], np.nan)

    out = {"x_peak": np.where(valid, xi / (1.0 + mu), np.nan), "x_offset": first_above(0.01)}
    for name, frac in FRACTIONS.items():
        out[name] = first_above(frac)
    return _scalarise(out)


def eddypro_footprint(sigma_w, ustar, zL, u_ms, z_m, z0_m) -> dict[str, np.ndarray]:
    """EddyPro's ``kljun_04`` choice: Kljun et al. (2004) where valid, else Kormann & Meixner (2001); adds
    ``model`` (0 = Kljun, 1 = Kormann-Meixner, EddyPro's code)."""
    kj = kljun_2004(sigma_w, ustar, zL, z_m, z0_m)
    use_kj = np.isfinite(np.asarray(kj["x_peak"]))
    if use_kj.all() and all(np.ndim(a) == 0 for a in (sigma_w, ustar, zL, u_ms, z_m, z0_m)):
        out = {name: np.where(use_kj, kj[name], np.nan) for name in kj}  # (one period: no fallback needed)
    else:
        km = kormann_meixner_2001(ustar, zL, u_ms, z_m)
        out = {name: np.where(use_kj, kj[name], km[name]) for name in kj}
    out["model"] = np.where(use_kj, 0, 1)
    return _scalarise(out)


def kljun_2015(ustar, zL, z_m, h_m, z0_m=None, u_ms=None) -> dict[str, np.ndarray]:
    """Crosswind-integrated Flux Footprint Prediction (FFP) of Kljun et al. (2015) [m].

    ``ustar`` [m s-1], ``zL`` = z_m / L, ``z_m`` = z - d [m], ``h_m`` boundary-layer height [m] (no default:
    the FFP needs it; EddyPro does not provide this model), and either ``z0_m`` or the mean wind ``u_ms`` at
    z_m. Scaled footprint F* = a (X* - d)^b exp(-c / (X* - d)), a = 1.4524, b = -1.9914, c = 1.4622,
    d = 0.1359 (eqs. 14, 17); X* = x / z_m (1 - z_m/h) / (ln(z_m/z0) - psi_M) (eqs. 7-8; with u_ms the
    last factor is U k / u*, k = 0.4); psi_M = -5.3 zL for 0 < L < 5000 m, else
    ln((1+chi^2)/2) + 2 ln((1+chi)/2) - 2 atan(chi) + pi/2, chi = (1 - 19 zL)^1/4 (eq. 5). Peak X* = d - c/b
    (eqs. 20-22); the fraction R is reached at X*_R = d - c / ln R (the integral of eq. 14 for b = -2; within
    1 % of the exact integral). ``x_offset`` is the 1 % distance. NaN outside the validity ranges
    (z_m/L >= -15.5, u* >= 0.1 m/s, h > 10 m, 0 < z_m < h, z0 > 0, ln(z_m/z0) - psi_M > 0).
    """
    b, c, d = -1.9914, 1.4622, 0.1359  # a = 1.4524 only normalises F*
    us, zl, zm, h = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (ustar, zL, z_m, h_m)))
    valid = (zl >= -15.5) & (us >= 0.1) & (h > 10.0) & (zm > 0) & (zm < h)
    if (z0_m is None) == (u_ms is None):
        raise ValueError("give exactly one of z0_m and u_ms")
    with np.errstate(divide="ignore", invalid="ignore"):
        if z0_m is not None:
            z0 = np.asarray(z0_m, dtype=float)
            # stable form only for 0 < L < 5000 m (the FFP code's neutral limit), else the unstable one
            stable = (zl > 0) & (zm < 5000.0 * zl)
            chi = (1.0 - 19.0 * np.where(stable, 0.0, zl)) ** 0.25
            psi_unstable = (np.log((1 + chi**2) / 2.0) + 2.0 * np.log((1 + chi) / 2.0) - 2.0 * np.arctan(chi)
                            + np.pi / 2.0)
            psi = np.where(stable, -5.3 * zl, psi_unstable)
            profile = np.log(zm / z0) - psi
            valid = valid & (z0 > 0) & (profile > 0)
        else:
            profile = np.asarray(u_ms, dtype=float) / us * 0.4
            valid = valid & (profile > 0)
        scale = zm / (1.0 - zm / h) * profile

    def dist(xstar):
        return np.where(valid, xstar * scale, np.nan)

    out = {"x_peak": dist(d - c / b), "x_offset": dist(d - c / math.log(0.01))}
    for name, r in FRACTIONS.items():
        out[name] = dist(d - c / math.log(r))
    return _scalarise(out)


def _scalarise(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: (v.item() if np.ndim(v) == 0 else v) for k, v in out.items()}
