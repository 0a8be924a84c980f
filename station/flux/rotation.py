"""Tilt correction of the sonic's coordinate system."""

from __future__ import annotations

import numpy as np


def double_rotation_matrix(mean_uvw: np.ndarray) -> np.ndarray:
    """3x3 matrix R such that R @ [u, v, w] has mean v = 0 and mean w = 0.

    Double rotation of Wilczak et al. (2001), eqs. 22-24: a yaw about z into the mean wind, then a
    pitch about the new y axis so the mean vertical wind vanishes.
    """
    u, v, w = mean_uvw
    yaw = np.arctan2(v, u)
    cy, sy = np.cos(yaw), np.sin(yaw)
    r_yaw = np.array([[cy, sy, 0.0], [-sy, cy, 0.0], [0.0, 0.0, 1.0]])
    u1 = cy * u + sy * v
    pitch = np.arctan2(w, u1)
    cp, sp = np.cos(pitch), np.sin(pitch)
    r_pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    return r_pitch @ r_yaw


def rotate_moments(mean: np.ndarray, cov: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariances of all variables after rotating the wind (the first three columns).

    With block averaging, rotating the moments is exact and equivalent to rotating every sample:
    mean_w' = R mean_w, C_ww' = R C_ww R^T, C_wx' = R C_wx, other entries unchanged. Done by blocks
    so a missing scalar (NaN) cannot leak into the wind statistics.
    """
    mean, cov = mean.copy(), cov.copy()
    mean[:3] = rot @ mean[:3]
    cov[:3, :3] = rot @ cov[:3, :3] @ rot.T
    cov[:3, 3:] = rot @ cov[:3, 3:]
    cov[3:, :3] = cov[:3, 3:].T
    return mean, cov


# --- Batch-capable rotations (arrays of shape (..., 3) in, (..., 3, 3) out) -------------------------------------


def _yaw_matrix(angle: np.ndarray) -> np.ndarray:
    """Rotation about z by ``angle`` [rad]: [[c, s, 0], [-s, c, 0], [0, 0, 1]] (Wilczak et al. 2001, eqs. 22-29)."""
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, s, z], -1), np.stack([-s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _pitch_matrix(angle: np.ndarray) -> np.ndarray:
    """Rotation about y by ``angle`` [rad]: [[c, 0, s], [0, 1, 0], [-s, 0, c]] (Wilczak et al. 2001, eqs. 22-29)."""
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _roll_matrix(angle: np.ndarray) -> np.ndarray:
    """Rotation about x by ``angle`` [rad]: [[1, 0, 0], [0, c, s], [0, -s, c]] (Wilczak et al. 2001, eqs. 30-33)."""
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, s], -1), np.stack([z, -s, c], -1)], -2)


def double_rotation_angles(mean_uvw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and pitch [deg] of the double rotation, as EddyPro reports them (full output ``yaw``, ``pitch``).

    yaw = atan2(<v>, <u>) wrapped to [0, 360); pitch = atan2(<w>, sqrt(<u>^2 + <v>^2)), positive when the
    mean wind blows upward in the sonic frame (Wilczak et al. 2001, eqs. 22-29; EddyPro ``DoubleRotation``).
    ``mean_uvw``: (..., 3) mean sonic wind [m s-1]; returns arrays of shape (...).
    """
    m = np.asarray(mean_uvw, dtype=float)
    yaw = np.degrees(np.arctan2(m[..., 1], m[..., 0])) % 360.0
    pitch = np.degrees(np.arctan2(m[..., 2], np.hypot(m[..., 0], m[..., 1])))
    return yaw, pitch


def double_rotation_matrices(mean_uvw: np.ndarray) -> np.ndarray:
    """:func:`double_rotation_matrix` for many periods at once: (..., 3) mean winds -> (..., 3, 3)."""
    m = np.asarray(mean_uvw, dtype=float)
    yaw = np.arctan2(m[..., 1], m[..., 0])
    pitch = np.arctan2(m[..., 2], np.hypot(m[..., 0], m[..., 1]))
    return _pitch_matrix(pitch) @ _yaw_matrix(yaw)


def roll_angle(cov_uvw_double_rotated: np.ndarray) -> np.ndarray:
    """Third-rotation (roll) angle [deg] that zeroes <v'w'> in the doubly rotated frame.

    tan(2 gamma) = 2 <v'w'> / (<v'v'> - <w'w'>)  (Wilczak et al. 2001, eqs. 30-33; Kaimal & Finnigan 1994),
    principal value (|gamma| <= 45 deg), as EddyPro ``ThirdRotation``. ``cov``: (..., 3, 3).
    """
    c = np.asarray(cov_uvw_double_rotated, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.degrees(0.5 * np.arctan(2.0 * c[..., 1, 2] / (c[..., 1, 1] - c[..., 2, 2])))


def triple_rotation_matrix(mean_uvw: np.ndarray, cov_uvw: np.ndarray, max_roll_deg: float | None = None
                           ) -> np.ndarray:
    """3x3 (or (..., 3, 3)) matrix R: double rotation, then a roll about the new x axis so <v'w'> = 0.

    ``mean_uvw`` (..., 3) and ``cov_uvw`` (..., 3, 3) are the mean and covariance of the UNROTATED sonic wind.
    The roll is computed from the doubly rotated covariance R2 C R2^T (Wilczak et al. 2001, eqs. 22-33).
    ``max_roll_deg``: skip the roll when |roll| >= this (EddyPro applies it only below 10 deg); None = always.
    """
    r2 = double_rotation_matrices(mean_uvw)
    c2 = r2 @ np.asarray(cov_uvw, dtype=float) @ np.swapaxes(r2, -1, -2)
    gamma = np.nan_to_num(roll_angle(c2))  # v'v' == w'w' and v'w' == 0: nothing to rotate
    if max_roll_deg is not None:
        gamma = np.where(np.abs(gamma) < max_roll_deg, gamma, 0.0)
    return _roll_matrix(np.radians(gamma)) @ r2


def rotate_wind(uvw: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Rotate samples: (n, 3) wind [m s-1] -> (n, 3) in the new frame (rows with a NaN stay NaN, as EddyPro)."""
    return np.asarray(uvw, dtype=float) @ np.asarray(rot, dtype=float).T
