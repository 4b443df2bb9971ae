"""Downstream metrics against values computed by hand on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protprof.evaluation import metrics
from protprof.evaluation.tasks import background_frequencies, blosum62_conditionals


def test_accuracy_counts_equal_labels():
    assert metrics.accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    with pytest.raises(ValueError):
        metrics.accuracy(np.array([0, 1]), np.array([0]))


def test_ranks_average_ties():
    assert metrics.rankdata(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_by_hand():
    # ranks x: 1 2 3 4 5, ranks y: 2 1 4 3 5 -> d^2 = 1+1+1+1+0 = 4; rho = 1 - 6*4/(5*24) = 0.8
    assert metrics.spearman(
        np.array([1, 2, 3, 4, 5]), np.array([20, 10, 40, 30, 50])
    ) == pytest.approx(0.8)
    assert metrics.spearman(np.arange(6), -(np.arange(6) ** 3)) == pytest.approx(-1.0)
    # With ties: Pearson of ranks [1.5, 1.5, 3] and [1, 2, 3] = 0.75 / sqrt(0.5 * 2) = 0.866...
    assert metrics.spearman(np.array([1, 1, 2]), np.array([1, 2, 3])) == pytest.approx(
        math.sqrt(3) / 2
    )
    assert math.isnan(metrics.spearman(np.ones(4), np.arange(4)))


def test_contact_precision_by_hand():
    n = 30  # L // 5 = 6 pairs are scored
    contacts = np.zeros((n, n), bool)
    scores = np.zeros((n, n))
    # Six highest-scoring long-range pairs, four of them true contacts -> precision 4/6.
    pairs = [(0, 29), (1, 28), (2, 27), (3, 26), (4, 25), (5, 24)]
    for rank, (i, j) in enumerate(pairs):
        scores[i, j] = 10 - rank
    for i, j in pairs[:4]:
        contacts[i, j] = contacts[j, i] = True
    # A short-range pair with the top score must not count at separation >= 12.
    scores[0, 5], contacts[0, 5] = 100, False
    valid = np.ones(n, bool)
    assert metrics.contact_precision(scores, contacts, valid, 12) == pytest.approx(4 / 6)
    # Separation >= 1: the short pair takes first place -> 4 contacts in the top 6.
    assert metrics.contact_precision(scores, contacts, valid, 1) == pytest.approx(4 / 6)
    valid[0] = False  # drop pair (0, 29): a zero-score non-contact fills the top 6
    assert metrics.contact_precision(scores, contacts, valid, 12) == pytest.approx(3 / 6)


def test_kl_by_hand():
    target = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    predicted = np.array([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25]])
    assert metrics.kl_divergence(target, predicted) == pytest.approx([math.log(2), math.log(2)])
    assert metrics.kl_divergence(predicted, predicted) == pytest.approx([0, 0])


def test_bootstrap_interval_brackets_the_value_and_is_reproducible():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    low, high = metrics.bootstrap_interval(metrics.spearman, [x, y], seed=3)
    assert low < metrics.spearman(x, y) < high
    assert (low, high) == metrics.bootstrap_interval(metrics.spearman, [x, y], seed=3)


def test_blosum62_baseline_is_a_distribution_enriched_in_the_residue():
    conditionals = blosum62_conditionals()
    assert conditionals.sum(1) == pytest.approx(np.ones(20))
    # BLOSUM62's diagonal is the largest score of each row: the residue itself is the most
    enrichment = conditionals / background_frequencies()[None, :]
    assert (enrichment.argmax(1) == np.arange(20)).all()
    assert background_frequencies().sum() == pytest.approx(1.0)
