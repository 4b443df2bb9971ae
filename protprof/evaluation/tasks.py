"""The downstream tasks: read the data, embed with the frozen model, fit a probe, score.

Each task returns `Result`s (one per metric) with a bootstrap 95 % interval over test items
(proteins for per-residue tasks, so residues of one protein are resampled together).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protprof.alphabet import FIRST_RESIDUE, MASK, N_STANDARD, STANDARD, encode, pad_tokens
from protprof.evaluation import datasets as ds
from protprof.evaluation import metrics, probes, registry
from protprof.evaluation.settings import Limits
from protprof.model.embed import embed_sequences
from protprof.model.encoder import ProteinEncoder


@dataclass
class Result:
    """One number of one task: value, bootstrap interval, and the example counts behind it."""

    task: str
    metric: str
    value: float
    low: float
    high: float
    n_train: int
    n_test: int
    note: str = ""
    profile_head: bool = False  # an output of the profile head (absent from ESM directories)

    def skipped(self, why: str) -> Result:
        """This result without a value, and why."""
        nan = float("nan")
        return Result(self.task, self.metric, nan, nan, nan, 0, 0, why, self.profile_head)

    def as_dict(self) -> dict:
        """The result as JSON-able fields."""
        return asdict(self)


def sample(items: list, k: int, seed: int) -> list:
    """A fixed-seed sample of k items (all of them when k is 0 or covers them), order kept."""
    if not k or len(items) <= k:
        return items
    picked = np.sort(np.random.default_rng(seed).choice(len(items), size=k, replace=False))
    return [items[i] for i in picked]


def residue_embeddings(model: ProteinEncoder, sequences: list[str]) -> list[np.ndarray]:
    """Per-residue hidden states (L, d) of each sequence."""
    hidden, _ = embed_sequences(model, sequences)
    return hidden


def mean_embeddings(model: ProteinEncoder, sequences: list[str], chunk: int = 2048) -> np.ndarray:
    """Mean-pooled hidden states, computed in chunks so per-residue states never pile up."""
    means: list[np.ndarray] = []
    for start in range(0, len(sequences), chunk):
        hidden, _ = embed_sequences(model, sequences[start : start + chunk])
        means.extend(h.mean(0) for h in hidden)
    return np.stack(means).astype(np.float32)


def _result(
    task: str,
    metric: str,
    fn: Callable[..., float],
    arrays: list,
    n_train: int,
    limits: Limits,
    note: str = "",
    profile_head: bool = False,
) -> Result:
    low, high = metrics.bootstrap_interval(fn, arrays, seed=limits.seed)
    return Result(
        task, metric, fn(*arrays), low, high, n_train, len(arrays[0]), note, profile_head
    )


# ---------------------------------------------------------------- tasks


def secondary_structure(model: ProteinEncoder, data: Path, limits: Limits) -> list[Result]:
    """Q3 on CB513 of a per-residue convolution probe trained on the FLIP NetSurfP-2.0 split."""
    train = sample(ds.read_ss_flip(data, "train"), limits.max_train, limits.seed)
    test = sample(ds.read_cb513(data), limits.max_test, limits.seed)
    predict = probes.fit_residue_classifier(
        residue_embeddings(model, [e.sequence for e in train]),
        [e.labels for e in train],
        [e.mask for e in train],
        len(ds.SS3),
        seed=limits.seed,
    )
    predicted = predict(residue_embeddings(model, [e.sequence for e in test]))

    def q3(pred: list, truth: list, mask: list) -> float:
        return metrics.accuracy(
            np.concatenate([p[m] for p, m in zip(pred, mask, strict=True)]),
            np.concatenate([t[m] for t, m in zip(truth, mask, strict=True)]),
        )

    arrays = [predicted, [e.labels for e in test], [e.mask for e in test]]
    return [
        _result(
            "secondary structure (CB513)",
            "Q3",
            q3,
            arrays,
            len(train),
            limits,
            "train FLIP/NetSurfP-2.0; Q8 not scored: the training split has 3-state labels only",
        )
    ]


def remote_homology(model: ProteinEncoder, data: Path, limits: Limits) -> list[Result]:
    """Fold accuracy on held-out SCOPe superfamilies of a linear probe on mean embeddings."""
    train, test, folds = ds.split_remote_homology(ds.read_scope(data, limits.scope_identity))
    train = sample(train, limits.max_train, limits.seed)
    test = sample(test, limits.max_test, limits.seed)
    predict = probes.fit_classifier(
        mean_embeddings(model, [e.sequence for e in train]),
        np.array([int(e.label) for e in train]),
        len(folds),
        seed=limits.seed,
    )
    predicted = predict(mean_embeddings(model, [e.sequence for e in test]))
    truth = np.array([int(e.label) for e in test])
    return [
        _result(
            f"remote homology (SCOPe 2.08, <={limits.scope_identity}% id)",
            "top-1 fold accuracy",
            metrics.accuracy,
            [predicted, truth],
            len(train),
            limits,
            f"{len(folds)} folds; test superfamilies unseen in training",
        )
    ]


def _regression_task(
    name: str, reader: Callable[[Path, str], tuple[list, int]], note: str
) -> Callable[[ProteinEncoder, Path, Limits], list[Result]]:
    """A per-sequence regression task: ridge on mean embeddings, Spearman on the test split."""

    def run(model: ProteinEncoder, data: Path, limits: Limits) -> list[Result]:
        train = sample(reader(data, "train")[0], limits.max_train, limits.seed)
        test = sample(reader(data, "test")[0], limits.max_test, limits.seed)
        predict = probes.fit_ridge(
            mean_embeddings(model, [e.sequence for e in train]),
            np.array([e.label for e in train]),
            seed=limits.seed,
        )
        predicted = predict(mean_embeddings(model, [e.sequence for e in test]))
        truth = np.array([e.label for e in test])
        return [
            _result(
                name,
                "Spearman rho",
                metrics.spearman,
                [predicted, truth],
                len(train),
                limits,
                note,
            )
        ]

    return run


stability = _regression_task(
    "stability (Rocklin 2017)",
    ds.read_stability,
    "train design rounds 1-4, test single mutants of 17 designs",
)
fluorescence = _regression_task(
    "fluorescence (avGFP)", ds.read_fluorescence, "train <= 3 mutations, test >= 4"
)


def contacts(model: ProteinEncoder, data: Path, limits: Limits) -> list[Result]:
    """Precision of the top L/5 predicted contacts (separation >= 12, >= 24) on crystal chains."""
    train = sample(ds.read_contacts(data, "train"), limits.max_train, limits.seed)
    test = sample(ds.read_contacts(data, "test"), limits.max_test, limits.seed)
    score = probes.fit_contact_probe(
        residue_embeddings(model, [e.sequence for e in train]),
        [e.contacts for e in train],
        [e.valid for e in train],
        seed=limits.seed,
    )
    scores = [score(h) for h in residue_embeddings(model, [e.sequence for e in test])]
    results = []
    for separation in (12, 24):

        def precision(s: list, c: list, v: list, separation: int = separation) -> float:
            return float(
                np.nanmean(
                    [
                        metrics.contact_precision(a, b, m, separation)
                        for a, b, m in zip(s, c, v, strict=True)
                    ]
                )
            )

        arrays = [scores, [e.contacts for e in test], [e.valid for e in test]]
        results.append(
            _result(
                "contacts (crystal structures)",
                f"P@L/5, separation >= {separation}",
                precision,
                arrays,
                len(train),
                limits,
                "C-beta < 8 A; mean over test chains",
            )
        )
    return results


@torch.no_grad()
def variant_scores(
    model: ProteinEncoder, variants: ds.VariantSet, batch: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot log-odds of every variant, summed over its mutations:
    MLM head = masked marginal log p(mutant) - log p(wild type) with the site masked;
    profile head = the same difference of the predicted profile of the unmasked wild type."""
    wild = encode(variants.wild_type)
    tokens = torch.from_numpy(pad_tokens([wild]))
    profile = torch.log_softmax(model(tokens)["profile_logits"][0, 1:-1].float(), -1).numpy()
    positions = sorted({p for mutations in variants.mutations for p, _, _ in mutations})
    masked = np.zeros((len(variants.wild_type), N_STANDARD))
    for start in range(0, len(positions), batch):
        chunk = positions[start : start + batch]
        batch_tokens = tokens.repeat(len(chunk), 1)
        for b, p in enumerate(chunk):
            batch_tokens[b, p + 1] = MASK
        logp = torch.log_softmax(model(batch_tokens)["mlm_logits"].float(), -1)
        for b, p in enumerate(chunk):
            masked[p] = logp[b, p + 1, FIRST_RESIDUE : FIRST_RESIDUE + N_STANDARD].numpy()
    return log_odds(masked, variants), log_odds(profile, variants)


