"""Evaluation time of one tiny-preset checkpoint on every task, all examples (target <= 15 min).

The peer, measured in the same run: embedding every sequence the tasks read, the forward
passes no evaluation can skip. The ratio total / embedding is the cost of reading the data,
fitting the probes and bootstrapping.

Usage: python bench/bench_evaluate.py [CHECKPOINT] [STORE] [DATA]
  defaults: results/train/multitask/seed0/checkpoint.pt (the demo's tiny model),
            results/store/profiles.zarr, ../shared/data
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record  # noqa: E402

from protprof.evaluation import TASKS  # noqa: E402
from protprof.evaluation import datasets as ds  # noqa: E402
from protprof.evaluation.evaluate import evaluate  # noqa: E402
from protprof.evaluation.settings import Limits  # noqa: E402
from protprof.model.checkpoint import load_model  # noqa: E402
from protprof.model.embed import embed_sequences  # noqa: E402


def all_sequences(data: Path) -> list[str]:
    sequences = [e.sequence for e in ds.read_ss_flip(data, "train")]
    sequences += [e.sequence for e in ds.read_cb513(data)]
    train, test, _ = ds.split_remote_homology(ds.read_scope(data))
    sequences += [e.sequence for e in train + test]
    for reader in (ds.read_stability, ds.read_fluorescence):
        for split in ("train", "test"):
            sequences += [e.sequence for e in reader(data, split)[0]]
    for split in ("train", "test"):
        sequences += [e.sequence for e in ds.read_contacts(data, split)]
    return sequences


def main() -> None:
    default = "results/train/multitask/seed0/checkpoint.pt"
    checkpoint = Path(sys.argv[1] if len(sys.argv) > 1 else default)
    store = Path(sys.argv[2] if len(sys.argv) > 2 else "results/store/profiles.zarr")
    data = Path(sys.argv[3] if len(sys.argv) > 3 else "../shared/data")
    model = load_model(checkpoint)
    sequences = all_sequences(data)
    start = time.perf_counter()
    with torch.no_grad():
        for k in range(0, len(sequences), 2048):
            embed_sequences(model, sequences[k : k + 2048])
    embed_seconds = time.perf_counter() - start
    start = time.perf_counter()
    report = evaluate(checkpoint, list(TASKS), data, store, Limits())
    total = time.perf_counter() - start
    residues = sum(len(s) for s in sequences)
    record(
        "Evaluation of one tiny checkpoint on every task, all examples",
        [
            f"- checkpoint {checkpoint} ({report['n_parameters']:,} parameters, "
            f"`{report['model']}`), {torch.get_num_threads()} torch threads",
            f"- embedding peer: {len(sequences):,} sequences / {residues:,} residues in "
            f"{embed_seconds:.0f} s ({residues / embed_seconds:,.0f} residues/s)",
            f"- `protprof evaluate`, all {len(TASKS)} tasks: **{total / 60:.1f} min** "
            f"(target <= 15 min); ratio to embedding alone {total / embed_seconds:.2f}",
            "- seconds per task: "
            + ", ".join(f"{k} {v:.0f}" for k, v in report["seconds"].items()),
        ],
    )


if __name__ == "__main__":
    main()
