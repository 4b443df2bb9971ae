"""Planning a cached build: which queries the profile cache lacks, and how they are cut into
jobs. The workflow's `plan_searches` checkpoint runs it (`protprof plan`); the search jobs then
run only the shards it writes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protprof.atomic import Kind, atomic_output
from protprof.queries.fasta import Record, write_fasta
from protprof.queries.ingest import shard_of
from protprof.search.family import family_shards
from protprof.sources import SearchSource
from protprof.store import cache
from protprof.store.file_versions import stamp

log = logging.getLogger(__name__)
PLAN = Kind("a protprof search plan", lambda p: (p / "plan.json").is_file())


@dataclass(frozen=True)
class Plan:
    """The queries to search, by job (`shards`: job number -> indices into the records), and
    the figures `plan.json` records."""

    shards: dict[int, list[int]]
    summary: dict[str, Any]


def plan_searches(
    profiles: cache.ProfileCache,
    records: list[Record],
    source: SearchSource,
    n_shards: int,
) -> Plan:
    """The jobs that search what the cache lacks. `n_shards` sizes the jobs of a full build; an
    update of m of n queries gets the same job size, so fewer jobs (each loads the database
    once): ceil(n_shards * m / n). With reuse, jobs are cut between families (MMseqs2
    clusters), not by a hash, so a family is searched in one job."""
    contexts = source.contexts()
    missing = profiles.missing(contexts, [source.key(r) for r in records])
    n_jobs = min(n_shards, -(-n_shards * len(missing) // max(1, len(records))))
    mode = source.reuse.mode if source.reuse else "none"
    if mode == "none":
        chosen = [shard_of(records[i].sequence, n_jobs) for i in missing]
    else:
        sequences = [records[i].sequence for i in missing]
        chosen = family_shards(sequences, n_jobs, source.threads)
    shards: dict[int, list[int]] = {}
    for i, k in zip(missing, chosen, strict=True):
        shards.setdefault(k, []).append(i)
    reason = profiles.why_missing(contexts[0]) if len(missing) == len(records) else ""
    summary = {
        "queries": len(records),
        "missing": len(missing),
        "shards": sorted(shards),
        "context_key": cache.context_key(contexts[0]),
        "reuse": mode,
        "reason": reason,
    }
    return Plan(shards, summary)


def write_plan(plan: Plan, records: list[Record], out_dir: Path) -> None:
    """`out_dir/shards/NNNN.fasta` (non-empty jobs only) and `out_dir/plan.json`, atomically."""
    with atomic_output(out_dir, PLAN) as tmp:
        (tmp / "shards").mkdir(parents=True)
        for k, rows in plan.shards.items():
            labelled = [
                Record(records[i].id, records[i].sequence, records[i].description) for i in rows
            ]
            write_fasta(tmp / "shards" / f"{k:04d}.fasta", labelled)
        (tmp / "plan.json").write_text(
            json.dumps({**stamp("plan"), **plan.summary}, indent=1) + "\n"
        )
