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
looks complete. The index is the segments themselves: a lookup reads the raw keys
(`keys.npy`) of the segments of one context (their file names start with the context key), so
no shared index file has to be updated under a lock.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protprof._atomic import Kind
from protprof.alphabet import N_STANDARD, decode
from protprof.errors import StoreError
from protprof.reuse import MEMBER
from protprof.store import CHUNK_ROWS, ProfileStore, StoreData, open_store, write_stores

log = logging.getLogger(__name__)
FORMAT = "protprof.cache"
FORMAT_VERSION = "1.0"
# Bump when what a stored profile means changes (quantisation, builder settings, n_hits).
PROFILE_FORMAT = 2
MARKER = "cache.json"
KEYS = "keys.npy"  # in each segment: its entry keys, raw, in row order
ROLES = "roles.npy"  # in a shard store searched with reuse: each row's role (`reuse.MEMBER`)


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


def settings_context(fingerprint: dict[str, Any], search: Any, profile: Any) -> dict[str, Any]:
    """The context of a search with these settings (SearchParams, ProfileParams) against the
    database of this fingerprint, with the running pyhmmer's version."""
    import pyhmmer

    return context(fingerprint, asdict(search), asdict(profile), pyhmmer.__version__)


def member_context(ctx: dict[str, Any], reuse: dict[str, Any]) -> dict[str, Any]:
    """The context of family members' profiles made with reuse (`pool` or `family`): the
    per-query context plus the reuse mode and coverage rule. Representatives' profiles are
    per-query profiles and are kept in the per-query context, shared with builds without
    reuse."""
    return {**ctx, "reuse": {"mode": reuse["mode"], "coverage": reuse["coverage"]}}


def family_representative_context(ctx: dict[str, Any], reuse: dict[str, Any]) -> dict[str, Any]:
    """The context of representatives' profiles in a `family` build. They equal per-query
    profiles (and are published there too), but a family build looks them up here only: a
    query a per-query build cached may be a member, whose target is its family's."""
    return {**member_context(ctx, reuse), "role": "representative"}


def contexts(
    fingerprint: dict[str, Any], search: Any, profile: Any, reuse: Any = None
) -> list[dict[str, Any]]:
    """The contexts whose entries a build with these settings may use, best first: the
    representatives' context (the per-query one, except in family mode), then (with reuse)
    the members' context."""
    ctx = settings_context(fingerprint, search, profile)
    if reuse is None or reuse.mode == "none":
        return [ctx]
    settings = asdict(reuse)
    if reuse.mode == "family":
        return [family_representative_context(ctx, settings), member_context(ctx, settings)]
    return [ctx, member_context(ctx, settings)]


def context_of_store(store: ProfileStore) -> dict[str, Any]:
    """The per-query context a shard store was searched in, from its provenance."""
    attrs = store.attrs
    search = {k: v for k, v in attrs["search"].items() if k != "Z"}
    return context(attrs["database"], search, attrs["profile"], attrs["pyhmmer_version"])


def _sequences(data: StoreData) -> list[str]:
    return [
        decode(data.tokens[data.offsets[i] : data.offsets[i + 1]]) for i in range(len(data.ids))
    ]


def _subset(data: StoreData, rows: np.ndarray) -> StoreData:
    """The rows `rows` (sorted) of a store's data."""
    starts, stops = data.offsets[rows], data.offsets[rows + 1]
    lengths = stops - starts
    spans = _spans(starts, lengths)
    return StoreData(
        [data.ids[i] for i in rows],
        data.tokens[spans],
        data.profiles[spans],
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        data.n_hits[rows],
        data.neff[rows],
        data.split[rows],
    )


def context_key(ctx: dict[str, Any]) -> str:
    """A short stable hash of a context (canonical JSON)."""
    return hashlib.sha256(json.dumps(ctx, sort_keys=True).encode()).hexdigest()[:16]


def entry_key(ctx_key: str, sequence: str) -> bytes:
    """The key of one sequence's profile in a context: 128 bits of a SHA-256 (a segment's
    `ids` hold it in hex, for people; its `keys.npy` raw, for lookups)."""
    return hashlib.sha256(f"{ctx_key}:{sequence}".encode("ascii")).digest()[:16]


def _raw(keys: Sequence[bytes]) -> np.ndarray:
    """Keys as one numpy array of 16-byte strings (sortable, searchable)."""
    return np.frombuffer(b"".join(keys), dtype="S16") if keys else np.zeros(0, "S16")


