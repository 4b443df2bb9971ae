"""Stage runners: search queries (or read their alignments), build their profiles, write a
store part.

`search_shard` and `finish_chunked_shard` are what the workflow's search jobs run; `build` does
the same for a whole query set on one machine, without Snakemake; `import_alignments` makes a
store from alignment files.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from protprof import cache
from protprof._atomic import require_space
from protprof.alignments import write_alignments
from protprof.fasta import Record
from protprof.importer import SOURCES_FILE, read_alignments, sources_file, write_imported
from protprof.ingest import IngestParams, assign_splits, ingest_attrs, read_shard
from protprof.msa_filter import NO_FILTERS, FilterParams
from protprof.profiles import Profiled, ProfileParams, profile_result
from protprof.reuse import ReuseParams, per_query_summary, search_with_reuse
from protprof.search import Database, JackhmmerSearch, QueryResult, SearchParams
from protprof.sources import (
    FileSource,
    build_cached,
    check_filters,
    search_provenance,
    store_bytes,
)
from protprof.store import columns, quantise, write_stores

log = logging.getLogger(__name__)


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
    filters: FilterParams = NO_FILTERS,
) -> Path:
    """Search records, build their profiles and write one store at `out` (atomically).
    With `reuse` (pool or family), families share whole-database searches (`reuse.py`) and
    the store records each row's role (`cache.ROLES`); either way `attrs["reuse"]` says how
    many whole-database searches ran. `filters` (off by default) choose the rows of each final
    alignment that build its profile; they do not combine with reuse."""
    check_filters(filters, reuse)
    require_space([(out, store_bytes(records))], "nothing was searched")
    attrs = {
        **search_provenance(database.fingerprint, search, profile, filters),
        **(extra_attrs or {}),
    }
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
        records, progress, lambda r: profile_result(r, profile, filters)
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
    filters: FilterParams = NO_FILTERS,
) -> Path:
    """Profiles and the shard store from a chunked search's final alignments."""
    _, splits = read_shard(shard)
    profiled = [profile_result(r, profile, filters) for r in results]
    attrs = {**search_provenance(fingerprint, search, profile, filters), "database_chunks": True}
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
    splits = assign_splits([r.sequence for r in records], ingest_params, threads)
    extra = {"ingest": ingest_attrs(ingest_params)}
    return search_records(
        records, splits, database, search, profile, threads, out, extra_attrs=extra, **kwargs
    )


def import_alignments(
    inputs: Sequence[str | Path],
    out: Path,
    source: FileSource,
    ingest_params: IngestParams,
    cache_path: Path | None = None,
    progress: Callable[[object], None] | None = None,
    on_read: Callable[[int], None] | None = None,
) -> Path:
    """Read every alignment `inputs` hold, profile them and write one store at `out` (through
    the profile cache, with `cache_path`: only alignments it lacks are profiled). `on_read`
    gets the number of distinct sequences read, before any profile is built."""
    read = read_alignments(inputs, source.params, ingest_params, source.threads)
    items = read.items
    splits = assign_splits([item.sequence for item in items], ingest_params, source.threads)
    if on_read is not None:
        on_read(len(items))
    extra = {
        "ingest": asdict(ingest_params),
        "import_counts": {
            "imported": len(items),
            "skipped_by_length": read.skipped,
            "chains_without_picked_file": len(read.missing),
            "repeated": read.repeated,
        },
    }
    files = {SOURCES_FILE: sources_file(items, splits)}
    log.info(
        "import: %d alignments read (%d skipped by the length limits, %d repeated sequences, "
        "%d chains without a picked file)",
        len(items),
        read.skipped,
        len(read.repeated),
        len(read.missing),
    )
    if cache_path is not None:
        return build_cached(items, splits, source, out, cache_path, progress, extra, files)
    require_space([(out, store_bytes(items))], "nothing was imported")
    attrs = {**source.store_attrs(len(items), []), **extra}
    return write_imported(
        items, splits, out, attrs, source.filters, source.profile, source.threads, progress
    )
