"""Probes trained on frozen embeddings: the model under test is never updated.

- per residue: a width-5 convolution (a linear map of each residue and its 2 neighbours on
  either side), softmax over classes;
- per sequence: a linear softmax classifier, or ridge regression, on mean-pooled embeddings;
- contacts: logistic regression on the pair features [h_i * h_j, |h_i - h_j|].
Features are standardised with training statistics. Each probe holds out 10 % of its training
examples to pick its regularisation / stopping point, as TAPE picks on a validation split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from protprof.evaluation.metrics import spearman

VALIDATION_FRACTION = 0.1


def _holdout(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out rows. Below 10 rows nothing can be spared: both are every row."""
    if n < 10:
        return np.arange(n), np.arange(n)
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, int(n * VALIDATION_FRACTION))
    return np.sort(order[k:]), np.sort(order[:k])


class Standardiser:
    """Zero mean, unit variance per feature, with statistics of the training features."""

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(0)
        self.std = x.std(0) + 1e-6

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Standardise `x` with the training statistics (float32)."""
        return ((x - self.mean) / self.std).astype(np.float32)


# ---------------------------------------------------------------- per sequence


def fit_ridge(
    x: np.ndarray,
    y: np.ndarray,
    seed: int = 0,
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0),
):
    """Ridge regression; alpha picked by Spearman on a held-out 10 %. Returns predict(x)."""
    scale = Standardiser(x)
    z = np.c_[scale(x).astype(np.float64), np.ones(len(x))]
    y = np.asarray(y, dtype=np.float64)

    def solve(rows: np.ndarray, alpha: float) -> np.ndarray:
        penalty = alpha * np.eye(z.shape[1])
        penalty[-1, -1] = 0.0  # the intercept is not shrunk
        return np.linalg.solve(z[rows].T @ z[rows] + penalty, z[rows].T @ y[rows])

    train, valid = _holdout(len(x), seed)
    scores = [
        spearman(z[valid] @ solve(train, a), y[valid]) if len(valid) >= 2 else np.nan
        for a in alphas
    ]
    best = alphas[int(np.nanargmax(scores))] if np.isfinite(scores).any() else alphas[0]
    weights = solve(np.arange(len(x)), best)
    return lambda new: np.c_[scale(new).astype(np.float64), np.ones(len(new))] @ weights


def _fit_keeping_best(
    model: torch.nn.Module, batches, valid_score, epochs: int, lr: float, weight_decay: float
) -> torch.nn.Module:
    """AdamW for `epochs` passes over `batches()` (which yields loss closures), ending with
    the weights of the epoch with the best `valid_score()` (early stopping)."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_score, best_state = -np.inf, {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(epochs):
        model.train()
        for loss in batches():
            optimiser.zero_grad()
            loss().backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            score = valid_score()
        if score > best_score:
            best_score, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model


def fit_classifier(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    seed: int = 0,
    epochs: int = 100,
    weight_decay: float = 0.05,
):
    """Linear softmax classifier on per-sequence features. Returns predict(x) -> labels."""
    torch.manual_seed(seed)
    scale = Standardiser(x)
    z, labels = torch.from_numpy(scale(x)), torch.as_tensor(np.asarray(y), dtype=torch.long)
    train, valid = _holdout(len(x), seed)
    linear = torch.nn.Linear(z.shape[1], n_classes)
    generator = torch.Generator().manual_seed(seed)

    def batches():
        order = torch.from_numpy(train)[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(order), 256):
            rows = order[start : start + 256]
            yield lambda rows=rows: F.cross_entropy(linear(z[rows]), labels[rows])

    def score() -> float:
        return float((linear(z[valid]).argmax(-1) == labels[valid]).float().mean())

    _fit_keeping_best(linear, batches, score, epochs, 1e-2, weight_decay)
    return lambda new: linear(torch.from_numpy(scale(new))).argmax(-1).numpy()


# ---------------------------------------------------------------- per residue