def _is_cache(path: Path) -> bool:
    try:
        return json.loads((path / MARKER).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class Index:
    """Where the entries of one context are: their keys sorted, with segment and row."""

    stores: list[ProfileStore]
    keys: np.ndarray  # (E,) sorted entry keys
    segment: np.ndarray  # (E,) int64
    row: np.ndarray  # (E,) int64

    def find(self, keys: Sequence[bytes]) -> np.ndarray:
        """Position in this index of each key, -1 where there is none (a duplicate entry,
        from two writers racing, resolves to the copy in the first segment)."""
        wanted = _raw(keys)
        position = np.searchsorted(self.keys, wanted)
        inside = position < len(self.keys)
        found = np.zeros(len(wanted), bool)
        found[inside] = self.keys[position[inside]] == wanted[inside]
        return np.where(found, position, -1)


class ProfileCache:
    """A cache folder: look entries up, publish new ones, assemble stores from them."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists() and create:
            self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / MARKER).exists() and create and self.path.is_dir():
            self._create()
        if not _is_cache(self.path):
            raise StoreError(f"{self.path}: not a protprof cache (no {MARKER})")
        (self.path / "segments").mkdir(exist_ok=True)

    def _create(self) -> None:
        """Mark a new folder as a cache. Two workflows may create one cache at once: the marker
        is created exclusively, and whoever loses the race finds the winner's."""
        foreign = [p for p in self.path.iterdir() if p.name not in (MARKER, "segments")]
        if any(not p.name.startswith(".") for p in foreign):
            raise StoreError(f"{self.path}: exists, is not empty and is not a protprof cache")
        marker = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION}).encode()
        tmp = self.path / f".{MARKER}.{os.getpid()}"
        tmp.write_bytes(marker)
        try:
            os.link(tmp, self.path / MARKER)  # atomic, and fails if the marker exists
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def segments(self, ctx_key: str = "") -> list[Path]:
        """Complete segments (of one context when `ctx_key` is given), oldest name first."""
        return sorted((self.path / "segments").glob(f"{ctx_key}*.zarr"))

    def index(self, ctx_key: str) -> Index:
        """The entries of a context: numpy arrays, sorted for binary search (a dict of a
        million keys costs seconds to build)."""
        paths = self.segments(ctx_key)  # once: another writer may publish meanwhile
        stores = [open_store(p) for p in paths]
        # raw 16-byte keys from each segment's keys.npy: no decoding of a million hex ids
        keys = [np.load(p / KEYS) for p in paths]
        if not keys:
            empty = np.zeros(0, np.int64)
            return Index([], np.zeros(0, "S16"), empty, empty)
        segment = np.concatenate([np.full(len(k), s, np.int64) for s, k in enumerate(keys)])
        row = np.concatenate([np.arange(len(k), dtype=np.int64) for k in keys])
        every = np.concatenate(keys)
        order = np.argsort(every, kind="stable")  # stable: the first segment's copy first
        return Index(stores, every[order], segment[order], row[order])

    def publish(self, shard: str | Path) -> tuple[Path, int]:
        """Add a shard store's profiles as a segment (idempotent: a shard already published is
        skipped). A store searched with reuse gives two segments: its representatives' in the
        per-query context, its members' in the members' context. Returns the last segment and
        the number of entries."""
        store = open_store(shard)
        ctx = context_of_store(store)
        data = store.read_all()
        roles_file = store.path / ROLES
        if not roles_file.exists():
            return self._publish(store, data, ctx, "")
        roles = np.load(roles_file)
        members = np.flatnonzero(roles == MEMBER)
        others = np.flatnonzero(roles != MEMBER)
        reuse = store.attrs["reuse"]
        parts = [(others, ctx, "r"), (members, member_context(ctx, reuse), "m")]
        if reuse["mode"] == "family":  # family builds find their representatives here
            parts.append((others, family_representative_context(ctx, reuse), "f"))
        published = 0
        segment = self.path
        for rows, part_ctx, tag in parts:
            if len(rows):
                segment, n = self._publish(store, _subset(data, rows), part_ctx, tag)
                published += n if tag != "f" else 0  # the same rows again
        return segment, published

    def _publish(
        self, store: ProfileStore, data: StoreData, ctx: dict[str, Any], tag: str
    ) -> tuple[Path, int]:
        key = context_key(ctx)
        segment = self.path / "segments" / f"{key}-{store.identity[:16]}{tag}.zarr"
        if segment.exists():
            return segment, len(data.ids)
        sequences = _sequences(data)
        keys = [entry_key(key, seq) for seq in sequences]
        entries = StoreData(
            [k.hex() for k in keys],
            data.tokens,
            data.profiles,
            data.offsets,
            data.n_hits,
            data.neff,
            np.zeros(len(keys), np.uint8),
        )
        buffer = io.BytesIO()
        np.save(buffer, _raw(keys))
        write_stores(
            segment,
            [entries],
            {"cache": {"context_key": key, "context": ctx}},
            extra_files={KEYS: buffer.getvalue()},
        )
        return segment, len(keys)

    def missing(self, contexts: Sequence[dict[str, Any]], sequences: Sequence[str]) -> list[int]:
        """Indices of the sequences without an entry in any of `contexts`."""
        lacking = np.ones(len(sequences), bool)
        for ctx in contexts:
            key = context_key(ctx)
            found = self.index(key).find([entry_key(key, seq) for seq in sequences])
            lacking &= found < 0
        return np.flatnonzero(lacking).tolist()

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
        used: set[bytes] = set()
        for path in keep:
            store = open_store(path)
            attrs = store.attrs
            if "cache_context" not in attrs:
                raise StoreError(f"{path}: was not assembled from a cache (no cache_context)")
            for ctx in attrs.get("cache_contexts", [attrs["cache_context"]]):
                key = context_key(ctx)
                used.update(entry_key(key, store.sequence(i)) for i in range(len(store)))
        removed = kept = 0
        for segment in self.segments():
            if used.intersection(_raw_list(segment)):
                kept += 1
                continue
            # Renamed away first: a reader never sees a half-deleted segment.
            doomed = segment.with_name(f".{segment.name}.gc")
            segment.rename(doomed)
            shutil.rmtree(doomed)
            removed += 1
        return {"kept": kept, "removed": removed}


