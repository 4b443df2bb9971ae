"""Stage runners: search queries (or read their alignments), build their profiles, write a
store part.

`search_shard` and `finish_chunked_shard` are what the workflow's search jobs run; `build` does
the same for a whole query set on one machine, without Snakemake; `import_alignments` makes a
store from alignment files.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protprof.alignments.files import PREFER
from protprof.alignments.filters import NO_FILTERS, FilterParams
from protprof.alignments.folder import MsaOutput
from protprof.alignments.importer import Item, read_alignments, sources_file, write_imported
from protprof.alignments.profiles import ProfileParams, profile_result
from protprof.atomic import require_space
from protprof.errors import ConfigError, StoreError
from protprof.jackhmmer import Database, QueryResult, SearchParams
from protprof.queries.fasta import Record
from protprof.queries.ingest import IngestParams, assign_splits, ingest_attrs, read_shard
from protprof.search.to_store import (
    search_provenance,
    search_records,
    store_entry,
    write_entries,
)
from protprof.sources import FileSource, build_cached
from protprof.store.sources_table import SOURCES_FILE, Source, format_sources, read_sources
from protprof.store.zarr_store import (
    StoreData,
    open_store,
    store_bytes,
    store_sequences,
    subset,
    write_stores,
)

log = logging.getLogger(__name__)


def finish_chunked_shard(
    shard: Path,
    results: list[QueryResult],
    fingerprint: dict[str, Any],
    search: SearchParams,
    profile: ProfileParams,
    out: Path,
    msa_dir: Path | None = None,
    msa_format: str = MsaOutput.msa_format,
    filters: FilterParams = NO_FILTERS,
) -> Path:
    """Profiles and the shard store from a chunked search's final alignments."""
    _, splits = read_shard(shard)
    keep = msa_format if msa_dir is not None else None
    entries = [store_entry(profile_result(r, profile, filters), keep) for r in results]
    attrs = {**search_provenance(fingerprint, search, profile, filters), "database_chunks": True}
    return write_entries(entries, splits, out, attrs, msa_dir, msa_format)


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
    shard: tuple[int, int] | None = None,
    guard_data: Path | None = None,
    guard_evalue: float = 1e-3,
) -> Path:
    """Read every alignment `inputs` hold, profile them and write one store at `out` (through
    the profile cache, with `cache_path`: only alignments it lacks are profiled). `on_read`
    gets the number of distinct sequences read, before any profile is built."""
    read = read_alignments(inputs, source.params, ingest_params, source.threads, shard)
    items = read.items
    guard_report = None
    if guard_data is not None:
        items, guard_report = guard_items(items, guard_data, guard_evalue, source.threads)
    splits = assign_splits([item.sequence for item in items], ingest_params, source.threads)
    if on_read is not None:
        on_read(len(items))
    extra = {
        "ingest": ingest_attrs(ingest_params),
        "import_counts": {
            "imported": len(items),
            "skipped_by_length": read.skipped,
            "chains_without_picked_file": len(read.missing),
            "repeated": read.repeated,
        },
    }
    if guard_report is not None:
        extra["guard"] = guard_report
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


def guard_items(
    items: list[Item], data: Path, evalue: float, threads: int
) -> tuple[list[Item], dict[str, Any]]:
    """The leakage guard on imported alignments' queries, as on searched queries: the items
    homologous to no downstream test sequence, and the guard's report."""
    from protprof.evaluation.leakage import evaluation_test_sequences, guard

    records = [Record(item.id, item.sequence) for item in items]
    result = guard(records, evaluation_test_sequences(data), evalue, threads)
    kept = {r.id for r in result.kept}
    report = result.report()
    log.info(
        "leakage guard: dropped %d of %d imported alignments (phmmer E <= %g against %d test "
        "sequences)",
        report["n_dropped"],
        report["n_queries"],
        evalue,
        result.n_test_sequences,
    )
    return [item for item in items if item.id in kept], report


