"""Importing existing alignments: parse + filter + build the profile + quantise, against
pyhmmer's builder alone (`profiles.build_hmm`, the same builder call the import makes) on the
same alignments, already parsed. The `protprof import` contender runs the command's own code
(`importer.read_found` and `write_imported`, threads as `--threads`) and writes the store.

The real alignments of `../shared/data/msa_openfold/` (jackhmmer Stockholm, HHblits a3m) and
`../shared/data/msa_examples_esm/` (HHblits a3m), repeated to at least 2,000, split over
`--workers` processes (one per core). Each contender runs `--repeats` times; the best wall
time counts. Results are appended to bench/RESULTS.md.

    .venv/bin/python bench/bench_import.py --workers 2
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _results import record

from protprof.alignments.filters import FilterParams, filter_alignment
from protprof.alignments.formats import read_alignment
from protprof.alignments.profiles import ProfileParams, build_hmm, profile_from_msa
from protprof.store.zarr_store import quantise

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FILTERS = {
    "off": FilterParams(),
    # ColabFold's hhfilter settings (-id 90 -cov 75 -qid 15), and a depth cap
    "on": FilterParams(max_identity=0.9, min_coverage=0.75, min_identity=0.15, max_seqs=2048),
}


def alignment_files() -> list[Path]:
    files = sorted((SHARED / "msa_openfold").glob("*/*_hits.*"))
    files += sorted((SHARED / "msa_examples_esm").glob("*.a3m"))
    return files


def run_builder(paths: list[str]) -> tuple[float, float]:
    """Builder alone on pre-parsed alignments: (wall, CPU) seconds of the builds."""
    parsed = {p: read_alignment(p) for p in set(paths)}
    start, cpu = time.perf_counter(), time.process_time()
    for p in paths:
        a = parsed[p]
        build_hmm(a.msa, a.query_id, len(a.query))
    return time.perf_counter() - start, time.process_time() - cpu


def run_import(paths: list[str], filters: str) -> tuple[float, float]:
    """Parse, filter, build, quantise: (wall, CPU) seconds."""
    params, profile = FILTERS[filters], ProfileParams()
    start, cpu = time.perf_counter(), time.process_time()
    for p in paths:
        a = filter_alignment(read_alignment(p), params)
        values, _ = profile_from_msa(a.msa, a.query_id, len(a.query), profile)
        quantise(values)
    return time.perf_counter() - start, time.process_time() - cpu


def run_command(paths: list[str], threads: int, out: Path) -> float:
    """`protprof import --threads N`'s path: read every file (threads), build, quantise and
    write the store. The command imports a repeated sequence once; here every copy counts, as
    for the other contenders, so items are renamed, not deduplicated. Wall seconds."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from protprof.alignments.files import Found, ImportParams
    from protprof.alignments.importer import read_found, write_imported
    from protprof.queries.ingest import IngestParams

    params, ingest = ImportParams(), IngestParams(max_length=100_000)
    found = [Found(f"a{i}", (Path(p),)) for i, p in enumerate(paths)]
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        items = [i for i in pool.map(lambda f: read_found(f, params, ingest), found) if i]
    items = [replace(item, id=f.id) for item, f in zip(items, found, strict=True)]
    write_imported(items, [0] * len(items), out, {}, FilterParams(), ProfileParams(), threads)
    return time.perf_counter() - start


def timed(pool: ProcessPoolExecutor, parts: list[list[str]], contender: str) -> float:
    """Wall seconds until every worker is done (each times its own loop)."""
    if contender == "builder":
        futures = [pool.submit(run_builder, part) for part in parts]
    else:
        futures = [pool.submit(run_import, part, contender.split()[-1]) for part in parts]
    return max(f.result()[0] for f in futures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--count", type=int, default=2000, help="alignments, at least")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    files = alignment_files()
    if not files:
        raise SystemExit(f"no alignments under {SHARED}")
    paths = [str(f) for f in files] * math.ceil(args.count / len(files))
    parts = [paths[w :: args.workers] for w in range(args.workers)]
    command = f"protprof import --threads {args.workers} (writes the store)"
    contenders = ["builder", "import, filters off", "import, filters on", command]
    best: dict[str, list[float]] = {c: [] for c in contenders}
    with ProcessPoolExecutor(args.workers) as pool, tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for contender in contenders[:-1]:
                best[contender].append(timed(pool, parts, contender))
            out = Path(tmp) / f"store{repeat}.zarr"
            best[command].append(run_command(paths, args.workers, out))
    base = min(best["builder"])
    lines = [
        f"{len(paths)} alignments ({len(files)} real files repeated: OpenFold jackhmmer "
        f"Stockholm and HHblits a3m, ESM HHblits a3m), {args.workers} worker processes. "
        f"Filters on: {FILTERS['on']}.",
        "",
        "| contender | wall s (each run) | best | ratio to builder | alignments/s/core |",
        "|---|---|---|---|---|",
    ]
    for contender, walls in best.items():
        wall = min(walls)
        rate = len(paths) / wall / args.workers
        lines.append(
            f"| {contender} | {', '.join(f'{w:.2f}' for w in walls)} | {wall:.2f} | "
            f"{wall / base:.2f} | {rate:.0f} |"
        )
    lines += [
        "",
        "Command: `.venv/bin/python bench/bench_import.py --workers "
        f"{args.workers} --count {args.count} --repeats {args.repeats}`. Import = "
        "`read_alignment` + `filter_alignment` + `profile_from_msa` (method hmm, which builds "
        "the model) + `zarr_store.quantise`; builder = `profiles.build_hmm` on alignments parsed "
        "beforehand; these run in worker processes and do not write a store. The command "
        "contender is `protprof import`'s code in one process with its threads, store "
        "written.",
    ]
    record("import: existing alignments vs the builder alone", lines)


if __name__ == "__main__":
    main()
