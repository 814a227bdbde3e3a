"""Tests of how often filters fire, vectorised over filters with numpy.

The share of qualified images is compared between groups with a test suited to proportions: the pooled
two-proportion z-test for two groups, the chi-square test of independence (groups x qualified) for more.
The p-values of all filters are then corrected together (Benjamini–Hochberg by default, or Holm).
"""
from __future__ import annotations

import numpy as np
from scipy import stats as st

from ..errors import LaviseError
from ..options import CORRECTIONS


def two_proportion_z(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z-test for every filter.

    Args:
        k: (2, d) qualified counts per group.
        n: (2,) group sizes.

    Returns:
        z (d,) (positive when group 0 has the larger share) and two-sided p-values (d,).
        Filters qualified in no image or in every image get z = 0, p = 1.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    p1, p2 = k[0] / n[0], k[1] / n[1]
    pooled = (k[0] + k[1]) / (n[0] + n[1])
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n[0] + 1.0 / n[1]))
    ok = se > 0
    z = np.zeros_like(pooled)
    z[ok] = (p1[ok] - p2[ok]) / se[ok]
    p = np.ones_like(pooled)
    p[ok] = 2.0 * st.norm.sf(np.abs(z[ok]))
    return z, p


def chi_square(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Chi-square test of independence of group and qualification, for every filter.

    Args:
        k: (G, d) qualified counts per group.
        n: (G,) group sizes.

    Returns:
        statistic (d,), p-values (d,), degrees of freedom (G - 1).
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)[:, None]
    obs = np.stack([k, n - k])  # (2, G, d): qualified / not qualified
    col = obs.sum(1, keepdims=True)  # (2, 1, d)
    total = n.sum()
    exp = col * n[None] / total  # (2, G, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(exp > 0, (obs - exp) ** 2 / np.where(exp > 0, exp, 1.0), 0.0)
    stat = terms.sum((0, 1))
    dof = k.shape[0] - 1
    p = np.where(stat > 0, st.chi2.sf(stat, dof), 1.0)
    return stat, p, dof


def adjust_pvalues(p: np.ndarray, method: str = "bh") -> np.ndarray:
    """Correct p-values for testing every filter: ``bh`` (Benjamini–Hochberg FDR), ``holm`` (FWER) or ``none``."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if method not in CORRECTIONS:
        raise LaviseError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    if method == "none" or m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ps = p[order]
    if method == "bh":
        adj = ps * m / np.arange(1, m + 1)
        adj = np.minimum.accumulate(adj[::-1])[::-1]
    else:  # holm
        adj = np.maximum.accumulate(ps * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out
