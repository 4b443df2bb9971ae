"""Family-scale search (`--reuse pool|family`) against per-query search, same run, same data.

Data: the 20,000 real UniProtKB records of Debian's `mmseqs2-examples` as the database, and two
query sets of 200 of its records:
- family-rich: the members of the families of 60 random records (every record a phmmer search
  of one of them includes, E <= 1e-3, Z = 20,000), 200 of them drawn at random;
- random: 200 records drawn at random.
Each set is built with `protprof build` (-N 3, HMMER's default thresholds, 2 threads) three
times: `--reuse none` (the peer: one whole-database search per query), `pool` and `family`.
Measured: whole-database searches (`full_searches` in the store's provenance), wall and CPU
time (the build process's), the CPU split (whole-database / pool / grouping), and agreement
with the per-query profiles: mean Jensen-Shannon divergence per query (bits) and, for `pool`,
identical included sets (the final alignments' rows, `--msa-dir`).

Targets (family-rich set): whole-database searches <= 1/4 of the queries (goal 1/5); >= 95 %
of pool profiles within 0.01 bits; >= 90 % identical included sets; pool wall time <= 0.6x
per-query (goal 0.4x). Random set: reuse should cost about what per-query search costs.

Resumable: each build's store, alignments and timing are kept in bench/work/reuse/ and not
rerun (delete the folder to measure again).

Usage: python bench/bench_reuse.py [--queries 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pyhmmer
from pyhmmer.easel import Alphabet, DigitalSequenceBlock, SequenceFile

sys.path.insert(0, str(Path(__file__).parent))
from _results import record  # noqa: E402

from protprof.queries.fasta import Record, write_fasta  # noqa: E402
from protprof.search.family import js_bits  # noqa: E402
from protprof.store.zarr_store import open_store  # noqa: E402

SOURCE = Path("/usr/share/doc/mmseqs2/example-data/DB.fasta.gz")
WORK = Path(__file__).parent / "work" / "reuse"
BIN = Path(sys.executable).parent
# (name, --reuse, --coverage): the default coverage rule, and a looser one to show the trade-off
MODES = (
    ("none", "none", 0.8),
    ("pool", "pool", 0.8),
    ("family", "family", 0.8),
    ("pool-c0.5", "pool", 0.5),
)


def make_sets(n: int, threads: int) -> dict[str, Path]:
    """The family-rich and random query sets (FASTA), made once."""
    paths = {name: WORK / f"{name}.fasta" for name in ("family-rich", "random")}
    if all(p.exists() for p in paths.values()):
        return paths
    amino = Alphabet.amino()
    with SequenceFile(str(SOURCE), digital=True, alphabet=amino) as handle:
        db = handle.read_block()
    names = [s.name if isinstance(s.name, str) else s.name.decode() for s in db]
    position = {name: i for i, name in enumerate(names)}
    rng = random.Random(0)
    seeds = rng.sample(range(len(db)), 60)
    family: set[int] = set()
    seed_block = DigitalSequenceBlock(amino, [db[i] for i in seeds])
    for hits in pyhmmer.hmmer.phmmer(
        seed_block, db, cpus=threads, Z=len(db), incE=1e-3, incdomE=1e-3
    ):
        family.update(position[_name(h.name)] for h in hits if h.included)
    chosen = {
        "family-rich": sorted(rng.sample(sorted(family), min(n, len(family)))),
        "random": sorted(random.Random(1).sample(range(len(db)), n)),
    }
    for name, rows in chosen.items():
        records = [Record(names[i], db[i].textize().sequence) for i in rows]
        write_fasta(paths[name], records)
    print(f"family-rich set: {len(chosen['family-rich'])} of the {len(family)} family members")
    return paths


def _name(name: str | bytes) -> str:
    return name if isinstance(name, str) else name.decode()


def build(queries: Path, name: str, mode: str, coverage: float, threads: int) -> dict:
    """One `protprof build`, timed (kept: a rerun of the benchmark reads it back)."""
    stem = f"{queries.stem}-{name}"
    timing = WORK / f"{stem}.json"
    if timing.exists():
        return json.loads(timing.read_text())
    store, msas = WORK / f"{stem}.zarr", WORK / f"{stem}-msa"
    command = [
        str(BIN / "protprof"),
        "build",
        str(queries),
        "--database",
        str(SOURCE),
        "--out",
        str(store),
        "-N",
        "3",
        "--threads",
        str(threads),
        "--reuse",
        mode,
        "--coverage",
        str(coverage),
        "--force",
    ]
    if mode != "family":
        command += ["--msa-dir", str(msas)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = {"wall": wall, "cpu": cpu, "reuse": open_store(store).attrs["reuse"]}
    timing.write_text(json.dumps(result, indent=1))
    return result


def included_sets(msas: Path) -> dict[str, set[str]]:
    """Each query's final alignment rows (target names, without domain coordinates)."""
    out = {}
    for line in (msas / "index.tsv").read_text().splitlines()[1:]:
        query, name = line.split("\t")
        rows = set()
        for row in (msas / name).read_text().splitlines():
            if row and not row.startswith(("#", "//")):
                rows.add(row.split()[0].rsplit("/", 1)[0])
        out[unquote(query)] = rows
    return out


