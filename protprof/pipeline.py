"""Search stage runners: search queries, build their profiles, write a store part.

`search_shard` and `finish_chunked_shard` are what the workflow's search jobs run; `build` does
the same for a whole query set on one machine, without Snakemake.
"""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from protprof import cache
from protprof._atomic import require_space
from protprof.alignments import write_alignments
from protprof.fasta import Record
from protprof.ingest import IngestParams, read_shard, split_of
from protprof.profiles import Profiled, ProfileParams, profile_result
from protprof.reuse import ReuseParams, per_query_summary, run_summary, search_with_reuse
from protprof.search import Database, JackhmmerSearch, QueryResult, SearchParams
from protprof.store import columns, open_store, provenance, quantise, write_stores

log = logging.getLogger(__name__)
# A store's size, first estimate: tokens and profiles are stored uncompressed (21 bytes per
# residue); offsets, ids and the per-sequence arrays add some per sequence.
STORE_BYTES_PER_RESIDUE = 21
STORE_BYTES_PER_SEQUENCE = 48


def store_bytes(records: Sequence[Record]) -> int:
    """About how many bytes a store of these records takes on disk."""
    residues = sum(len(r.sequence) for r in records)
    return STORE_BYTES_PER_RESIDUE * residues + STORE_BYTES_PER_SEQUENCE * len(records)


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
    reuse: ReuseParams | None = None,
) -> Path:
    """Search records, build their profiles and write one store at `out` (atomically).
    With `reuse` (pool or family), families share whole-database searches (`reuse.py`) and
    the store records each row's role (`cache.ROLES`); either way `attrs["reuse"]` says how
    many whole-database searches ran."""
    require_space([(out, store_bytes(records))], "nothing was searched")
    attrs = provenance(database.fingerprint, asdict(search), asdict(profile), extra_attrs)
    if reuse is not None and reuse.mode != "none":
        if reuse.mode == "family" and msa_dir is not None:
            log.warning(
                "reuse family: members are aligned to no search of their own; %s gets the "
                "representatives' alignments only",
                msa_dir,
            )
        outcome = search_with_reuse(records, database, search, profile, reuse, threads, progress)
        attrs["reuse"] = outcome.summary
        return _write(outcome.profiled, splits, out, attrs, msa_dir, msa_format, outcome.roles)
    attrs["reuse"] = per_query_summary(len(records))
    z = int(database.fingerprint["n_sequences"])
    profiled = JackhmmerSearch(database.block, search, threads, z).run(
        records, progress, lambda r: profile_result(r, profile)
    )
    return _write(profiled, splits, out, attrs, msa_dir, msa_format)


def _write(
    profiled: list[Profiled],
    splits: list[int],
    out: Path,
    attrs: dict[str, Any],
    msa_dir: Path | None,
    msa_format: str,
    roles: np.ndarray | None = None,
) -> Path:
    if msa_dir is not None:
        # Family targets come from no alignment of the member's own: none is kept for them.
        results = [p.result for p in profiled if p.result is not None]
        write_alignments(results, msa_dir, msa_format)
    part = columns(
        [p.id for p in profiled],
        [p.sequence for p in profiled],
        [quantise(p.values) for p in profiled],
        [p.n_hits for p in profiled],
        [p.neff for p in profiled],
        splits,
    )
    extra = None
    if roles is not None:
        buffer = io.BytesIO()
        np.save(buffer, roles)
        extra = {cache.ROLES: buffer.getvalue()}
    return write_stores(out, [part], attrs, extra_files=extra)


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
    profiled = [profile_result(r, profile) for r in results]
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
    reuse: ReuseParams | None = None,
    also: Sequence[tuple[Path, int]] = (),
) -> tuple[int, dict[str, Any] | None]:
    """Search the records without a cache entry and publish their profiles; returns how many
    were searched and, with reuse, its figures. `work` is a temporary shard store, removed
    once published. Before any search, the cache is claimed (writable, lockable, room for
    the new entries) and there must be room for `also` ((path, bytes): the caller's
    outputs)."""
    contexts = cache.contexts(database.fingerprint, search, profile, reuse)
    missing = profiles.missing(contexts, [r.sequence for r in records])
    why = (
        f" ({profiles.why_missing(contexts[0])})"
        if records and len(missing) == len(records)
        else ""
    )
    log.info(
        "%d of %d queries have no cache entry for these settings: searching them%s",
        len(missing),
        len(records),
        why,
    )
    summary = None
    if missing:
        size = store_bytes([records[i] for i in missing])
        # A family build publishes its representatives twice (`ProfileCache.publish`).
        copies = 2 if reuse is not None and reuse.mode == "family" else 1
        profiles.claim([(work, size), (profiles.path / "segments", copies * size), *also])
    else:
        require_space(also, "nothing was written")
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
                reuse=reuse,
            )
            summary = open_store(shard).attrs.get("reuse")
            profiles.publish(shard)
        finally:
            shutil.rmtree(shard, ignore_errors=True)
    return len(missing), summary


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
    reuse: ReuseParams | None = None,
) -> Path:
    """`build` through the profile cache: search only what it lacks, then assemble the store
    of all records from it (arrays equal to `build`'s)."""
    splits = [split_of(r.sequence, ingest_params) for r in records]
    profiles = cache.ProfileCache(cache_path)
    # The temporary shard store is named like the output's temporaries, so a killed build's
    # leftover is cleared when the output is next written (`_atomic._recover`).
    work = out.with_name(f".{out.name}.tmp-search")
    searched, summary = search_missing(
        profiles,
        records,
        splits,
        database,
        search,
        profile,
        threads,
        work,
        progress,
        reuse,
        also=[(out, store_bytes(records))],
    )
    attrs = provenance(
        database.fingerprint, asdict(search), asdict(profile), {"ingest": asdict(ingest_params)}
    )
    attrs["reuse"] = run_summary(reuse.mode if reuse else "none", [summary], searched)
    return cache.assemble(
        profiles,
        [r.id for r in records],
        [r.sequence for r in records],
        splits,
        cache.contexts(database.fingerprint, search, profile, reuse),
        out,
        attrs,
        searched,
    )
