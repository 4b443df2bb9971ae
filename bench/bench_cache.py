"""The profile cache: the cost of an update, of assembling from the cache, and its size.

1. Update: the demo workflow up to the store (150 queries, 5,000 targets, -N 3), then the same
   workflow with 5 more real queries (records of the demo database, which the demo queries do
   not include). Target: the update takes <= 0.35x the first build's wall time and runs exactly
   5 searches.
2. Assembly at 10^6 sequences of synthetic profiles (no search): building the store from the
   cache's segments vs the peer, `assemble` of the same data as shard stores (what the workflow
   did before the cache). Target <= 1.5x.
3. Cache bytes per residue vs the store's (target within 10 %).

Usage: python bench/bench_cache.py [--sequences N] [--skip-update]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _results import record  # noqa: E402

from protprof.queries.fasta import read_fasta, write_fasta  # noqa: E402
from protprof.store import cache  # noqa: E402
from protprof.store.zarr_store import StoreData, assemble, open_store, write_stores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, config: dict) -> float:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run(
        [
            str(BIN / "snakemake"),
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            "--cores",
            "2",
            "results/store/profiles.zarr",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def update(work: Path) -> list[str]:
    work.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["queries"] = [str(ROOT / "data/demo/queries_150.fasta.gz")]
    config["database"] = str(ROOT / "data/demo/uniprot_5k.fasta.gz")
    config["train"]["config"] = str(ROOT / config["train"]["config"])
    first = snakemake(work, config)
    extra = work / "extra5.fasta"
    write_fasta(extra, read_fasta(ROOT / "data/demo/uniprot_5k.fasta.gz")[:5])
    config["queries"].append(str(extra))
    searches_before = len(list((work / "results/benchmarks/search_shard").glob("*.tsv")))
    second = snakemake(work, config)
    plan = json.loads((work / "results/plan/plan.json").read_text())
    store = open_store(work / "results/store/profiles.zarr")
    ratio = second / first
    return [
        "| run | wall s | searched | reused | search jobs |",
        "|---|---|---|---|---|",
        f"| first build (150 queries) | {first:.1f} | 149 | 0 | {searches_before} |",
        f"| +5 queries | {second:.1f} | {store.attrs['cache']['searched']} | "
        f"{store.attrs['cache']['reused']} | {len(plan['shards'])} |",
        "",
        f"update / first build = **{ratio:.2f}** (target <= 0.35; from `snakemake` start to "
        f"the store, fixed costs included); plan: {plan['missing']} of {plan['queries']} "
        "queries searched.",
    ]


def synthetic_shards(where: Path, n: int, shards: int, seed: int = 0) -> tuple[list[Path], int]:
    """Shard stores of n random sequences (lengths 20-80) with random quantised profiles."""
    rng = np.random.default_rng(seed)
    fingerprint = {
        "path": "synthetic",
        "sha256": "synthetic",
        "n_sequences": 10**8,
        "n_residues": 3 * 10**10,
    }
    attrs = {
        "database": fingerprint,
        "search": {"iterations": 3, "Z": 10**8},
        "profile": {"method": "hmm"},
        "pyhmmer_version": "0.12.3",
    }
    paths, residues = [], 0
    for k in range(shards):
        m = n // shards
        lengths = rng.integers(20, 81, m)
        total = int(lengths.sum())
        profiles = rng.integers(0, 12, (total, 20), dtype=np.uint8)
        profiles[:, 19] = 255 - profiles[:, :19].sum(1, dtype=np.int64)
        part = StoreData(
            ids=[f"s{k}_{i}" for i in range(m)],
            tokens=rng.integers(4, 24, total, dtype=np.uint8),
            profiles=profiles,
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            n_hits=rng.integers(0, 100, m).astype(np.int32),
            neff=rng.random(m).astype(np.float32),
            split=np.zeros(m, np.uint8),
        )
        paths.append(write_stores(where / f"{k}.zarr", [part], attrs))
        residues += total
    return paths, residues


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def assembly(work: Path, n: int) -> list[str]:
    shards, residues = synthetic_shards(work / "shards", n, 4)
    start = time.perf_counter()
    assemble(shards, work / "peer.zarr")
    peer = time.perf_counter() - start
    profiles = cache.ProfileCache(work / "cache")
    start = time.perf_counter()
    for shard in shards:
        profiles.publish(shard)
    publish = time.perf_counter() - start
    peer_store = open_store(work / "peer.zarr")
    ids = [str(x) for x in peer_store.ids]
    sequences = [peer_store.sequence(i) for i in range(len(peer_store))]
    ctx = cache.context_of_store(open_store(shards[0]))
    start = time.perf_counter()
    cache.assemble(
        profiles,
        ids,
        sequences,
        [0] * len(ids),
        [ctx],
        work / "cached.zarr",
        dict(peer_store.attrs),
        searched=0,
    )
    cached = time.perf_counter() - start
    a, b = peer_store.read_all(), open_store(work / "cached.zarr").read_all()
    same = all(
        np.array_equal(getattr(a, k), getattr(b, k))
        for k in ("tokens", "profiles", "offsets", "n_hits", "neff")
    )
    store_bpr = size(work / "peer.zarr") / residues
    cache_bpr = size(work / "cache" / "segments") / residues
    return [
        f"{n:,} synthetic sequences, {residues:,} residues, in 4 shard stores.",
        "",
        "| step | wall s |",
        "|---|---|",
        f"| assemble from shard stores (peer) | {peer:.1f} |",
        f"| publish the shards to the cache | {publish:.1f} |",
        f"| assemble from the cache | {cached:.1f} |",
        "",
        f"cache assembly / shard assembly = **{cached / peer:.2f}** (target <= 1.5); the two "
        f"stores' arrays are {'identical' if same else 'DIFFERENT'}. Bytes per residue: store "
        f"{store_bpr:.2f}, cache {cache_bpr:.2f} (**{cache_bpr / store_bpr:.2f}x**, target "
        "within 10 %).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=10**6)
    parser.add_argument("--skip-update", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        work = Path(tmp)
        lines = [] if args.skip_update else update(work / "update") + [""]
        shutil.rmtree(work / "update", ignore_errors=True)  # disk for the assembly part
        lines += assembly(work / "assembly", args.sequences)
    record("profile cache: update and assembly", lines)


if __name__ == "__main__":
    main()