def log_odds(table: np.ndarray, variants: ds.VariantSet) -> np.ndarray:
    """Each variant's summed log p(mutant) - log p(wild type), from a site-independent table
    of log-probabilities (L, 20) in STANDARD order."""
    column = {c: k for k, c in enumerate(STANDARD)}
    return np.array(
        [
            sum(table[p, column[m]] - table[p, column[w]] for p, w, m in mutations)
            for mutations in variants.mutations
        ],
        dtype=np.float64,
    )


def _assay_note(variants: ds.VariantSet) -> str:
    multi = sum(len(m) > 1 for m in variants.mutations)
    what = "fitness at 2500 ug/ml ampicillin" if variants.name == "BLAT_ECOLX" else "score"
    summed = f"; {multi} multi-mutants, log-odds summed" if multi else ""
    return f"{len(variants.scores)} variants{summed}; {what}"


SCORERS = ("MLM head", "profile head", "alignment profile")


def variant_effects(
    model: ProteinEncoder,
    data: Path,
    limits: Limits,
    reference: dict[str, np.ndarray] | None = None,
) -> list[Result]:
    """Zero-shot Spearman on six DMS assays of the MLM head's masked-marginal log-odds, the
    profile head's log-odds and (given `reference`, the alignment profiles of the wild types)
    the alignment's own profile's log-odds; and their means over the assays."""
    results: list[Result] = []
    # Per scorer, each assay's bootstrap Spearman values: the same resamples for every scorer
    # (one seed per assay), so the mean over assays is resampled from them.
    replicates: dict[str, list[np.ndarray]] = {name: [] for name in SCORERS}
    values: dict[str, list[float]] = {name: [] for name in SCORERS}
    assays = ds.read_variant_assays(data)
    for number, variants in enumerate(assays):
        mlm, prof = variant_scores(model, variants)
        scores: dict[str, np.ndarray | None] = {"MLM head": mlm, "profile head": prof}
        scores["alignment profile"] = (
            log_odds(np.log(reference[variants.name]), variants) if reference else None
        )
        task = f"zero-shot variant effects ({variants.name})"
        for name, guess in scores.items():
            metric = f"Spearman rho, {name}"
            if guess is None:
                nan = float("nan")
                results.append(
                    Result(task, metric, nan, nan, nan, 0, 0, "needs --store or --reference")
                )
                continue
            arrays: list[Any] = [guess, variants.scores]
            samples = metrics.bootstrap_samples(
                metrics.spearman, arrays, seed=limits.seed + number
            )
            value = metrics.spearman(*arrays)
            replicates[name].append(samples)
            values[name].append(value)
            low, high = metrics.percentile_interval(samples)
            results.append(
                Result(
                    task,
                    metric,
                    value,
                    low,
                    high,
                    0,
                    len(variants.scores),
                    _assay_note(variants),
                    name == "profile head",
                )
            )
    task = f"zero-shot variant effects (mean of {len(assays)} assays)"
    for name in SCORERS:
        if len(values[name]) != len(assays):
            continue
        low, high = metrics.percentile_interval(np.mean(replicates[name], axis=0))
        results.append(
            Result(
                task,
                f"mean Spearman rho, {name}",
                float(np.mean(values[name])),
                low,
                high,
                0,
                sum(len(v.scores) for v in assays),
                "mean over the assays; each assay resampled on its own",
                name == "profile head",
            )
        )
    return results