class _ConvProbe(torch.nn.Module):
    def __init__(self, d: int, n_classes: int, width: int = 5) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(d, n_classes, width, padding=width // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, L, C)
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


def _pad(arrays: list[np.ndarray], value: float = 0.0) -> torch.Tensor:
    longest = max(len(a) for a in arrays)
    out = np.full((len(arrays), longest, *arrays[0].shape[1:]), value, dtype=arrays[0].dtype)
    for k, a in enumerate(arrays):
        out[k, : len(a)] = a
    return torch.from_numpy(out)


def fit_residue_classifier(
    features: list[np.ndarray],
    labels: list[np.ndarray],
    masks: list[np.ndarray],
    n_classes: int,
    seed: int = 0,
    epochs: int = 15,
    max_tokens: int = 16384,
):
    """Width-5 convolution per residue over frozen embeddings; masked residues neither
    train nor score. Returns predict(list of (L, d)) -> list of (L,) labels."""
    torch.manual_seed(seed)
    scale = Standardiser(np.concatenate(features))
    features = [scale(f) for f in features]
    targets = [
        np.where(m, lab, -100).astype(np.int64) for lab, m in zip(labels, masks, strict=True)
    ]
    train, valid = _holdout(len(features), seed)
    probe = _ConvProbe(features[0].shape[1], n_classes)
    generator = np.random.default_rng(seed)

    def groups(rows: np.ndarray) -> list[np.ndarray]:
        rows = rows[np.argsort([len(features[k]) for k in rows], kind="stable")]
        out: list[np.ndarray] = []
        current: list[int] = []
        longest = 0
        for k in rows:
            longest = max(longest, len(features[k]))
            if current and longest * (len(current) + 1) > max_tokens:
                out.append(np.array(current))
                current, longest = [], len(features[k])
            current.append(k)
        return out + ([np.array(current)] if current else [])

    train_groups, valid_groups = groups(train), groups(valid)

    def batches():
        for g in generator.permutation(len(train_groups)):
            rows = train_groups[g]
            x, y = _pad([features[k] for k in rows]), _pad([targets[k] for k in rows], -100)
            yield lambda x=x, y=y: F.cross_entropy(
                probe(x).flatten(0, 1), y.flatten(), ignore_index=-100
            )

    def score() -> float:
        right = total = 0
        for rows in valid_groups:
            y = _pad([targets[k] for k in rows], -100)
            predicted = probe(_pad([features[k] for k in rows])).argmax(-1)
            right += int(((predicted == y) & (y >= 0)).sum())
            total += int((y >= 0).sum())
        return right / max(total, 1)

    _fit_keeping_best(probe, batches, score, epochs, 3e-3, 1e-2)

    @torch.no_grad()
    def predict(new: list[np.ndarray]) -> list[np.ndarray]:
        return [probe(torch.from_numpy(scale(f))[None]).argmax(-1)[0].numpy() for f in new]

    return predict


# ---------------------------------------------------------------- contacts


def pair_features(h: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Features of residue pairs (i, j): product and absolute difference of their embeddings."""
    return np.concatenate([h[i] * h[j], np.abs(h[i] - h[j])], axis=1)


def fit_contact_probe(
    features: list[np.ndarray],
    contacts: list[np.ndarray],
    valid: list[np.ndarray],
    min_separation: int = 6,
    pairs_per_protein: int = 1500,
    seed: int = 0,
):
    """Logistic regression on pair features of sampled residue pairs (|i - j| >= 6, all
    contacts kept plus random non-contacts). Returns score(h) -> (L, L) contact scores."""
    rng = np.random.default_rng(seed)
    scale = Standardiser(np.concatenate(features))
    xs, ys = [], []
    for h, c, ok in zip(features, contacts, valid, strict=True):
        h = scale(h)
        i, j = np.triu_indices(len(h), k=min_separation)
        keep = ok[i] & ok[j]
        i, j = i[keep], j[keep]
        positive = np.flatnonzero(c[i, j])
        negative = np.flatnonzero(~c[i, j])
        take = max(0, pairs_per_protein - len(positive))
        negative = rng.choice(negative, size=min(take, len(negative)), replace=False)
        rows = np.concatenate([positive, negative])
        xs.append(pair_features(h, i[rows], j[rows]))
        ys.append(c[i[rows], j[rows]].astype(np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    predict_class = fit_logistic(x, y, seed)

    def score(h: np.ndarray) -> np.ndarray:
        h = scale(h)
        i, j = np.triu_indices(len(h), k=1)
        out = np.full((len(h), len(h)), -np.inf)
        out[i, j] = predict_class(pair_features(h, i, j))
        return out

    return score


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 10):
    """Binary logistic regression; returns the positive-class logit of new rows."""
    torch.manual_seed(seed)
    z, labels = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    train, valid = _holdout(len(x), seed)
    linear = torch.nn.Linear(z.shape[1], 1)
    generator = torch.Generator().manual_seed(seed)

    def batches():
        order = torch.from_numpy(train)[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(order), 2048):
            rows = order[start : start + 2048]
            yield lambda rows=rows: F.binary_cross_entropy_with_logits(
                linear(z[rows])[:, 0], labels[rows]
            )

    def score() -> float:
        return -float(F.binary_cross_entropy_with_logits(linear(z[valid])[:, 0], labels[valid]))

    _fit_keeping_best(linear, batches, score, epochs, 3e-3, 1e-2)

    @torch.no_grad()
    def logits(new: np.ndarray) -> np.ndarray:
        return linear(torch.from_numpy(new.astype(np.float32)))[:, 0].numpy()

    return logits
