"""Profile-prediction KL on the store's test split, split by sequence hash vs by homology
cluster: each pretraining arm trained on each store (train.yaml, the comparison's budget) and
scored on that store's own test split (`protprof evaluate --tasks profile`).

The cluster-split store is config.yaml's; the hash-split store is the same config with
hash_split.yaml on top (same queries and shared cache, so its searches are all cache hits).
Resumable: a store, checkpoint or report that exists is kept. Wall times go to
experiments/comparison/results/split_kl/timings.tsv, the table to .../split_kl/table.md.

Usage, from the repository root (after make_data.py):
    PATH=.venv/bin:$PATH .venv/bin/python experiments/comparison/split_kl.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from protprof.evaluation import metrics
from protprof.evaluation.tasks import STANDARD, background_frequencies, blosum62_conditionals
from protprof.model.checkpoint import load_model
from protprof.model.embed import embed_sequences
from protprof.queries.clusters import homolog_pairs
from protprof.store.zarr_store import open_store

HERE = Path("experiments/comparison")
SPLITS = {  # ingest.split_method -> (config files, results folder)
    "hash": ([HERE / "config.yaml", HERE / "hash_split.yaml"], HERE / "results-hash"),
    "mmseqs": ([HERE / "config.yaml"], HERE / "results"),
}
ARMS = ("profile", "multitask", "mlm")  # mlm last: its profile head is never trained
OUT = HERE / "results" / "split_kl"
MODEL = "KL, model profile head"
BASELINES = ("KL, baseline: background frequencies", "KL, baseline: BLOSUM62-smoothed one-hot")


def timed(stage: str, command: list[str]) -> None:
    """Run a command, failing loudly, and append its wall time to timings.tsv."""
    print("+", " ".join(command), flush=True)
    start = time.monotonic()
    subprocess.run(command, check=True)
    seconds = time.monotonic() - start
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "timings.tsv", "a", encoding="utf-8") as f:
        f.write(f"{stage}\t{seconds:.0f}\n")


def build_store(configs: list[Path], results: Path, cores: int) -> Path:
    """The workflow up to the store (search, or cache hits, then assembly)."""
    store = results / "store" / "profiles.zarr"
    if not store.exists():
        timed(
            f"store {results.name}",
            ["snakemake", str(store), "--profile", "profiles/local", "--cores", str(cores)]
            + ["--configfile", *map(str, configs)],
        )
    return store


def leakage(store_path: Path, results: Path) -> dict:
    """Test-set size and test sequences with a training homolog (>= 30 % id over 80 %)."""
    cached = results / "split_kl_leakage.json"
    if cached.exists() and "leaked_rows" in (found := json.loads(cached.read_text())):
        return found
    store = open_store(store_path)
    params = store.attrs["ingest"]  # the cluster split's thresholds, whichever split is used
    identity, coverage = params["split_identity"], params["split_coverage"]
    sequences = [store.sequence(i) for i in range(len(store))]
    splits = [int(s) for s in store.split]
    pairs = homolog_pairs(sequences, identity, coverage, 2)
    rows = {a for a, b in pairs if splits[a] == 2 and splits[b] == 0}
    rows |= {b for a, b in pairs if splits[b] == 2 and splits[a] == 0}
    found = {"n": len(splits), "test": splits.count(2), "leaked": len(rows)}
    found["leaked_rows"] = sorted(rows)
    cached.write_text(json.dumps(found) + "\n")
    return found


def train_and_evaluate(store: Path, results: Path, arm: str, seed: int) -> dict:
    """Train one arm and seed on the store (kept if done) and score the profile task."""
    run = results / "train" / arm / f"seed{seed}"
    if not (run / "checkpoint.pt").exists():
        timed(
            f"train {results.name} {arm} seed{seed}",
            ["protprof", "train", "--resume", "--config", str(HERE / "train.yaml")]
            + ["--store", str(store), "--out-dir", str(run)]
            + ["--set", "devices=0", f"objective={arm}", f"seed={seed}"],
        )
    report = results / "split_kl" / arm / f"seed{seed}"
    if not (report / "report.md").exists():
        timed(
            f"evaluate {results.name} {arm} seed{seed}",
            ["protprof", "evaluate", str(run / "checkpoint.pt"), "--store", str(store)]
            + ["--tasks", "profile", "--label", arm, "--out", str(report), "--force"],
        )
    results_ = json.loads((report / "report.json").read_text())["results"]
    return {r["metric"]: r for r in results_}


def table(found: dict, leaks: dict, names: list[str], arms: list[str], seeds: list[int]) -> str:
    """Markdown: per arm and split, the mean KL over seeds (each seed's in parentheses; with
    one seed, its bootstrap 95 % interval over test sequences)."""
    lines = [
        "| | " + " | ".join(f"split_method: {n}" for n in names) + " |",
        "|---" * (len(names) + 1) + "|",
        "| test sequences (with a training homolog) | "
        + " | ".join(f"{leaks[s]['test']} ({leaks[s]['leaked']})" for s in names)
        + " |",
    ]
    for metric in [*(f"{MODEL}: {arm}" for arm in arms), *BASELINES]:
        cells = []
        for split in names:
            if metric.startswith(MODEL):
                arm = metric.split(": ")[-1]
                values = [found[split, arm, s][MODEL]["value"] for s in seeds]
                first = found[split, arm, seeds[0]][MODEL]
            else:  # the baselines do not depend on the model: any run's
                first = found[split, arms[0], seeds[0]][metric]
                values = [first["value"]]
            each = " / ".join(f"{v:.3f}" for v in values)
            interval = f" [{first['low']:.3f}, {first['high']:.3f}]"  # bootstrap, first seed
            cells.append(
                f"{statistics.mean(values):.3f}" + (f" ({each})" if len(values) > 1 else interval)
            )
        label = metric.replace(f"{MODEL}: ", "KL, profile head, ")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def by_leak(store_path: Path, checkpoint: Path, leaked_rows: list[int]) -> str:
    """The profile head's KL and the BLOSUM62 baseline's on the test sequences with and
    without a training homolog: memorisation would lower the first ratio, not the second."""
    store = open_store(store_path)
    rows = [int(i) for i in np.flatnonzero(store.split == 2)]
    sequences = [store.sequence(i) for i in rows]
    _, predicted = embed_sequences(load_model(checkpoint), sequences)
    conditionals, background = blosum62_conditionals(), background_frequencies()
    index = {c: k for k, c in enumerate(STANDARD)}
    cells = []
    for leaked in (True, False):
        picked = [k for k, i in enumerate(rows) if (i in leaked_rows) == leaked]
        model, blosum = [], []
        for k in picked:
            target = store.profile(rows[k])
            smoothed = [conditionals[index[c]] if c in index else background for c in sequences[k]]
            model.append(metrics.kl_divergence(target, predicted[k]))
            blosum.append(metrics.kl_divergence(target, np.stack(smoothed)))
        m, b = np.concatenate(model).mean(), np.concatenate(blosum).mean()
        cells.append(f"{len(picked)} | {m:.3f} | {b:.3f} | {m / b:.3f}")
    return " | ".join(cells)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args()
    stores = {s: build_store(*SPLITS[s], args.cores) for s in args.splits}
    leaks = {s: leakage(stores[s], SPLITS[s][1]) for s in args.splits}
    found = {
        (split, arm, seed): train_and_evaluate(stores[split], SPLITS[split][1], arm, seed)
        for seed in args.seeds
        for split in args.splits
        for arm in args.arms
    }
    text = table(found, leaks, args.splits, args.arms, args.seeds)
    for split in args.splits:  # the split with leaked test sequences: KL with vs without
        if leaks[split]["leaked"]:
            text += (
                f"\nsplit_method {split}, seed {args.seeds[0]}: test sequences with / without a "
                "training homolog\n\n| arm | n | KL, profile head | KL, BLOSUM62 | ratio | n | "
                "KL, profile head | KL, BLOSUM62 | ratio |\n" + "|---" * 9 + "|\n"
            )
            for arm in (a for a in args.arms if a != "mlm"):  # mlm: an untrained head
                run = SPLITS[split][1] / "train" / arm / f"seed{args.seeds[0]}"
                cells = by_leak(stores[split], run / "checkpoint.pt", leaks[split]["leaked_rows"])
                text += f"| {arm} | {cells} |\n"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
