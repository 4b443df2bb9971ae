"""Search records and write their store: the one path from queries to a searched store part.

The stage runners (`stages`) and the cache's `SearchSource` call `search_records`; neither
imports the other for it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from protprof.alignments.filters import NO_FILTERS, FilterParams
from protprof.alignments.folder import MsaOutput, alignment_bytes, write_alignment_files
from protprof.alignments.profiles import Profiled, ProfileParams, profile_result
from protprof.atomic import require_space
from protprof.errors import ConfigError
from protprof.jackhmmer import Database, JackhmmerSearch, QueryResult, SearchParams
from protprof.queries.fasta import Record
from protprof.search.family import ReuseParams, search_with_reuse
from protprof.search.journal import Entry, Journal, open_journal, settings
from protprof.store import cache
from protprof.store.reuse_records import per_query_summary
from protprof.store.zarr_store import columns, provenance, quantise, store_bytes, write_stores

log = logging.getLogger(__name__)


def check_filters(filters: FilterParams, reuse: ReuseParams | None) -> None:
    """Refuse filters where they are not applied the same way to every profile."""
    if filters.active and reuse is not None and reuse.mode != "none":
        raise ConfigError(
            "alignment filters do not combine with search reuse (members' profiles come from "
            "their family's alignment, which the filters would not see); use one or the other"
        )


def search_provenance(
    fingerprint: dict[str, Any],
    search: SearchParams,
    profile: ProfileParams,
    filters: FilterParams,
) -> dict[str, Any]:
    """The provenance of searched profiles; the filters are recorded only when on, so a store
    built without them is the same as before they existed."""
    attrs = provenance(fingerprint, asdict(search), asdict(profile))
    if filters.active:
        attrs["filters"] = asdict(filters)
    return attrs


def search_records(
    records: list[Record],
    splits: list[int],
    database: Database,
    search: SearchParams,
    profile: ProfileParams,
    threads: int,
    out: Path,
    msa_dir: Path | None = None,
    msa_format: str = MsaOutput.msa_format,
    progress: Callable[[object], None] | None = None,
    extra_attrs: dict[str, Any] | None = None,
    reuse: ReuseParams | None = None,
    filters: FilterParams = NO_FILTERS,
    journal: Path | None = None,
    keep_journal: bool = False,
    resumed: Callable[[int], None] | None = None,
) -> Path:
    """Search records, build their profiles and write one store at `out` (atomically).
    With `reuse` (pool or family), families share whole-database searches (`family.py`) and
    the store records each row's role (`cache.ROLES`); either way `attrs["reuse"]` says how
    many whole-database searches ran. `filters` (off by default) choose the rows of each final
    alignment that build its profile; they do not combine with reuse.

    With `journal` (a folder, `journal.journal_path(out)` for a job's output), each finished
    query is made durable there as the search runs, queries an earlier killed run journaled
    are not searched again (`resumed` gets their count), and the journal is removed once `out`
    is written (unless `keep_journal`: the caller removes it once `out` is used up). Reuse
    runs without one: its searches serve whole families."""
    check_filters(filters, reuse)
    size = store_bytes(records)  # the journal holds about as much as the store
    require_space([(out, size), *([(journal, size)] if journal else [])], "nothing was searched")
    attrs = {
        **search_provenance(database.fingerprint, search, profile, filters),
        **(extra_attrs or {}),
    }
    keep = msa_format if msa_dir is not None else None
    if reuse is not None and reuse.mode != "none":
        if journal is not None:
            log.info(
                "reuse %s: no journal is kept (a family's searches serve all its members); a "
                "killed job searches its queries again",
                reuse.mode,
            )
        if reuse.mode == "family" and msa_dir is not None:
            log.warning(
                "reuse family: members are aligned to no search of their own; %s gets the "
                "representatives' alignments only",
                msa_dir,
            )
        outcome = search_with_reuse(records, database, search, profile, reuse, threads, progress)
        attrs["reuse"] = outcome.summary
        entries = [store_entry(p, keep) for p in outcome.profiled]
        return write_entries(entries, splits, out, attrs, msa_dir, msa_format, outcome.roles)
    attrs["reuse"] = per_query_summary(len(records))
    wanted = settings(database.fingerprint, search, profile, filters, keep)
    with open_journal(journal, wanted) as held:
        entries = _search_journaled(
            records,
            database,
            search,
            threads,
            held,
            resumed,
            progress,
            lambda r: store_entry(profile_result(r, profile, filters), keep),
        )
        written = write_entries(entries, splits, out, attrs, msa_dir, msa_format)
        if held is not None and not keep_journal:
            held.remove()
    return written


def _search_journaled(
    records: list[Record],
    database: Database,
    search: SearchParams,
    threads: int,
    journal: Journal | None,
    resumed: Callable[[int], None] | None,
    progress: Callable[[object], None] | None,
    make: Callable[[QueryResult], Entry],
) -> list[Entry]:
    """Every record's entry, in order: from the journal, or searched (and journaled)."""
    done = journal.finished(records) if journal is not None else {}
    todo = [r for i, r in enumerate(records) if i not in done]
    if journal is not None:
        log.info(
            "journal %s: %d of %d queries finished by an earlier run; searching %d",
            journal.path,
            len(done),
            len(records),
            len(todo),
        )
    if resumed is not None and done:
        resumed(len(done))

    def finish(result: QueryResult) -> Entry:
        entry = make(result)
        if journal is not None:
            journal.append(entry)
        return entry

    z = int(database.fingerprint["n_sequences"])
    searched = iter(
        JackhmmerSearch(database.block, search, threads, z).run(todo, progress, finish)
    )
    return [done[i] if i in done else next(searched) for i in range(len(records))]


def store_entry(p: Profiled, keep: str | None) -> Entry:
    """A profile as the store and the alignment folder take it (quantised; alignment bytes
    when `keep` names a format and the profile came from a search of its own)."""
    alignment = None
    if keep is not None and p.result is not None:
        alignment = alignment_bytes(p.result, keep)
    return Entry(p.id, p.sequence, quantise(p.values), p.n_hits, p.neff, alignment)


def write_entries(
    entries: list[Entry],
    splits: list[int],
    out: Path,
    attrs: dict[str, Any],
    msa_dir: Path | None,
    msa_format: str,
    roles: np.ndarray | None = None,
) -> Path:
    """Write one store of `entries` at `out` (atomically); their alignments to `msa_dir`;
    with reuse, each row's role (`cache.ROLES`)."""
    if msa_dir is not None:
        # Family targets come from no alignment of the member's own: none is kept for them.
        files = [(e.id, e.alignment) for e in entries if e.alignment is not None]
        write_alignment_files(files, msa_dir, msa_format)
    part = columns(
        [e.id for e in entries],
        [e.sequence for e in entries],
        [e.profile for e in entries],
        [e.n_hits for e in entries],
        [e.neff for e in entries],
        splits,
    )
    extra = None
    if roles is not None:
        buffer = io.BytesIO()
        np.save(buffer, roles)
        extra = {cache.ROLES: buffer.getvalue()}
    return write_stores(out, [part], attrs, extra_files=extra)