def combine_sources(
    imported: Sequence[Path],
    searched: Path | None,
    out: Path,
    ingest_params: IngestParams,
    prefer: str = "alignment",
) -> Path:
    """One store of the import jobs' stores and, if given, the searched store: the workflow's
    last store step when `alignments:` is configured.

    A sequence in several import stores is kept once (the first job's). A sequence both
    imported and searched keeps the imported profile (`prefer="alignment"`) or the searched
    one (`"search"`); the workflow's plan leaves it out of the search in the first case, so
    this drop is a safety net. Splits are assigned again over all sequences by
    `ingest_params`, so imported and searched sequences follow one rule.

    Raises:
        ConfigError: an unknown `prefer`.
        StoreError: no import store, import stores made with different settings, or an ID
            that names two different sequences.
    """
    if prefer not in PREFER:
        raise ConfigError(f"prefer must be one of {PREFER}, got {prefer!r}")
    stores = [open_store(p) for p in imported]
    if not stores:
        raise StoreError("combine: no import store given")
    settings = stores[0].attrs["import"]
    for store in stores[1:]:
        if store.attrs.get("import") != settings:
            raise StoreError(
                f"{store.path}: imported with other settings than {stores[0].path}; "
                "import every job with one configuration"
            )
    # Every imported row, the first of each sequence only, with its source files.
    parts: list[StoreData] = []
    sources: list[list[Source]] = []  # per part, per row
    seen: set[str] = set()
    repeated = 0
    for store in stores:
        data = store.read_all()
        table = read_sources(store)
        rows = []
        for i, sequence in enumerate(store_sequences(data)):
            if sequence in seen:
                repeated += 1
            else:
                seen.add(sequence)
                rows.append(i)
        parts.append(subset(data, np.array(rows, np.int64)))
        sources.append([table[data.ids[i]] for i in rows])
    attrs: dict[str, Any] = {"import": settings}
    both = 0
    if searched is not None:
        store = open_store(searched)
        data = store.read_all()
        searched_sequences = store_sequences(data)
        given_both = np.array([seq in seen for seq in searched_sequences], bool)
        both = int(given_both.sum())
        if prefer == "alignment":
            data = subset(data, np.flatnonzero(~given_both))
        else:
            drop = {seq for seq, b in zip(searched_sequences, given_both, strict=True) if b}
            for k, part in enumerate(parts):
                rows = [i for i, seq in enumerate(store_sequences(part)) if seq not in drop]
                parts[k] = subset(part, np.array(rows, np.int64))
                sources[k] = [sources[k][i] for i in rows]
        parts.append(data)
        kept = ("database", "search", "profile", "filters", "reuse", "cache", "cache_context")
        attrs.update({k: v for k, v in store.attrs.items() if k in kept})
    n_searched = len(parts[-1].ids) if searched is not None else 0
    n_imported = sum(len(p.ids) for p in parts) - n_searched
    ids = [i for part in parts for i in part.ids]
    if len(set(ids)) < len(ids):
        twice = next(i for i, n in Counter(ids).items() if n > 1)
        raise StoreError(
            f"combine: ID {twice!r} names two different sequences (an alignment file's or "
            "chain's name and a query's ID); rename one"
        )
    sequences = [seq for part in parts for seq in store_sequences(part)]
    splits = assign_splits(sequences, ingest_params)
    start = 0
    for part in parts:
        part.split[:] = splits[start : start + len(part.ids)]
        start += len(part.ids)
    attrs.update(
        {
            "ingest": ingest_attrs(ingest_params),
            "source_counts": {"imported": n_imported, "searched": n_searched},
            "combined": {
                "prefer": prefer,
                "given_both_ways": both,
                "repeated_in_import_jobs": repeated,
                "import_jobs": len(stores),
            },
        }
    )
    log.info(
        "store %s: %d profiles imported, %d searched; %d sequences were given both as a query "
        "and as an alignment (the %s was used); %d came from more than one import job",
        out,
        n_imported,
        n_searched,
        both,
        prefer,
        repeated,
    )
    rows_sources = [source for part_sources in sources for source in part_sources]
    listing = format_sources(rows_sources, splits[:n_imported])
    return write_stores(out, parts, attrs, extra_files={SOURCES_FILE: listing})
