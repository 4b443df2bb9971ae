"""The profile cache: every query's profile kept under a key of everything that defines it, so a
changed query set searches only the sequences it has never seen with these settings.

Layout of a cache folder (it may be shared by several workflows at once)::

    cache.json                          marks the folder as a protprof cache
    segments/<context>-<id>.zarr        append-only segments, each a protprof store whose `ids`
                                        are entry keys

An entry's key is a hash of its (cropped) sequence and its *context*: the database's fingerprint
(checksum and counts, not its path), every search and profile parameter with Z, the pyhmmer
version and protprof's profile format. A changed context gives new keys, so a stale entry can
never be found; an entry is never searched again while its key holds.

Segments are written under a temporary name and renamed into place (see `_atomic`), so readers
and concurrent writers only ever see complete segments, and a killed writer leaves nothing that
looks complete. The index is the segments themselves: a lookup reads the `ids` of the segments
of one context (their file names start with the context key), so no shared index file has to be
updated under a lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protprof._atomic import Kind, atomic_output
from protprof.alphabet import N_STANDARD, encode
from protprof.errors import StoreError
from protprof.store import CHUNK_ROWS, ProfileStore, StoreData, open_store, write_stores

log = logging.getLogger(__name__)
FORMAT = "protprof.cache"
FORMAT_VERSION = "1.0"
# Bump when what a stored profile means changes (quantisation, builder settings, n_hits).
PROFILE_FORMAT = 2
MARKER = "cache.json"


def context(
    database: dict[str, Any], search: dict[str, Any], profile: dict[str, Any], pyhmmer_version: str
) -> dict[str, Any]:
    """Everything besides the sequence that defines a profile. The database enters by content
    (checksum and counts), so the same file at another path hits the same entries."""
    return {
        "database": {k: database[k] for k in ("sha256", "n_sequences", "n_residues")},
        "search": {**search, "Z": database["n_sequences"]},
        "profile": profile,
        "pyhmmer": pyhmmer_version,
        "profile_format": PROFILE_FORMAT,
    }


def context_of_store(store: ProfileStore) -> dict[str, Any]:
    """The context a shard store was searched in, from its provenance."""
    attrs = store.attrs
    search = {k: v for k, v in attrs["search"].items() if k != "Z"}
    return context(attrs["database"], search, attrs["profile"], attrs["pyhmmer_version"])


def context_key(ctx: dict[str, Any]) -> str:
    """A short stable hash of a context (canonical JSON)."""
    return hashlib.sha256(json.dumps(ctx, sort_keys=True).encode()).hexdigest()[:16]


def entry_key(ctx_key: str, sequence: str) -> str:
    """The key of one sequence's profile in a context (128 bits)."""
    return hashlib.sha256(f"{ctx_key}:{sequence}".encode("ascii")).hexdigest()[:32]


def _is_cache(path: Path) -> bool:
    try:
        return json.loads((path / MARKER).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class Entry:
    """Where an entry lives: a segment and its row there."""

    segment: int
    row: int


class ProfileCache:
    """A cache folder: look entries up, publish new ones, assemble stores from them."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists() and create:
            self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / MARKER).exists() and create and self.path.is_dir():
            if any(p for p in self.path.iterdir() if not p.name.startswith(".")):
                raise StoreError(f"{self.path}: exists, is not empty and is not a protprof cache")
            with atomic_output(self.path / MARKER) as tmp:
                tmp.write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION}))
        if not _is_cache(self.path):
            raise StoreError(f"{self.path}: not a protprof cache (no {MARKER})")
        (self.path / "segments").mkdir(exist_ok=True)

    def segments(self, ctx_key: str = "") -> list[Path]:
        """Complete segments (of one context when `ctx_key` is given), oldest name first."""
        return sorted((self.path / "segments").glob(f"{ctx_key}*.zarr"))

    def index(self, ctx_key: str) -> tuple[list[ProfileStore], dict[str, Entry]]:
        """The segments of a context and where each of their entries is (first copy wins)."""
        stores = [open_store(p) for p in self.segments(ctx_key)]
        where: dict[str, Entry] = {}
        for s, store in enumerate(stores):
            for row, key in enumerate(map(str, store.ids)):
                where.setdefault(key, Entry(s, row))
        return stores, where

    def publish(self, shard: str | Path) -> tuple[Path, int]:
        """Add a shard store's profiles as a segment (idempotent: a shard already published is
        skipped). Returns the segment and the number of its entries."""
        store = open_store(shard)
        ctx = context_of_store(store)
        key = context_key(ctx)
        segment = self.path / "segments" / f"{key}-{store.identity[:16]}.zarr"
        if segment.exists():
            return segment, len(store)
        data = store.read_all()
        keys = [entry_key(key, store.sequence(i)) for i in range(len(store))]
        entries = StoreData(
            keys,
            data.tokens,
            data.profiles,
            data.offsets,
            data.n_hits,
            data.neff,
            np.zeros(len(keys), np.uint8),
        )
        write_stores(segment, [entries], {"cache": {"context_key": key, "context": ctx}})
        return segment, len(keys)

    def missing(self, ctx: dict[str, Any], sequences: Sequence[str]) -> list[int]:
        """Indices of the sequences without an entry in `ctx`."""
        key = context_key(ctx)
        _, where = self.index(key)
        return [i for i, seq in enumerate(sequences) if entry_key(key, seq) not in where]

    def why_missing(self, ctx: dict[str, Any]) -> str:
        """Why no entry matches `ctx`: an empty cache, or which parts of the settings differ
        from those the cache holds entries for."""
        others = []
        for segment in self.segments():
            attrs = json.loads((segment / "zarr.json").read_text()).get("attributes", {})
            other = attrs.get("cache", {}).get("context")
            if other and other != ctx and other not in others:
                others.append(other)
        if not others:
            return "no cached profiles for these settings"
        parts = sorted({k for other in others for k in ctx if other.get(k) != ctx[k]})
        return (
            f"the cache holds profiles only for other settings: {', '.join(parts)} "
            "changed, so every query is searched again"
        )

    def stats(self) -> dict[str, Any]:
        """Entries, bytes and residues per context."""
        contexts: dict[str, dict[str, Any]] = {}
        for path in self.segments():
            store = open_store(path)
            cache = store.attrs.get("cache", {})
            row = contexts.setdefault(
                cache.get("context_key", "?"),
                {
                    "context": cache.get("context"),
                    "segments": 0,
                    "entries": 0,
                    "residues": 0,
                    "bytes": 0,
                },
            )
            row["segments"] += 1
            row["entries"] += len(store)
            row["residues"] += int(store.attrs["n_residues"])
            row["bytes"] += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return {
            "path": str(self.path),
            "entries": sum(c["entries"] for c in contexts.values()),
            "bytes": sum(c["bytes"] for c in contexts.values()),
            "contexts": contexts,
        }

    def gc(self, keep: Sequence[str | Path]) -> dict[str, int]:
        """Drop segments none of whose entries a kept store uses (whole segments: they are
        append-only and shared). Returns counts of kept and removed segments."""
        used: set[str] = set()
        for path in keep:
            store = open_store(path)
            ctx = store.attrs.get("cache_context")
            if ctx is None:
                raise StoreError(f"{path}: was not assembled from a cache (no cache_context)")
            key = context_key(ctx)
            used.update(entry_key(key, store.sequence(i)) for i in range(len(store)))
        removed = kept = 0
        for segment in self.segments():
            ids = set(map(str, open_store(segment).ids))
            if ids & used:
                kept += 1
                continue
            # Renamed away first: a reader never sees a half-deleted segment.
            doomed = segment.with_name(f".{segment.name}.gc")
            segment.rename(doomed)
            shutil.rmtree(doomed)
            removed += 1
        return {"kept": kept, "removed": removed}


CACHE = Kind("a protprof cache", _is_cache)


def _gather(store: ProfileStore, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Profile rows [start, start + length) of each item, concatenated: one fancy-indexing
    gather per chunk file instead of a slice per sequence."""
    total = int(lengths.sum())
    if not total:
        return np.zeros((0, N_STANDARD), np.uint8)
    # residue index of each output row: start of its item + position within the item
    item_start = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    rows = item_start + np.arange(total)
    return store.gather("profiles", rows)


