"""End to end: a tiny checkpoint trained here, evaluated on small samples of real tasks;
zero-shot scoring and the leakage guard checked against direct computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import DEMO_QUERIES, SHARED_DATA
from pyhmmer.easel import Alphabet
from pyhmmer.plan7 import Background

from protprof.alphabet import FIRST_RESIDUE, MASK, RESIDUES, encode
from protprof.cli import main
from protprof.evaluation import TASKS
from protprof.evaluation import datasets as ds
from protprof.evaluation.leakage import evaluation_test_sequences, guard
from protprof.evaluation.settings import Limits
from protprof.evaluation.tasks import RUNNERS, sample, variant_scores
from protprof.model.checkpoint import load_model
from protprof.model.embed import embed_sequences
from protprof.queries.fasta import Record, read_fasta
from protprof.store.zarr_store import open_store

pytestmark = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"benchmark data {SHARED_DATA} not present"
)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.mark.integration
def test_evaluate_tiny_checkpoint_on_real_samples(checkpoint, small_store, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                str(checkpoint),
                "--data",
                str(SHARED_DATA),
                "--store",
                str(small_store),
                "--tasks",
                "ss",
                "stability",
                "profile",
                "--max-train",
                "80",
                "--max-test",
                "60",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 30  # the checkpoint's step
    results = {(r["task"].split(" (")[0], r["metric"].split(",")[0]): r for r in report["results"]}
    q3 = results[("secondary structure", "Q3")]
    assert (q3["n_train"], q3["n_test"]) == (80, 60)
    # The probe beats the majority-class predictor on the same scored test residues (the same
    # fixed-seed sample): the best any constant guess can do (0.425 here, coil; Q3 0.535).
    test = sample(ds.read_cb513(SHARED_DATA), 60, 0)
    labels = np.concatenate([e.labels[e.mask] for e in test])
    majority = np.bincount(labels, minlength=len(ds.SS3)).max() / len(labels)
    assert majority < q3["value"] < 1 and q3["low"] <= q3["value"] <= q3["high"]
    rho = results[("stability", "Spearman rho")]
    assert (rho["n_train"], rho["n_test"]) == (80, 60)
    # The command line and the library give the same number (fixed-seed samples and probes).
    (direct,) = RUNNERS["stability"](load_model(checkpoint), SHARED_DATA, Limits(80, 60, 0))
    assert direct.value == pytest.approx(rho["value"], abs=1e-9)
    assert rho["low"] <= rho["value"] <= rho["high"]
    kl = {r["metric"]: r["value"] for r in report["results"] if r["task"].startswith("profile")}
    # KL(store profile || guess) recomputed here from the store's test split, per residue.
    store = open_store(small_store)
    rows = np.flatnonzero(store.split == 2)
    targets = np.concatenate([store.profile(i) for i in rows]).astype(np.float64)
    _, predicted = embed_sequences(load_model(checkpoint), [store.sequence(i) for i in rows])
    background = np.array(list(Background(Alphabet.amino()).residue_frequencies)[:20])
    guesses = {
        "KL, model profile head": np.concatenate(predicted),
        "KL, baseline: background frequencies": background / background.sum(),
    }
    for metric, guess in guesses.items():
        terms = targets * np.log(np.where(targets > 0, targets, 1) / guess)  # 0 log 0 = 0
        assert kl[metric] == pytest.approx(terms.sum(1).mean(), rel=1e-3), metric
    # Trained on profiles, the head beats the flat background already.
    assert kl["KL, model profile head"] < kl["KL, baseline: background frequencies"]
    assert (out / "report.png").stat().st_size > 1000
    assert "| secondary structure (CB513) | Q3 |" in (out / "report.md").read_text()
    assert "Q3" in capsys.readouterr().out
    # compare: one column per objective; two reports of one objective count as two seeds.
    assert main(["compare", str(out / "report.json"), "--out", str(tmp_path / "one.md")]) == 0
    one = (tmp_path / "one.md").read_text().splitlines()
    assert one[0] == "| task | metric | multitask |"
    assert one[2] == (
        f"| secondary structure (CB513) | Q3 | {q3['value']:.3f} "
        f"[{q3['low']:.3f}, {q3['high']:.3f}] |"
    )
    # The same numbers under another seed: two reports of one arm (the same seed twice is
    # refused, see test_compare.py).
    (tmp_path / "seed1.json").write_text(json.dumps({**report, "seed": 1}))
    assert (
        main(
            [
                "compare",
                str(out / "report.json"),
                str(tmp_path / "seed1.json"),
                "--out",
                str(tmp_path / "two.md"),
            ]
        )
        == 0
    )
    two = (tmp_path / "two.md").read_text().splitlines()
    assert two[0] == "| task | metric | multitask (2 seeds) |"
    assert two[2] == f"| secondary structure (CB513) | Q3 | {q3['value']:.3f} ± 0.000 |"
    # Columns follow labels (evaluate --label), not the training objective.
    assert report["label"] == report["objective"] == "multitask"
    (tmp_path / "other.json").write_text(json.dumps({**report, "label": "untrained"}))
    assert (
        main(
            [
                "compare",
                str(tmp_path / "other.json"),
                str(out / "report.json"),
                "--out",
                str(tmp_path / "labels.md"),
            ]
        )
        == 0
    )
    assert (
        (tmp_path / "labels.md")
        .read_text()
        .startswith("| task | metric | untrained | multitask |")
    )


@pytest.mark.integration
def test_zero_shot_scores_equal_a_direct_masked_forward(checkpoint):
    model = load_model(checkpoint)
    variants = ds.read_blat_ecolx(SHARED_DATA)
    variants.mutations, variants.scores = variants.mutations[:40], variants.scores[:40]
    mlm, profile = variant_scores(model, variants)
    position, wild, mutant = variants.mutations[7][0]
    tokens = torch.tensor(np.r_[1, encode(variants.wild_type), 2])[None].long()
    with torch.no_grad():
        clean = torch.log_softmax(model(tokens)["profile_logits"][0, position + 1], -1)
        tokens[0, position + 1] = MASK
        logp = torch.log_softmax(model(tokens)["mlm_logits"][0, position + 1], -1)
    expected = (
        logp[FIRST_RESIDUE + RESIDUES.index(mutant)] - logp[FIRST_RESIDUE + RESIDUES.index(wild)]
    )
    assert mlm[7] == pytest.approx(float(expected), abs=1e-4)
    expected = clean[RESIDUES.index(mutant)] - clean[RESIDUES.index(wild)]
    assert profile[7] == pytest.approx(float(expected), abs=1e-4)


def test_leakage_guard_drops_a_test_homologue_and_keeps_the_rest(tmp_path):
    tests = evaluation_test_sequences(SHARED_DATA)
    assert len(tests) > 1000 and any(name.startswith("homology/") for name, _ in tests)
    cb513 = ds.read_cb513(SHARED_DATA)[3]
    # A 90 %-identical copy of a CB513 chain (every tenth residue changed) is a homologue.
    mutated = "".join("A" if k % 10 == 5 and c != "A" else c for k, c in enumerate(cb513.sequence))
    unrelated = read_fasta(DEMO_QUERIES)[0]
    result = guard([Record("near_cb513", mutated), unrelated], tests, evalue=1e-3)
    assert [r.id for r in result.kept] == [unrelated.id]
    assert result.dropped[0]["id"] == "near_cb513" and result.dropped[0]["evalue"] < 1e-10
    # Through the command line, with a report of what was dropped.
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">near_cb513\n{mutated}\n>{unrelated.id}\n{unrelated.sequence}\n")
    assert (
        main(
            [
                "guard",
                str(fasta),
                "--data",
                str(SHARED_DATA),
                "--out",
                str(tmp_path / "kept.fa"),
                "--report",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    assert [r.id for r in read_fasta(tmp_path / "kept.fa")] == [unrelated.id]
    assert json.loads((tmp_path / "r.json").read_text())["n_dropped"] == 1


@pytest.mark.integration
def test_cli_task_names_match_the_runners():
    # TASKS lives apart from the runners so the CLI needs no torch; the two must not drift.
    assert set(TASKS) == {*RUNNERS, "profile"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, metrics",
    [
        ("homology", ["top-1 fold accuracy"]),
        ("fluorescence", ["Spearman rho"]),
        ("contacts", ["P@L/5, separation >= 12", "P@L/5, separation >= 24"]),
    ],
)
def test_task_runners_on_small_samples(checkpoint, task, metrics):
    """Every runner reads its real data, fits its probe and reports each metric with the sample
    sizes it was asked for and an interval around the value."""
    limits = Limits(max_train=40, max_test=12, seed=0)
    results = RUNNERS[task](load_model(checkpoint), SHARED_DATA, limits)
    assert [r.metric for r in results] == metrics
    for r in results:
        assert r.n_test == 12 and r.n_train == 40, r
        assert np.isfinite(r.value) and r.low <= r.value <= r.high, r
    again = RUNNERS[task](load_model(checkpoint), SHARED_DATA, limits)
    assert [r.value for r in again] == [r.value for r in results]  # fixed seeds: repeatable