CACHE = Kind("a protprof cache", _is_cache)


def _raw_list(segment: Path) -> list[bytes]:
    return [bytes(k).ljust(16, b"\0") for k in np.load(segment / KEYS)]


def _spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every index of the ranges [start, start + length), concatenated."""
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())


def assemble(
    cache: ProfileCache,
    ids: Sequence[str],
    sequences: Sequence[str],
    splits: Sequence[int],
    contexts: Sequence[dict[str, Any]],
    out: str | Path,
    attrs: dict[str, Any],
    searched: int,
) -> Path:
    """Write the store of these queries (in this order) from their cache entries, each taken
    from the first of `contexts` that has one."""
    stores: list[ProfileStore] = []
    segment = np.full(len(ids), -1, np.int64)
    row = np.zeros(len(ids), np.int64)
    from_context = np.zeros(len(contexts), np.int64)
    for c, ctx in enumerate(contexts):
        key = context_key(ctx)
        index = cache.index(key)
        todo = np.flatnonzero(segment < 0)
        found = index.find([entry_key(key, sequences[int(i)]) for i in todo])
        hit = found >= 0
        segment[todo[hit]] = index.segment[found[hit]] + len(stores)
        row[todo[hit]] = index.row[found[hit]]
        from_context[c] = hit.sum()
        stores += index.stores
    lost = np.flatnonzero(segment < 0)
    if len(lost):
        raise StoreError(
            f"{cache.path}: {len(lost)} queries have no cache entry (first: "
            f"{ids[lost[0]]!r}); their searches must run first"
        )
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
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

    # Parts of about CHUNK_ROWS residues: the sequences whose last residue falls in one window.
    window = (np.cumsum(lengths) - 1) // CHUNK_ROWS
    stops = [*(np.flatnonzero(np.diff(window)) + 1).tolist(), len(ids)]

    def parts() -> Iterator[StoreData]:
        start = 0
        for stop in stops:
            span = slice(start, stop)
            n_res = int(lengths[span].sum())
            tokens = np.empty(n_res, np.uint8)
            profiles = np.empty((n_res, N_STANDARD), np.uint8)
            offsets = np.concatenate([[0], np.cumsum(lengths[span])])
            # One vectorised gather per segment: the rows of all its entries in this part.
            for s in np.unique(segment[span]).tolist():
                mine = np.flatnonzero(segment[span] == s)
                size = lengths[span][mine]
                source = _spans(stores[s].offsets[row[span][mine]], size)
                target = _spans(offsets[mine], size)
                tokens[target] = stores[s].gather("tokens", source)
                profiles[target] = stores[s].gather("profiles", source)
            yield StoreData(
                list(ids[start:stop]),
                tokens,
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
        "cache_context": contexts[0],
        "cache_contexts": list(contexts),
        "cache": {"path": str(cache.path), "searched": searched, "reused": reused},
    }
    if len(contexts) > 1:  # with reuse: how many rows are family members' profiles
        provenance.setdefault("reuse", {})["members_in_store"] = int(from_context[1:].sum())
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
