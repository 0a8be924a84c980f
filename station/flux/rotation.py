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
