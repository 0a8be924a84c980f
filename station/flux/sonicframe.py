"""The anemometer's own frame: its raw wind into EddyPro's common frame, and the wind direction.

EddyPro 7 ``AdjustSonicCoordinates`` brings every anemometer to the Gill "spar" convention before
anything else (u > 0 blowing from south to north with the sonic pointing north, v > 0 from east to
west, w up):

- ``polar_w`` wind: u = speed cos(direction), v = -speed sin(direction);
- Gill ``axis`` velocities a1, a2, a3: u = (2 a1 - a2 - a3) / 2.1213, v = (a3 - a2) / 1.2247,
  w = (a1 + a2 + a3) / 2.1213, then as ``wref = axis``;
- Gill in the axis frame: rotated by +30 deg, u' = u cos30 - v sin30, v' = u sin30 + v cos30; the R2
  always, and left-handed (u flipped first);
- Metek USA-1: left-handed, v = -v.

Wind direction (EddyPro ``SingleWindDirection`` and ``basic_stats``): each sample's
180 - atan2(v, u) + north offset [deg], averaged as unit vectors (the circular mean of the sample
directions, not the direction of the mean wind), over the samples where u and v exist.
"""

from __future__ import annotations

import numpy as np


def to_common_frame(u: np.ndarray, v: np.ndarray, w: np.ndarray, *, wind_format: str = "uvw",
                    rotation_deg: float = 0.0, flip_u: bool = False, flip_v: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u, v, w [m s-1] in EddyPro's common frame (see the module doc); arrays of any shape."""
    if wind_format == "polar_w":
        speed, direction = u, np.radians(v)
        u, v = speed * np.cos(direction), -speed * np.sin(direction)
    elif wind_format == "axis":
        a1, a2, a3 = u, v, w
        u, v, w = (2.0 * a1 - a2 - a3) / 2.1213, (a3 - a2) / 1.2247, (a1 + a2 + a3) / 2.1213
    elif wind_format != "uvw":
        raise ValueError(f"unknown wind format {wind_format!r}; one of uvw, polar_w, axis")
    if flip_u:
        u = -u
    if flip_v:
        v = -v
    if rotation_deg:
        c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
        u, v = u * c - v * s, u * s + v * c
    return u, v, w


def mean_wind_direction_deg(u: np.ndarray, v: np.ndarray, north_offset_deg: float = 0.0) -> float:
    """Circular mean [deg, 0-360] of the sample directions 180 - atan2(v, u) + offset (EddyPro)."""
    ok = np.isfinite(u) & np.isfinite(v)
    if not ok.all():
        if not ok.any():
            return float("nan")
        u, v = u[ok], v[ok]
    # circmean(C - a) = C - circmean(a), and circmean(a) = atan2(<sin a>, <cos a>) with sin a = v / |U|,
    # cos a = u / |U|: no trigonometry per sample (a calm sample, atan2(0, 0) = 0, counts as cos a = 1)
    speed = np.hypot(u, v)
    calm = speed == 0.0
    if calm.any():
        speed[calm] = 1.0
        u = np.where(calm, 1.0, u)
    mean_a = np.arctan2(np.mean(v / speed), np.mean(u / speed))
    return float((180.0 + north_offset_deg - np.degrees(mean_a)) % 360.0)