def blosum62_conditionals() -> np.ndarray:
    """P(b | a) for the 20 standard residues: background x 2^(S_ab / 2), rows normalised
    (BLOSUM62 scores are half-bit log-odds of the target frequencies)."""
    from Bio.Align import substitution_matrices

    blosum = substitution_matrices.load("BLOSUM62")
    background = background_frequencies()
    scores = np.array([[blosum[a][b] for b in STANDARD] for a in STANDARD])
    joint = background[None, :] * np.power(2.0, scores / 2.0)
    return joint / joint.sum(1, keepdims=True)


def background_frequencies() -> np.ndarray:
    """HMMER's amino-acid background (the BLOSUM62 background), in STANDARD order."""
    import pyhmmer

    frequencies = np.array(
        list(pyhmmer.plan7.Background(pyhmmer.easel.Alphabet.amino()).residue_frequencies)[:20]
    )
    return frequencies / frequencies.sum()


def profile_prediction(
    model: ProteinEncoder, store_path: Path | None, limits: Limits
) -> list[Result]:
    """KL(store profile || prediction) on the store's test split, against two baselines."""
    from protprof.store.zarr_store import open_store

    if store_path is None:
        raise ds.DatasetError("evaluate: the profile task needs --store (a profile store)")
    store = open_store(store_path)
    rows = sample(list(np.flatnonzero(store.split == 2)), limits.max_test, limits.seed)
    task = "profile prediction (store test split)"
    if not rows:  # a tiny store: say so in the report rather than fail the whole evaluation
        nan = float("nan")
        return [
            Result(
                task,
                "KL, model profile head",
                nan,
                nan,
                nan,
                0,
                0,
                f"{store_path} has no test-split sequences",
                profile_head=True,
            )
        ]
    sequences = [store.sequence(i) for i in rows]
    targets = [store.profile(i) for i in rows]
    _, predicted = embed_sequences(model, sequences)
    background = background_frequencies()
    conditionals = blosum62_conditionals()
    index = {c: k for k, c in enumerate(STANDARD)}

    def smoothed(sequence: str) -> np.ndarray:
        return np.stack([conditionals[index[c]] if c in index else background for c in sequence])

    def mean_kl(target: list, guess: list) -> float:
        return float(
            np.concatenate(
                [metrics.kl_divergence(t, g) for t, g in zip(target, guess, strict=True)]
            ).mean()
        )

    baselines = {
        "model profile head": predicted,
        "baseline: background frequencies": [
            np.broadcast_to(background, t.shape) for t in targets
        ],
        "baseline: BLOSUM62-smoothed one-hot": [smoothed(s) for s in sequences],
    }
    return [
        _result(
            task,
            f"KL, {name}",
            mean_kl,
            [targets, guess],
            0,
            limits,
            "nats per residue; lower is better",
            profile_head=name == "model profile head",
        )
        for name, guess in baselines.items()
    ]


def _data_runner(name: str) -> Callable[[ProteinEncoder, Path, Limits], list[Result]]:
    task = registry.get(name)

    def run(model: ProteinEncoder, data: Path, limits: Limits) -> list[Result]:
        return task.run(model, registry.Inputs(Path(data)), limits)

    return run


# The registry's tasks that read only the benchmark folder, as (model, data, limits) -> results:
# a view for scripts and tests (the tasks are defined in `registry`).
RUNNERS = {name: _data_runner(name) for name in registry.names() if registry.get(name).needs_data}
