"""Where a query's final alignment comes from: the seam between the sources of alignments and
everything after them (profile, store, cache, planning, assembly).

A source turns items (a query record, or an alignment read from a file; anything with `id` and
`sequence`) into profiles in a shard store, and says what those profiles depend on:

- `contexts()`: the cache contexts its entries live in, best first (`cache.py`);
- `key(item)`: what an entry is keyed by within its context (the sequence for a search; the
  sequence and the file's SHA-256 for an import);
- `write(items, splits, out, progress)`: profile the items and write one shard store, whose
  provenance lets `cache.ProfileCache.publish` file its entries under `contexts()[0]`;
- `store_attrs(built, shards)`: the provenance of a store assembled from the cache.

Two sources exist: `SearchSource` (jackhmmer against a database: plain, chunked, with reuse)
and `FileSource` (alignment files, `importer.py`). A third (an MMseqs2-prefiltered search,
say) is one more class here; `build_cached` and the cache need no change.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from protprof.alignments.files import ImportParams
from protprof.alignments.filters import NO_FILTERS, FilterParams
from protprof.alignments.importer import Item, import_provenance, write_imported
from protprof.alignments.profiles import ProfileParams
from protprof.atomic import require_space
from protprof.jackhmmer import Database, SearchParams
from protprof.search.family import ReuseParams
from protprof.search.journal import journal_path, remove_journal
from protprof.search.to_store import check_filters, search_provenance, search_records
from protprof.store import cache
from protprof.store.reuse_records import run_summary
from protprof.store.zarr_store import open_store, store_bytes

log = logging.getLogger(__name__)


class Query(Protocol):
    """What a source profiles: a query record or an imported alignment."""

    @property
    def id(self) -> str:
        """The ID the store gives it."""
        ...

    @property
    def sequence(self) -> str:
        """The (cropped) query sequence."""
        ...


class AlignmentSource(Protocol):
    """See the module docstring."""

    @property
    def name(self) -> str:
        """For logs and temporary names: "search" or "import"."""
        ...

    @property
    def copies(self) -> int:
        """How many times a publish writes each entry (reuse family: 2)."""
        ...

    def contexts(self) -> list[dict[str, Any]]:
        """The cache contexts of its profiles, best first."""
        ...

    def key(self, item: Any) -> str:
        """What an item's entry is keyed by within its context."""
        ...

    def write(
        self,
        items: Sequence[Any],
        splits: Sequence[int],
        out: Path,
        progress: Callable[[object], None] | None = None,
        journal: Path | None = None,
    ) -> Path:
        """Profile the items and write them as one shard store at `out`; with `journal`, make
        each finished item durable there and skip those an earlier run finished (the caller
        removes it once `out` is used up)."""
        ...

    def store_attrs(self, built: int, shards: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The provenance of a store assembled from the cache."""
        ...


@dataclass
class SearchSource:
    """jackhmmer searches against `database` (`to_store.search_records`)."""

    fingerprint: dict[str, Any]  # of the database: what the cache keys depend on
    search: SearchParams
    profile: ProfileParams
    threads: int = 1
    reuse: ReuseParams | None = None
    filters: FilterParams = NO_FILTERS
    database: Database | None = None  # loaded: needed to search, not to assemble
    name: str = "search"

    def __post_init__(self) -> None:
        check_filters(self.filters, self.reuse)

    @property
    def copies(self) -> int:
        """A family build publishes its representatives twice (`ProfileCache.publish`)."""
        return 2 if self.reuse is not None and self.reuse.mode == "family" else 1

    def contexts(self) -> list[dict[str, Any]]:
        """The per-query context, then with reuse the members' (`cache.contexts`)."""
        return cache.contexts(
            self.fingerprint, self.search, self.profile, self.reuse, self.filters
        )

    def key(self, item: Query) -> str:
        """The sequence."""
        return item.sequence

    def write(
        self,
        items: Sequence[Any],
        splits: Sequence[int],
        out: Path,
        progress: Callable[[object], None] | None = None,
        journal: Path | None = None,
    ) -> Path:
        """Search, profile and write the items (`to_store.search_records`), journaled."""
        if self.database is None:
            raise TypeError("SearchSource.write needs the loaded database")
        return search_records(
            list(items),
            list(splits),
            self.database,
            self.search,
            self.profile,
            self.threads,
            out,
            progress=progress,
            reuse=self.reuse,
            filters=self.filters,
            journal=journal,
            keep_journal=True,
        )

    def store_attrs(self, built: int, shards: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The search provenance, with reuse's figures."""
        attrs = search_provenance(self.fingerprint, self.search, self.profile, self.filters)
        mode = self.reuse.mode if self.reuse else "none"
        attrs["reuse"] = run_summary(mode, [s.get("reuse") for s in shards], built)
        return attrs


@dataclass
class FileSource:
    """Alignment files read by `importer.read_alignments`."""

    params: ImportParams
    profile: ProfileParams
    filters: FilterParams = NO_FILTERS
    threads: int = 1
    name: str = "import"
    copies: int = 1

    @property
    def provenance(self) -> dict[str, Any]:
        """The reader, filter and profile settings (`importer.import_provenance`)."""
        return import_provenance(self.params, self.filters, self.profile)

    def contexts(self) -> list[dict[str, Any]]:
        """The import context (`cache.import_context`)."""
        return [cache.import_context(self.provenance)]

    def key(self, item: Item) -> str:
        """The sequence and its file(s)' SHA-256 (`cache.import_key`)."""
        return cache.import_key(item.sequence, item.sha256)

    def write(
        self,
        items: Sequence[Any],
        splits: Sequence[int],
        out: Path,
        progress: Callable[[object], None] | None = None,
        journal: Path | None = None,
    ) -> Path:
        """Profile the alignments and write them with `sources.tsv` (no journal: reading and
        profiling an alignment again is cheap)."""
        attrs = {"import": self.provenance}
        return write_imported(
            items, splits, out, attrs, self.filters, self.profile, self.threads, progress
        )

    def store_attrs(self, built: int, shards: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The import provenance."""
        return {"import": self.provenance}


def fill_missing(
    profiles: cache.ProfileCache,
    items: Sequence[Any],
    splits: Sequence[int],
    source: AlignmentSource,
    work: Path,
    progress: Callable[[object], None] | None = None,
    also: Sequence[tuple[Path, int]] = (),
    journal: Path | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Profile the items without a cache entry and publish them; returns how many were built
    and the attrs of the shard store that was published (none when nothing was missing).
    `work` is a temporary shard store, removed once published. Before any work, the cache is
    claimed (writable, lockable, room for the new entries) and there must be room for `also`
    ((path, bytes): the caller's outputs). With `journal`, a search makes each finished item
    durable there; the journal is removed once the items are published."""
    contexts = source.contexts()
    missing = profiles.missing(contexts, [source.key(item) for item in items])
    why = f" ({profiles.why_missing(contexts[0])})" if items and len(missing) == len(items) else ""
    verb = "searching" if source.name == "search" else "building"
    log.info(
        "%d of %d queries have no cache entry for these settings: %s them%s",
        len(missing),
        len(items),
        verb,
        why,
    )
    if not missing:
        require_space(also, "nothing was written")
        return 0, []
    size = store_bytes([items[i] for i in missing])
    profiles.claim([(work, size), (profiles.path / "segments", source.copies * size), *also])
    try:
        todo = [items[i] for i in missing]
        source.write(todo, [splits[i] for i in missing], work, progress, journal)
        attrs = dict(open_store(work).attrs)
        profiles.publish(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if journal is not None:
        remove_journal(journal)
    return len(missing), [attrs]


def assemble_cached(
    profiles: cache.ProfileCache,
    items: Sequence[Any],
    splits: Sequence[int],
    source: AlignmentSource,
    out: Path,
    built: int,
    shards: Sequence[dict[str, Any]],
    extra_attrs: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """The store of `items` (in this order) from their cache entries: the one assembly path of
    `build --cache`, `import --cache` and the workflow's assemble job."""
    attrs = {**source.store_attrs(built, shards), **(extra_attrs or {})}
    if source.name == "import":
        attrs["source_counts"] = {"imported": len(items), "searched": 0}
    return cache.assemble(
        profiles,
        [item.id for item in items],
        [item.sequence for item in items],
        splits,
        source.contexts(),
        out,
        attrs,
        built,
        keys=[source.key(item) for item in items],
        extra_files=extra_files,
    )


def build_cached(
    items: Sequence[Any],
    splits: Sequence[int],
    source: AlignmentSource,
    out: Path,
    cache_path: Path,
    progress: Callable[[object], None] | None = None,
    extra_attrs: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Profile through the cache: build only what it lacks, then assemble the store of all
    items from it (arrays equal to those of a build without the cache)."""
    profiles = cache.ProfileCache(cache_path)
    # The temporary shard store is named like the output's temporaries, so a killed build's
    # leftover is cleared when the output is next written (`atomic._recover`).
    work = out.with_name(f".{out.name}.tmp-{source.name}")
    # The journal is named after the output, not the temporary shard store: it must outlive
    # a killed build, whose temporaries the next write clears.
    journal = journal_path(out) if source.name == "search" else None
    built, shards = fill_missing(
        profiles, items, splits, source, work, progress, [(out, store_bytes(items))], journal
    )
    return assemble_cached(
        profiles, items, splits, source, out, built, shards, extra_attrs, extra_files
    )