def assemble(
    cache: ProfileCache,
    ids: Sequence[str],
    sequences: Sequence[str],
    splits: Sequence[int],
    ctx: dict[str, Any],
    out: str | Path,
    attrs: dict[str, Any],
    searched: int,
) -> Path:
    """Write the store of these queries (in this order) from their cache entries."""
    key = context_key(ctx)
    stores, where = cache.index(key)
    entries = [where.get(entry_key(key, seq)) for seq in sequences]
    lost = [ids[i] for i, e in enumerate(entries) if e is None]
    if lost:
        raise StoreError(
            f"{cache.path}: {len(lost)} queries have no cache entry (first: "
            f"{lost[0]!r}); their searches must run first"
        )
    segment = np.array([e.segment for e in entries if e], dtype=np.int64)
    row = np.array([e.row for e in entries if e], dtype=np.int64)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    n_hits = np.zeros(len(ids), np.int32)
    neff = np.zeros(len(ids), np.float32)
    for s, store in enumerate(stores):
        mine = segment == s
        if mine.any():
            n_hits[mine] = store.n_hits[row[mine]]
            neff[mine] = store.neff[row[mine]]
            source = store.lengths[row[mine]]
            if (source != lengths[mine]).any():
                raise StoreError(f"{store.path}: an entry's length differs from its query's")

    ends = np.cumsum(lengths)

    def parts() -> Iterator[StoreData]:
        start = 0
        while start < len(ids):
            # about CHUNK_ROWS residues per part, at least one sequence
            done = int(ends[start - 1]) if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, done + CHUNK_ROWS, side="right")))
            span = slice(start, stop)
            profiles = np.empty((int(lengths[span].sum()), N_STANDARD), np.uint8)
            offsets = np.concatenate([[0], np.cumsum(lengths[span])])
            for s in np.unique(segment[span]):
                mine = np.flatnonzero(segment[span] == s)
                source_starts = stores[s].offsets[row[span][mine]]
                block = _gather(stores[s], source_starts, lengths[span][mine])
                target = np.repeat(
                    offsets[mine] - np.cumsum(lengths[span][mine]) + lengths[span][mine],
                    lengths[span][mine],
                )
                profiles[target + np.arange(len(target))] = block
            yield StoreData(
                list(ids[start:stop]),
                np.concatenate([encode(seq) for seq in sequences[start:stop]]),
                profiles,
                offsets.astype(np.int64),
                n_hits[span],
                neff[span],
                np.asarray(splits[start:stop], dtype=np.uint8),
            )
            start = stop

    reused = len(ids) - searched
    provenance = {
        **attrs,
        "cache_context": ctx,
        "cache": {"path": str(cache.path), "searched": searched, "reused": reused},
    }
    size = len(ids), int(lengths.sum())
    write_stores(out, parts(), provenance, sizes=size)
    log.info(
        "store %s: %d profiles searched, %d reused from the cache %s",
        out,
        searched,
        reused,
        cache.path,
    )
    return Path(out)
