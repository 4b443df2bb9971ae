"""Kill-safe search jobs: what the per-query journal costs, and what a killed search job loses
with it and without it.

- Cost: `protprof search` on one shard with the journal (each finished query fsync'd to
  `<out>.journal/`) against the same search without one (`search_records(journal=None)`),
  in this process, alternating, `--repeats` times each.
- Loss: the command is started in a subprocess and SIGKILLed once half the shard is journaled
  (polled); the rerun's wall time plus the killed run's, less an uninterrupted run's, is the
  work the kill lost (both runs load the database: that load is part of it). Without the
  journal the rerun searches the whole shard again: the killed run's whole time is lost.

Demo queries against the demo database (5,000 UniProtKB sequences), -N 3. Results are appended
to bench/RESULTS.md.

    .venv/bin/python bench/bench_journal.py --queries 30 --threads 2
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import record

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import DEMO_DB, write_queries  # noqa: E402

from protprof.alignments.filters import NO_FILTERS  # noqa: E402
from protprof.alignments.profiles import ProfileParams  # noqa: E402
from protprof.jackhmmer import SearchParams, load_database  # noqa: E402
from protprof.queries.fasta import read_fasta  # noqa: E402
from protprof.search.journal import journal_path, open_journal, read_segment, settings  # noqa: E402
from protprof.search.to_store import search_records  # noqa: E402

PROTPROF = Path(sys.executable).parent / "protprof"
RESUMED = re.compile(r"(\d+) of (\d+) queries finished by an earlier run; searching (\d+)")


def journaled(journal: Path) -> int:
    return sum(len(read_segment(s)[0]) for s in journal.glob("*.seg")) if journal.exists() else 0


def timed_command(args: list[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as handle:
        subprocess.run([str(PROTPROF), *args], stderr=handle, check=True)
    return time.perf_counter() - start


def killed_run(args: list[str], journal: Path, n: int, log: Path) -> tuple[float, int]:
    """Wall seconds until the kill, and the queries journaled then."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen([str(PROTPROF), *args], stderr=handle)
    while process.poll() is None and journaled(journal) < n:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return time.perf_counter() - start, journaled(journal)


def append_seconds(journal: Path, again: Path) -> float:
    """Seconds per record to append (encode, write, fsync) a journal's records again."""
    entries = [e for s in sorted(journal.glob("*.seg")) for e in read_segment(s)[0]]
    wanted = settings(
        {"sha256": "", "n_sequences": 1, "n_residues": 1},
        SearchParams(),
        ProfileParams(),
        NO_FILTERS,
        None,
    )
    with open_journal(again, wanted) as held:
        assert held is not None
        start = time.perf_counter()
        for entry in entries:
            held.append(entry)
        return (time.perf_counter() - start) / len(entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_journal-"))
    queries = write_queries(tmp / "q.fasta", args.queries)
    shard = tmp / "shard.fasta"
    subprocess.run([str(PROTPROF), "-q", "ingest", str(queries), "--out", str(shard)], check=True)
    records = read_fasta(shard)
    n = len(records)

    database = load_database(DEMO_DB)
    walls: dict[str, list[float]] = {"journal": [], "no journal": []}
    for r in range(args.repeats):
        for contender in walls:
            out = tmp / f"cost-{r}-{contender.replace(' ', '')}.zarr"
            journal = journal_path(out) if contender == "journal" else None
            start = time.perf_counter()
            params = SearchParams(), ProfileParams()
            search_records(
                records,
                [0] * n,
                database,
                *params,
                args.threads,
                out,
                journal=journal,
                keep_journal=True,
            )
            walls[contender].append(time.perf_counter() - start)
    append = append_seconds(journal_path(tmp / "cost-0-journal.zarr"), tmp / "again")

    command = ["search", str(shard), "--database", str(DEMO_DB), "--threads", str(args.threads)]
    whole = timed_command([*command, "--out", str(tmp / "whole.zarr")], tmp / "whole.log")
    out = tmp / "killed.zarr"
    kill_wall, done = killed_run(
        [*command, "--out", str(out)], journal_path(out), n // 2, tmp / "killed.log"
    )
    rerun = timed_command([*command, "--out", str(out)], tmp / "rerun.log")
    match = RESUMED.search((tmp / "rerun.log").read_text())
    assert match and int(match[1]) == done, (tmp / "rerun.log").read_text()[-2000:]
    lost_now = kill_wall + rerun - whole
    best = {k: min(v) for k, v in walls.items()}
    ratio = best["journal"] / best["no journal"]
    spread = max(max(v) / min(v) - 1 for v in walls.values())
    lines = [
        f"{n} demo queries against the demo database (5,000 sequences), -N 3, "
        f"--threads {args.threads}.",
        "",
        "| contender | wall s (each run) | best | ratio to no journal |",
        "|---|---|---|---|",
        *(
            f"| search, {k} | {', '.join(f'{w:.1f}' for w in v)} | {best[k]:.1f} | "
            f"{best[k] / best['no journal']:.3f} |"
            for k, v in walls.items()
        ),
        "",
        f"journal / no journal = **{ratio:.3f}** (each finished query written and fsync'd; "
        f"runs of one contender vary by up to {spread:.0%} on this shared machine). "
        "Appending one record "
        f"(encode, write, fsync) takes **{1000 * append:.2f} ms**, against "
        f"{best['no journal'] / n * args.threads:.2f} core-s per query searched here (hours "
        "at UniRef90).",
        "",
        "| killed search job | value |",
        "|---|---|",
        f"| uninterrupted `protprof search`, wall s | {whole:.1f} |",
        f"| killed after (wall s; queries journaled) | {kill_wall:.1f}; {done} of {n} |",
        f"| rerun, wall s (searched {int(match[3])} queries) | {rerun:.1f} |",
        f"| lost with the journal: killed + rerun - uninterrupted, s | **{lost_now:.1f}** |",
        f"| lost without it: the killed run's whole time, s | **{kill_wall:.1f}** |",
        "",
        "With the journal a kill loses the queries in flight (at most --threads + 1 query "
        "drivers) and a database load; without it, everything the killed run did. Command: "
        f"`.venv/bin/python bench/bench_journal.py --queries {args.queries} --threads "
        f"{args.threads} --repeats {args.repeats}`.",
    ]
    record("search journal: its cost, and the work a killed search job loses", lines)


if __name__ == "__main__":
    main()
