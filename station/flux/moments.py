"""Block-average means and covariances of samples with missing values."""

from __future__ import annotations

import numpy as np


def pairwise_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, covariance matrix and pair counts of the columns of ``x`` (n samples x k variables).

    NaN marks a missing sample; each covariance uses the samples where both variables are present
    (its own means over that joint set), block averaging with no detrending (Reynolds
    decomposition over the period; e.g. Aubinet et al. 2012, eq. 1.20). Vectorised as matrix
    products: no loop over samples or pairs.
    """
    valid = ~np.isnan(x)
    m = valid.astype(float)
    n_pair = m.T @ m
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, x, 0.0).sum(axis=0) / m.sum(axis=0)
        xc = np.where(valid, x - mean, 0.0)  # centre first for numerical accuracy
        s_xy = xc.T @ xc
        s_x = xc.T @ m  # s_x[i, j] = sum of x_i over samples where j is present too
        cov = s_xy / n_pair - (s_x / n_pair) * (s_x.T / n_pair)
    cov[n_pair < 2] = np.nan
    return mean, cov, n_pair
