"""Search stage runners: search queries, build their profiles, write a store part.

`search_shard` and `finish_chunked_shard` are what the workflow's search jobs run; `build` does
the same for a whole query set on one machine, without Snakemake.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protprof import cache
from protprof.alignments import write_alignments
from protprof.fasta import Record
from protprof.ingest import IngestParams, read_shard, split_of
from protprof.profiles import ProfileParams, profile_from_msa
from protprof.search import Database, JackhmmerSearch, QueryResult, SearchParams
from protprof.store import columns, provenance, quantise, write_stores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Profiled:
    """A search result with its profile, computed in the search's worker thread."""

    result: QueryResult
    profile: np.ndarray  # (L, 20) uint8, quantised
    neff: float


def search_records(
    records: list[Record],
    splits: list[int],
    database: Database,
    search: SearchParams,
    profile: ProfileParams,
    threads: int,
    out: Path,
    msa_dir: Path | None = None,
    msa_format: str = "stockholm",
    progress: Callable[[object], None] | None = None,
    extra_attrs: dict[str, Any] | None = None,
) -> Path:
    """Search records, build their profiles and write one store at `out` (atomically)."""
    z = int(database.fingerprint["n_sequences"])
    profiled = JackhmmerSearch(database.block, search, threads, z).run(
        records, progress, lambda r: _profile(r, profile)
    )
    attrs = provenance(database.fingerprint, asdict(search), asdict(profile), extra_attrs)
    return _write(profiled, splits, out, attrs, msa_dir, msa_format)


def _profile(result: QueryResult, params: ProfileParams) -> _Profiled:
    values, neff = profile_from_msa(
        result.msa, result.id, len(result.sequence), params, result.hmm
    )
    return _Profiled(result, quantise(values), neff)


def _write(
    profiled: list[_Profiled],
    splits: list[int],
    out: Path,
    attrs: dict[str, Any],
    msa_dir: Path | None,
    msa_format: str,
) -> Path:
    if msa_dir is not None:
        write_alignments([p.result for p in profiled], msa_dir, msa_format)
    results = [p.result for p in profiled]
    part = columns(
        [r.id for r in results],
        [r.sequence for r in results],
        [p.profile for p in profiled],
        [r.n_hits for r in results],
        [p.neff for p in profiled],
        splits,
    )
    return write_stores(out, [part], attrs)


def finish_chunked_shard(
    shard: Path,
    results: list[QueryResult],
    fingerprint: dict[str, Any],
    search: SearchParams,
    profile: ProfileParams,
    out: Path,
    msa_dir: Path | None = None,
    msa_format: str = "stockholm",
) -> Path:
    """Profiles and the shard store from a chunked search's final alignments."""
    _, splits = read_shard(shard)
    profiled = [_profile(r, profile) for r in results]
    attrs = provenance(fingerprint, asdict(search), asdict(profile), {"database_chunks": True})
    return _write(profiled, splits, out, attrs, msa_dir, msa_format)


def search_shard(
    shard: Path,
    database: Database,
    search: SearchParams,
    profile: ProfileParams,
    threads: int,
    out: Path,
    **kwargs: Any,
) -> Path:
    """Search one shard FASTA written by `ingest` (an empty shard gives an empty store)."""
    records, splits = read_shard(shard)
    return search_records(records, splits, database, search, profile, threads, out, **kwargs)


def build(
    records: list[Record],
    database: Database,
    out: Path,
    threads: int,
    ingest_params: IngestParams,
    search: SearchParams,
    profile: ProfileParams,
    **kwargs: Any,
) -> Path:
    """Search, profile and store records from `select_records` on one machine: what the
    workflow does, unsharded."""
    splits = [split_of(r.sequence, ingest_params) for r in records]
    extra = {"ingest": asdict(ingest_params)}
    return search_records(
        records, splits, database, search, profile, threads, out, extra_attrs=extra, **kwargs
    )


def search_missing(
    profiles: cache.ProfileCache,
    records: list[Record],
    splits: list[int],
    database: Database,
    search: SearchParams,
    profile: ProfileParams,
    threads: int,
    work: Path,
    progress: Callable[[object], None] | None = None,
) -> int:
    """Search the records without a cache entry and publish their profiles; returns how many
    were searched. `work` is a temporary shard store, removed once published."""
    ctx = cache.settings_context(database.fingerprint, search, profile)
    missing = profiles.missing(ctx, [r.sequence for r in records])
    why = f" ({profiles.why_missing(ctx)})" if records and len(missing) == len(records) else ""
    log.info(
        "%d of %d queries have no cache entry for these settings: searching them%s",
        len(missing),
        len(records),
        why,
    )
    if missing:
        shard = work
        try:
            search_records(
                [records[i] for i in missing],
                [splits[i] for i in missing],
                database,
                search,
                profile,
                threads,
                shard,
                progress=progress,
            )
            profiles.publish(shard)
        finally:
            shutil.rmtree(shard, ignore_errors=True)
    return len(missing)


def build_cached(
    records: list[Record],
    database: Database,
    out: Path,
    threads: int,
    ingest_params: IngestParams,
    search: SearchParams,
    profile: ProfileParams,
    cache_path: Path,
    progress: Callable[[object], None] | None = None,
) -> Path:
    """`build` through the profile cache: search only what it lacks, then assemble the store
    of all records from it (arrays equal to `build`'s)."""
    splits = [split_of(r.sequence, ingest_params) for r in records]
    profiles = cache.ProfileCache(cache_path)
    # The temporary shard store is named like the output's temporaries, so a killed build's
    # leftover is cleared when the output is next claimed (`_atomic._recover`).
    work = out.with_name(f".{out.name}.tmp-search")
    searched = search_missing(
        profiles, records, splits, database, search, profile, threads, work, progress
    )
    attrs = provenance(
        database.fingerprint, asdict(search), asdict(profile), {"ingest": asdict(ingest_params)}
    )
    ctx = cache.settings_context(database.fingerprint, search, profile)
    return cache.assemble(
        profiles,
        [r.id for r in records],
        [r.sequence for r in records],
        splits,
        ctx,
        out,
        attrs,
        searched,
    )
