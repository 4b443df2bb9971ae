"""Downstream metrics as TAPE defines them, plus bootstrap confidence intervals.

Pure numpy, so every metric can be checked against hand-computed values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of equal labels (Q3 / Q8 when the inputs are the scored residues)."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape or truth.size == 0:
        raise ValueError(
            f"accuracy: need equal, non-empty shapes, got {predicted.shape} and {truth.shape}"
        )
    return float((predicted == truth).mean())


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (as scipy.stats.rankdata)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values, and each run's average rank.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks; nan if constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(
            f"spearman: need two equal 1-D arrays of >= 2 values, got {x.shape}, {y.shape}"
        )
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def contact_precision(
    scores: np.ndarray,
    contacts: np.ndarray,
    valid: np.ndarray,
    min_separation: int,
    top: int | None = None,
) -> float:
    """Precision of the `top` highest-scoring pairs (default L // 5) with |i - j| >=
    `min_separation`, both residues valid. Scores need only be upper-triangular."""
    n = len(contacts)
    top = max(1, n // 5) if top is None else top
    i, j = np.triu_indices(n, k=min_separation)
    keep = valid[i] & valid[j]
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return float("nan")
    best = np.argsort(-scores[i, j], kind="mergesort")[:top]
    return float(contacts[i[best], j[best]].mean())


def kl_divergence(target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """KL(target || predicted) per row (natural log), with 0 log 0 = 0."""
    target = np.asarray(target, dtype=np.float64)
    predicted = np.clip(np.asarray(predicted, dtype=np.float64), 1e-12, None)
    safe = np.where(target > 0, target, 1.0)
    return (target * (np.log(safe) - np.log(predicted))).sum(-1)


def bootstrap_samples(
    metric: Callable[..., float], arrays: Sequence[Sequence], n: int = 200, seed: int = 0
) -> np.ndarray:
    """`metric(*arrays)` over `n` resamplings of the items (the items of each array are
    resampled together: residues of a protein stay with the protein if the caller passes
    proteins). The same seed draws the same resamples, so two scorers of the same items
    are resampled in pairs."""
    size = len(arrays[0])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        pick = rng.integers(0, size, size)
        values.append(
            metric(
                *[
                    [a[k] for k in pick] if isinstance(a, list) else np.asarray(a)[pick]
                    for a in arrays
                ]
            )
        )
    return np.array(values, dtype=np.float64)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of bootstrap samples (non-finite ones left out)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def bootstrap_interval(
    metric: Callable[..., float],
    arrays: Sequence[Sequence],
    n: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of `metric(*arrays)` over resampled items (see `bootstrap_samples`)."""
    return percentile_interval(bootstrap_samples(metric, arrays, n, seed), level)
