"""The leakage guard's coverage per registered task: how many test sequences each task gives
the guard, and which fraction of them the guard catches as queries, verbatim and as copies at
90 % and 70 % identity (every 10th residue, or 3 of every 10, substituted). A copy counts as
caught when its best hit is a test sequence of the same task (a sequence several tasks share is
filed under the first). Also: the zero-shot wild types against the hand-written list the guard
used before the registry (everything but the Pab1, Ube4b, Bgl3 and GB1 wild types), and the
demo queries the guard drops.

Usage: python bench/bench_guard.py [DATA] [THREADS]   (defaults ../shared/data, 2)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record  # noqa: E402

from protprof.alphabet import STANDARD  # noqa: E402
from protprof.evaluation import registry  # noqa: E402
from protprof.evaluation.leakage import guard  # noqa: E402
from protprof.queries.fasta import Record, read_fasta  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ADDED_LATER = {"variants/Pab1", "variants/Ube4b", "variants/Bgl3", "variants/GB1"}


def substituted(sequence: str, every: set[int]) -> str:
    """`sequence` with each residue at a position k (k % 10 in `every`) replaced by another
    standard residue (7 along the alphabet)."""
    return "".join(
        STANDARD[(STANDARD.index(c) + 7) % 20] if k % 10 in every and c in STANDARD else c
        for k, c in enumerate(sequence)
    )


COPIES = {"verbatim": set(), "90 % id": {5}, "70 % id": {1, 4, 7}}


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    tests = registry.test_sequences(data)
    task_of = {name: name.split("/")[0] for name, _ in tests}
    start = time.perf_counter()
    lines = [
        f"- {len(tests):,} test sequences from {len(registry.names())} registered tasks; "
        "phmmer E <= 1e-3, Z = the test sequences",
        "",
        "| task | test sequences | caught verbatim | at 90 % id | at 70 % id |",
        "|---|---|---|---|---|",
    ]
    for task in registry.names():
        own = [(n, s) for n, s in tests if task_of[n] == task]
        cells = []
        for every in COPIES.values():
            queries = [Record(n, substituted(s, every)) for n, s in own]
            result = guard(queries, tests, threads=threads)
            same = sum(task_of[d["test_id"]] == task for d in result.dropped)
            other = len(result.dropped) - same
            cells.append(f"{same}/{len(own)}" + (f" (+{other} via another task)" if other else ""))
        lines.append(f"| {task} | {len(own)} | " + " | ".join(cells) + " |")
    lines.append("")
    before = [(n, s) for n, s in tests if n not in ADDED_LATER]
    lines += [
        "Zero-shot wild types, best hit (E-value) against the list before the registry "
        f"({len(before)} sequences) and now ({len(tests)}):",
        "",
        "| wild type | copy | before | now |",
        "|---|---|---|---|",
    ]
    wild_types = [(n, s) for n, s in tests if task_of[n] == "variants"]
    for label, every in COPIES.items():
        queries = [Record(n, substituted(s, every)) for n, s in wild_types]
        hits = {}
        for when, targets in (("before", before), ("now", tests)):
            found = {d["id"]: d for d in guard(queries, targets, threads=threads).dropped}
            hits[when] = {
                q.id: f"{found[q.id]['test_id']} ({found[q.id]['evalue']:.0e})"
                if q.id in found
                else "**kept**"
                for q in queries
            }
        for q in queries:
            lines.append(f"| {q.id} | {label} | {hits['before'][q.id]} | {hits['now'][q.id]} |")
    demo = read_fasta(ROOT / "data" / "demo" / "queries_150.fasta.gz")
    result = guard(demo, tests, threads=threads)
    lines += [
        "",
        f"- demo queries (data/demo/queries_150.fasta.gz): {len(result.dropped)} of {len(demo)} "
        "dropped: "
        + ", ".join(f"{d['id']} -> {d['test_id']} ({d['evalue']:.0e})" for d in result.dropped),
        f"- {time.perf_counter() - start:.0f} s with {threads} threads",
    ]
    record("leakage guard coverage per task (bench_guard.py)", lines)


if __name__ == "__main__":
    main()