def agreement(queries: Path, name: str, mode: str) -> dict:
    """How the reuse build's profiles compare with the per-query build's, over all queries
    and over members only."""
    peer = open_store(WORK / f"{queries.stem}-none.zarr")
    mine = open_store(WORK / f"{queries.stem}-{name}.zarr")
    roles = np.load(mine.path / "roles.npy")
    assert list(map(str, peer.ids)) == list(map(str, mine.ids))
    js = np.array([js_bits(peer.profile(i), mine.profile(i)) for i in range(len(peer))])
    members = roles == 1
    out = {
        "js_within_all": float((js <= 0.01).mean()),
        "js_within_members": float((js[members] <= 0.01).mean()) if members.any() else None,
        "js_median_members": float(np.median(js[members])) if members.any() else None,
        "js_p95_members": float(np.quantile(js[members], 0.95)) if members.any() else None,
        "representatives_identical": bool(
            all(
                np.array_equal(peer.quantised_profile(i), mine.quantised_profile(i))
                for i in np.flatnonzero(~members)
            )
        ),
    }
    if mode == "pool":
        a = included_sets(WORK / f"{queries.stem}-none-msa")
        b = included_sets(WORK / f"{queries.stem}-{name}-msa")
        same = [a[str(q)] == b[str(q)] for q, m in zip(peer.ids, members, strict=True) if m]
        out["identical_included_all"] = float(np.mean([a[q] == b[q] for q in a]))
        out["identical_included_members"] = float(np.mean(same)) if same else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing: apt-get install mmseqs2-examples")
    WORK.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{args.queries} queries per set against the 20,000-record mmseqs2-examples database, "
        f"-N 3, HMMER default thresholds, {args.threads} threads, audit 2 % (at least 3).",
        "",
        "| set | mode | whole-db searches | groups | wall s | CPU s | wall vs per-query | "
        "CPU split whole-db / pool / grouping s | members within 0.01 bits | "
        "members identical included | representatives bit-identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, queries in make_sets(args.queries, args.threads).items():
        peer = build(queries, "none", "none", 0.8, args.threads)
        for label, mode, coverage in MODES:
            if label == "pool-c0.5" and name != "family-rich":
                continue  # the trade-off is shown where there are families
            run = build(queries, label, mode, coverage, args.threads)
            reuse = run["reuse"]
            cpu = reuse.get("cpu_seconds", {})
            agree = agreement(queries, label, mode) if mode != "none" else {}
            within = agree.get("js_within_members")
            same = agree.get("identical_included_members")
            lines.append(
                f"| {name} | {label} | {reuse['full_searches']} | {reuse['groups']} | "
                f"{run['wall']:.0f} | {run['cpu']:.0f} | {run['wall'] / peer['wall']:.2f} | "
                + (
                    f"{cpu.get('whole_database', 0):.0f} / {cpu.get('pool', 0):.0f} / "
                    f"{cpu.get('grouping', 0) + cpu.get('family_alignment', 0):.1f} | "
                    if cpu
                    else "- | "
                )
                + (f"{100 * within:.1f} % | " if within is not None else "- | ")
                + (f"{100 * same:.1f} % | " if same is not None else "- | ")
                + (f"{agree['representatives_identical']} |" if agree else "- |")
            )
            if agree:
                print(name, label, json.dumps(agree))
    record("Family-scale search: per-query vs pool vs family (bench_reuse.py)", lines)


if __name__ == "__main__":
    main()
