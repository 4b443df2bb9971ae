"""How many test sequences have a training homolog, under the split by sequence hash and under
the split by homology cluster that ingest wrote (`split=` in the ingested FASTA): homologs at
the cluster split's thresholds (>= 30 % identity over >= 80 % of both sequences, MMseqs2).

Usage (the comparison's fractions are the defaults), from the repository root:
    python experiments/comparison/split_leakage.py \
        experiments/comparison/results/queries/ingested.fasta
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from protprof.queries.clusters import homolog_pairs
from protprof.queries.ingest import IngestParams, assign_splits, read_shard


def leaky(splits: list[int], pairs: set[tuple[int, int]]) -> int:
    """Test sequences (code 2) with a homolog in training (code 0)."""
    found = {a for a, b in pairs if splits[a] == 2 and splits[b] == 0}
    return len(found | {b for a, b in pairs if splits[b] == 2 and splits[a] == 0})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ingested", type=Path, help="the FASTA `protprof ingest` wrote")
    p.add_argument("--valid-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    records, written = read_shard(args.ingested)
    sequences = [r.sequence for r in records]
    params = IngestParams(valid_fraction=args.valid_fraction, test_fraction=args.test_fraction)
    hashed = assign_splits(sequences, dataclasses.replace(params, split_method="hash"))
    pairs = homolog_pairs(sequences, params.split_identity, params.split_coverage, args.threads)
    for name, splits in (("hash", hashed), ("as ingested", written)):
        counts = " / ".join(str(splits.count(k)) for k in range(3))
        print(
            f"{name}: split {counts}; test sequences with a training homolog: "
            f"{leaky(splits, pairs)} of {splits.count(2)}"
        )
    moved = sum(a != b for a, b in zip(hashed, written, strict=True))
    print(f"sequences in another split than the hash split: {moved} of {len(sequences)}")


if __name__ == "__main__":
    main()
