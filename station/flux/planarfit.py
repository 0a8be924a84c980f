"""Sector-wise planar-fit tilt correction (Wilczak et al. 2001, section 3), as EddyPro implements it.

A planar fit is a property of the mounting, fitted once over many periods: the period-mean winds of
the sonic lie on a plane w = b0 + b1 u + b2 v (per wind sector). :func:`fit_planar` returns the plane
coefficients; :func:`planar_fit_matrix` turns them into the rotation of one period: tilt into the plane
(pitch alpha, roll beta), then yaw into that period's mean wind. Pure arrays in, arrays out; the fit is
serialisable with :meth:`PlanarFit.to_dict` / :meth:`PlanarFit.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.flux.rotation import _yaw_matrix, double_rotation_matrices

#: Period-mean horizontal wind speeds above this are excluded from the fit (EddyPro, hard-coded) [m s-1].
U_MAX_M_S = 20.0


@dataclass(frozen=True)
class PlanarFit:
    """Fitted plane(s). Angles in degrees, winds in m s-1.

    ``b``: (n_sectors, 3) coefficients b0 [m s-1], b1, b2 [-] of w = b0 + b1 u + b2 v (Wilczak et al. 2001,
    eq. 39); NaN rows for sectors that could not be fitted. ``sector_ends_deg``: cumulative end of each
    sector, measured clockwise from ``sector_start_deg``. ``north_offset_deg`` turns the sonic's wind
    direction into the direction used to pick a sector (EddyPro: instrument north offset + declination).
    """

    b: np.ndarray
    n_periods: np.ndarray
    sector_ends_deg: np.ndarray
    sector_start_deg: float = 0.0
    north_offset_deg: float = 0.0
    no_velocity_bias: bool = False

    @property
    def n_sectors(self) -> int:
        return len(self.sector_ends_deg)

    @property
    def fitted(self) -> np.ndarray:
        """Which sectors have a plane (bool, per sector)."""
        return np.isfinite(self.b).all(axis=1)

    @property
    def tilt_matrices(self) -> np.ndarray:
        """(n_sectors, 3, 3) tilt matrices P (Wilczak et al. 2001, eqs. 42, 44 and 36; EddyPro
        ``PlanarFitRotationMatrix``): third row = unit normal k = (-b1, -b2, 1) / sqrt(b1^2 + b2^2 + 1),
        sin(alpha) = k_x, cos(alpha) = sqrt(k_y^2 + k_z^2), sin(beta) = -k_y / cos(alpha), cos(beta) = k_z / cos(alpha);
        P = [[cos a, sin a sin b, -sin a cos b], [0, cos b, sin b], k]."""
        return _tilt_matrices(self.b[:, 1], self.b[:, 2])

    @property
    def pitch_deg(self) -> np.ndarray:
        """Tilt angle alpha about the y axis per sector, sin(alpha) = -b1 / sqrt(b1^2 + b2^2 + 1) (eq. 44)."""
        return np.degrees(np.arcsin(self.tilt_matrices[:, 2, 0]))

    @property
    def roll_deg(self) -> np.ndarray:
        """Tilt angle beta about the x axis per sector, tan(beta) = b2 (Wilczak et al. 2001, eq. 44;
        van Dijk et al. 2004, eq. 3.41)."""
        return np.degrees(np.arctan(self.b[:, 2]))

    def sector_of(self, mean_u: np.ndarray, mean_v: np.ndarray) -> np.ndarray:
        """Sector index (0-based) of period-mean sonic winds; -1 if a direction falls past the last sector."""
        return _sector_index(np.asarray(mean_u, float), np.asarray(mean_v, float), self.north_offset_deg,
                             self.sector_start_deg, self.sector_ends_deg)

    def to_dict(self) -> dict:
        """JSON-serialisable description (NaN coefficients as None)."""
        return {
            "method": "planar_fit_no_bias" if self.no_velocity_bias else "planar_fit",
            "sector_start_deg": float(self.sector_start_deg),
            "north_offset_deg": float(self.north_offset_deg),
            "sector_ends_deg": [float(x) for x in self.sector_ends_deg],
            "n_periods": [int(x) for x in self.n_periods],
            "b": [[None if not np.isfinite(x) else float(x) for x in row] for row in self.b],
        }

    @classmethod
    def from_dict(cls, d: dict) -> PlanarFit:
        b = np.array([[np.nan if x is None else float(x) for x in row] for row in d["b"]], dtype=float).reshape(-1, 3)
        return cls(b=b, n_periods=np.asarray(d["n_periods"], dtype=int),
                   sector_ends_deg=np.asarray(d["sector_ends_deg"], dtype=float),
                   sector_start_deg=float(d.get("sector_start_deg", 0.0)),
                   north_offset_deg=float(d.get("north_offset_deg", 0.0)),
                   no_velocity_bias=d.get("method") == "planar_fit_no_bias")


def wind_direction_deg(mean_u: np.ndarray, mean_v: np.ndarray, north_offset_deg: float = 0.0) -> np.ndarray:
    """Direction the wind blows from [deg, 0-360): 180 - atan2(v, u) + north offset (EddyPro
    ``SingleWindDirection``, used to sort periods into planar-fit sectors)."""
    return (180.0 - np.degrees(np.arctan2(mean_v, mean_u)) + north_offset_deg) % 360.0


def _sector_index(u, v, north_offset, start, ends) -> np.ndarray:
    d = (wind_direction_deg(u, v, north_offset) - start) % 360.0  # EddyPro ``WindSector``
    idx = np.searchsorted(ends, d, side="right")
    return np.where(idx < len(ends), idx, -1)


def _tilt_matrices(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    norm = np.sqrt(b1**2 + b2**2 + 1.0)
    k = np.stack([-b1 / norm, -b2 / norm, 1.0 / norm], -1)
    cos_a = np.hypot(k[..., 1], k[..., 2])
    sin_a = k[..., 0]
    sin_b, cos_b = -k[..., 1] / cos_a, k[..., 2] / cos_a
    z = np.zeros_like(sin_a)
    row1 = np.stack([cos_a, sin_a * sin_b, -sin_a * cos_b], -1)
    row2 = np.stack([z, cos_b, sin_b], -1)
    return np.stack([row1, row2, k], -2)


def fit_planar(mean_u: np.ndarray, mean_v: np.ndarray, mean_w: np.ndarray, n_sectors: int = 1, *,
               sector_widths_deg: np.ndarray | None = None, sector_start_deg: float = 0.0,
               north_offset_deg: float = 0.0, min_periods: int = 10, u_min: float = 0.0,
               w_max: float = 0.099, no_velocity_bias: bool = False, fix: str = "none") -> PlanarFit:
    """Fit w = b0 + b1 u + b2 v to period-mean sonic winds [m s-1], per wind sector.

    Least squares over the periods of a sector (Wilczak et al. 2001, eqs. 39-41; normal equations as van Dijk
    et al. 2004, eq. 3.40): [[1, <u>, <v>], [<u>, <u^2>, <uv>], [<v>, <uv>, <v^2>]] b = [<w>, <uw>, <vw>], with
    <.> the average over periods. ``no_velocity_bias``: b0 = 0 and the 2x2 lower block is solved (van Dijk et
    al. 2004, "planar fit with no velocity bias"). Excluded periods (EddyPro): horizontal speed < ``u_min`` or
    > 20 m s-1, |<w>| > ``w_max`` (EddyPro tests only <w> > w_max), any NaN. Sectors: ``n_sectors`` equal
    sectors, or explicit ``sector_widths_deg``, clockwise from ``sector_start_deg`` in the wind-direction
    frame of :func:`wind_direction_deg`. Sectors with fewer than ``min_periods`` periods, or a singular
    system, get NaN coefficients; ``fix`` = "clockwise" / "counterclockwise" copies the nearest fitted sector in
    that direction into them (EddyPro ``FixPlanarfitSectors``). Vectorised over periods and sectors.
    """
    u, v, w = (np.asarray(a, dtype=float).ravel() for a in (mean_u, mean_v, mean_w))
    widths = (np.full(n_sectors, 360.0 / n_sectors) if sector_widths_deg is None
              else np.asarray(sector_widths_deg, dtype=float))
    ends = np.cumsum(widths)
    speed = np.hypot(u, v)
    ok = np.isfinite(u) & np.isfinite(v) & np.isfinite(w) & (speed >= u_min) & (speed <= U_MAX_M_S)
    ok &= np.abs(w) <= w_max
    sector = np.where(ok, _sector_index(u, v, north_offset_deg, sector_start_deg, ends), -1)
    keep = sector >= 0
    s, u, v, w = sector[keep], u[keep], v[keep], w[keep]
    ns = len(ends)
    count = np.bincount(s, minlength=ns).astype(float)

    def mean_of(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(s, weights=x, minlength=ns) / count

    mu, mv, mw = mean_of(u), mean_of(v), mean_of(w)
    muu, mvv, muv, muw, mvw = mean_of(u * u), mean_of(v * v), mean_of(u * v), mean_of(u * w), mean_of(v * w)
    b = np.full((ns, 3), np.nan)
    good = count >= max(min_periods, 1)
    if no_velocity_bias:
        mat = np.stack([np.stack([muu, muv], -1), np.stack([muv, mvv], -1)], -2)
        rhs = np.stack([muw, mvw], -1)
        first = 1
    else:
        mat = np.stack([np.stack([np.ones(ns), mu, mv], -1), np.stack([mu, muu, muv], -1),
                        np.stack([mv, muv, mvv], -1)], -2)
        rhs = np.stack([mw, muw, mvw], -1)
        first = 0
    for i in np.flatnonzero(good):  # a handful of sectors; 2x2/3x3 solves
        with np.errstate(all="ignore"):
            singular = not np.linalg.cond(mat[i]) < 1e12  # also NaN
        if singular:
            continue
        b[i, first:] = np.linalg.solve(mat[i], rhs[i])
        b[i, :first] = 0.0
    fit = PlanarFit(b=b, n_periods=count.astype(int), sector_ends_deg=ends, sector_start_deg=sector_start_deg,
                    north_offset_deg=north_offset_deg, no_velocity_bias=no_velocity_bias)
    return _fix_sectors(fit, fix) if fix != "none" else fit


def _fix_sectors(fit: PlanarFit, fix: str) -> PlanarFit:
    if fix not in ("clockwise", "counterclockwise"):
        raise ValueError(f"fix must be 'none', 'clockwise' or 'counterclockwise', not {fix!r}")
    ok = fit.fitted
    if not ok.any():
        return fit
    b = fit.b.copy()
    n = fit.n_sectors
    step = 1 if fix == "clockwise" else -1
    for i in np.flatnonzero(~ok):
        j = i
        while not ok[j]:
            j = (j + step) % n
        b[i] = fit.b[j]
    return PlanarFit(b=b, n_periods=fit.n_periods, sector_ends_deg=fit.sector_ends_deg,
                     sector_start_deg=fit.sector_start_deg, north_offset_deg=fit.north_offset_deg,
                     no_velocity_bias=fit.no_velocity_bias)


def planar_fit_matrix(fit: PlanarFit, mean_uvw: np.ndarray) -> np.ndarray:
    """Rotation of one period (or (..., 3) periods -> (..., 3, 3)) by the planar fit of its wind sector.

    R = Y(gamma) P: the sector's tilt matrix P (see :attr:`PlanarFit.tilt_matrices`), then a yaw about the
    plane normal into the period's mean wind, gamma = atan2(<v_p>, <u_p>) (Wilczak et al. 2001, eqs. 45-46;
    EddyPro ``PlanarFitByWindSector``). After R, <v> = 0 and <w> = k . <u_m> = b0 / sqrt(1 + b1^2 + b2^2)
    (the offset b0 stays in w; EddyPro optionally subtracts b0 afterwards). A period whose sector has no
    plane falls back to the double rotation, as EddyPro does.
    """
    m = np.asarray(mean_uvw, dtype=float)
    sec = fit.sector_of(m[..., 0], m[..., 1])
    usable = (sec >= 0) & fit.fitted[np.clip(sec, 0, None)]
    p = fit.tilt_matrices[np.clip(sec, 0, None)]
    mp = (p @ m[..., None])[..., 0]
    r = _yaw_matrix(np.arctan2(mp[..., 1], mp[..., 0])) @ p
    dr = double_rotation_matrices(m)
    return np.where(np.asarray(usable)[..., None, None], r, dr)
