"""The profile cache: every query's profile kept under a key of everything that defines it, so a
changed query set searches only the sequences it has never seen with these settings.

Layout of a cache folder (it may be shared by several workflows at once)::

    cache.json                          marks the folder as a protprof cache
    segments/<context>-<id>.zarr        append-only segments, each a protprof store whose `ids`
                                        are entry keys
    segments/<id>.commit                marks the segments of one reuse publish complete

An entry's key is a hash of its (cropped) sequence and its *context*: the database's fingerprint
(checksum and counts, not its path), every search and profile parameter with Z, the pyhmmer
version and protprof's profile format. A changed context gives new keys, so a stale entry can
never be found; an entry is never searched again while its key holds.

Segments are written under a temporary name and renamed into place (see `atomic`), so readers
and concurrent writers only ever see complete segments, and a killed writer leaves nothing that
looks complete. A store searched with reuse is published as several segments (its
representatives', its members', ...) that are only valid together: a member's profile depends on
which queries were its family's representatives. Each carries its publish's id, and the
`<id>.commit` file written after the last one makes them visible; the segments of a publish
killed before its commit are ignored (their entries searched again, as a whole, by the next
build) and `cache gc --drop-corrupt` removes them. The index is the segments themselves: a
lookup reads the raw keys (`keys.npy`) of the segments of one context (their file names start
with the context key), so no shared index file has to be updated under a lock.

Every entry is checked when it is read: a segment is a checksummed store (format 1.2) and its
`keys.npy` is listed in the checksums. A segment that fails (a flipped byte in any array, a
truncated key file) is skipped with a warning, so its entries count as missing and are searched
again and published in a new segment; the other segments are served. `protprof cache verify`
names bad segments and `cache gc --drop-corrupt` removes them.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protprof.alphabet import N_STANDARD
from protprof.atomic import Kind, atomic_output, require_space
from protprof.errors import OutputError, ProtprofError, StoreError
from protprof.store.reuse_records import MEMBER
from protprof.store.sources_table import read_sources
from protprof.store.zarr_store import (
    CHUNK_ROWS,
    ProfileStore,
    StoreData,
    open_store,
    spans,
    store_sequences,
    subset,
    verify,
    write_stores,
)

log = logging.getLogger(__name__)
FORMAT = "protprof.cache"
FORMAT_VERSION = "1.0"
SUPPORTED_MAJOR = 1
# Bump when what a stored profile means changes (quantisation, builder settings, n_hits).
# 3: n_hits counts the alignment's rows (2 counted distinct target names).
PROFILE_FORMAT = 3
MARKER = "cache.json"
KEYS = "keys.npy"  # in each segment: its entry keys, raw, in row order
# In a shard store searched with reuse: each row's role (`reuse_records.MEMBER`).
ROLES = "roles.npy"
COMMIT = ".commit"  # segments/<publish id>.commit: that publish's segments are complete


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
    fingerprint: dict[str, Any], search: Any, profile: Any, reuse: Any = None, filters: Any = None
) -> list[dict[str, Any]]:
    """The contexts whose entries a build with these settings may use, best first: the
    representatives' context (the per-query one, except in family mode), then (with reuse)
    the members' context. Alignment filters (`filters.FilterParams`) enter only when on, so
    the entries of builds without them keep their keys."""
    ctx = settings_context(fingerprint, search, profile)
    if filters is not None and filters.active:
        ctx["filters"] = asdict(filters)
    if reuse is None or reuse.mode == "none":
        return [ctx]
    settings = asdict(reuse)
    if reuse.mode == "family":
        return [family_representative_context(ctx, settings), member_context(ctx, settings)]
    return [ctx, member_context(ctx, settings)]


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(contexts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each context, the settings (dotted names) whose values are not the same in all of
    them: what tells them apart (a setting one lacks shows as None)."""
    flat = [_flat(ctx) for ctx in contexts]
    names = sorted({name for f in flat for name in f})
    varying = [n for n in names if len({json.dumps(f.get(n), sort_keys=True) for f in flat}) > 1]
    return [{n: f.get(n) for n in varying} for f in flat]


def import_context(imported: dict[str, Any]) -> dict[str, Any]:
    """The context of profiles imported from alignment files (`importer.import_provenance`):
    the reader, filter and profile settings and the versions. It has a `source` key, which a
    search's context never has, so an imported profile is never served for a searched one or
    the reverse. The file itself enters each entry's key by its SHA-256 (`import_key`)."""
    keys = ("source", "reader", "filters", "profile", "pyhmmer_version")
    return {**{k: imported[k] for k in keys}, "profile_format": PROFILE_FORMAT}


def import_key(sequence: str, sha256: Sequence[str]) -> str:
    """What an imported profile is keyed by besides its context: its query and the bytes of
    the file(s) it came from, so a changed file is imported again and an unchanged one never."""
    return f"{sequence}@{','.join(sha256)}"


def context_of_store(store: ProfileStore) -> dict[str, Any]:
    """The per-query context a shard store was searched (or imported) in, from its
    provenance."""
    attrs = store.attrs
    if "import" in attrs:
        return import_context(attrs["import"])
    search = {k: v for k, v in attrs["search"].items() if k != "Z"}
    ctx = context(attrs["database"], search, attrs["profile"], attrs["pyhmmer_version"])
    if attrs.get("filters"):
        ctx["filters"] = attrs["filters"]
    return ctx


def _key_texts(store: ProfileStore, data: StoreData) -> list[str]:
    """What each row of a shard store is keyed by in its context: its sequence, and for an
    imported row also the SHA-256 of its file(s), from the store's `sources.tsv`."""
    sequences = store_sequences(data)
    if "import" not in store.attrs:
        return sequences
    sources = read_sources(store)
    return [import_key(seq, sources[i].sha256) for i, seq in zip(data.ids, sequences, strict=True)]


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


def _check_marker(path: Path) -> None:
    """Refuse a folder that is not a cache, or a cache of a format version this protprof does
    not read."""
    marker = path / MARKER
    try:
        info = json.loads(marker.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path}: not a protprof cache (no {MARKER})") from None
    except (OSError, ValueError) as e:
        raise StoreError(f"{marker}: unreadable or not JSON ({e})") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise StoreError(f"{marker}: not a protprof cache marker (format is not {FORMAT!r})")
    version = str(info.get("format_version", ""))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise StoreError(
            f"{marker}: cache format version {version!r} is not supported (this protprof "
            f"reads {SUPPORTED_MAJOR}.x)"
        )


def _read_keys(store: ProfileStore) -> np.ndarray:
    """A segment's raw entry keys, checked: against its checksum, as a numpy file, and one
    per entry."""
    raw = store.extra_file(KEYS)
    try:
        keys = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise StoreError(f"{store.path / KEYS}: not a readable key file ({e})") from e
    if keys.dtype != np.dtype("S16") or keys.shape != (len(store),):
        raise StoreError(
            f"{store.path / KEYS}: holds {keys.dtype} {keys.shape}, expected "
            f"{len(store)} 16-byte keys (one per entry)"
        )
    return keys


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
        try:
            if not self.path.exists() and create:
                self.path.mkdir(parents=True, exist_ok=True)
            if not (self.path / MARKER).exists() and create and self.path.is_dir():
                self._create()
            _check_marker(self.path)
            (self.path / "segments").mkdir(exist_ok=True)
        except OSError as e:
            if isinstance(e, ProtprofError):
                raise
            raise OutputError(
                f"{self.path}: cannot create a profile cache there ({e.strerror}: "
                f"{e.filename or self.path})"
            ) from e
        # Segments found bad by this instance (path: why): skipped from then on.
        self.bad: dict[Path, str] = {}
        # Segments of a publish without its commit (path: publish id): ignored.
        self.uncommitted: dict[Path, str] = {}

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

    def claim(
        self, needs: Sequence[tuple[Path, int]] = (), what: str = "nothing was searched"
    ) -> None:
        """Check that entries can be published here, before the work that makes them: the
        segments folder is writable and takes POSIX locks, and the file systems have room for
        `needs` ((path, bytes) first estimates: new segments and the caller's other outputs).
        Raises OutputError in one line."""
        segments = self.path / "segments"
        probe = segments / f".probe-{uuid.uuid4().hex[:8]}"
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise OutputError(
                f"{self.path}: cannot write to this profile cache ({e.strerror}: "
                f"{e.filename or segments}); {what}"
            ) from e
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise OutputError(
                f"{self.path}: cannot lock files in this profile cache ({e.strerror}); it needs "
                f"a file system with POSIX locks; {what}"
            ) from e
        finally:
            os.close(fd)
            probe.unlink()
        require_space(needs, what)

    def segments(self, ctx_key: str = "") -> list[Path]:
        """Complete segments (of one context when `ctx_key` is given), oldest name first."""
        return sorted((self.path / "segments").glob(f"{ctx_key}*.zarr"))

    def _skip(self, segment: Path, why: str) -> None:
        self.bad[segment] = why
        log.warning("%s: skipped, its entries will be searched again (%s)", segment, why)

    def _load(self, segment: Path) -> tuple[ProfileStore, np.ndarray] | None:
        """A segment and its keys, checked (metadata, offsets, per-sequence arrays, keys);
        None, with a warning, when it is bad."""
        if segment in self.bad or segment in self.uncommitted:
            return None
        try:
            store = open_store(segment)
            keys = _read_keys(store)
        except StoreError as e:
            self._skip(segment, str(e))
            return None
        publish = store.attrs.get("cache", {}).get("publish")
        if publish is not None and not self._commit_path(publish).exists():
            self.uncommitted[segment] = publish
            log.info(
                "%s: ignored, the rest of its publish is not committed (being written, or "
                "killed: its entries are searched again)",
                segment,
            )
            return None
        return store, keys

    def _commit_path(self, publish: str) -> Path:
        return self.path / "segments" / f"{publish}{COMMIT}"

    def index(self, ctx_key: str) -> Index:
        """The entries of a context's good segments: numpy arrays, sorted for binary search
        (a dict of a million keys costs seconds to build)."""
        loaded = [x for x in map(self._load, self.segments(ctx_key)) if x is not None]
        stores = [store for store, _ in loaded]
        # raw 16-byte keys from each segment's keys.npy: no decoding of a million hex ids
        keys = [k for _, k in loaded]
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
        skipped). A store searched with reuse gives two segments (three in family mode): its
        representatives' in the per-query context, its members' in the members' context,
        visible together once its commit file is written. Returns the last segment and the
        number of entries."""
        store = open_store(shard)
        ctx = context_of_store(store)
        data = store.read_all()
        roles_file = store.path / ROLES
        if not roles_file.exists():
            return self._publish(store, data, ctx, "")
        try:
            roles = np.load(io.BytesIO(store.extra_file(ROLES)), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise StoreError(f"{roles_file}: not a readable roles file ({e})") from e
        members = np.flatnonzero(roles == MEMBER)
        others = np.flatnonzero(roles != MEMBER)
        reuse = store.attrs["reuse"]
        parts = [(others, ctx, "r"), (members, member_context(ctx, reuse), "m")]
        if reuse["mode"] == "family":  # family builds find their representatives here
            parts.append((others, family_representative_context(ctx, reuse), "f"))
        published = 0
        segment = self.path
        publish = store.identity[:16]
        for rows, part_ctx, tag in parts:
            if len(rows):
                segment, n = self._publish(store, subset(data, rows), part_ctx, tag, publish)
                published += n if tag != "f" else 0  # the same rows again
        commit = self._commit_path(publish)
        if not commit.exists():
            with atomic_output(commit) as tmp:
                tmp.write_text(json.dumps({"parts": [t for r, _, t in parts if len(r)]}) + "\n")
        return segment, published

    def _publish(
        self,
        store: ProfileStore,
        data: StoreData,
        ctx: dict[str, Any],
        tag: str,
        publish: str | None = None,
    ) -> tuple[Path, int]:
        key = context_key(ctx)
        segment = self.path / "segments" / f"{key}-{store.identity[:16]}{tag}.zarr"
        if segment.exists():
            return segment, len(data.ids)
        keys = [entry_key(key, text) for text in _key_texts(store, data)]
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
            {"cache": {"context_key": key, "context": ctx, "publish": publish}},
            extra_files={KEYS: buffer.getvalue()},
        )
        return segment, len(keys)

    def lookup(self, ctx: dict[str, Any], sequences: Sequence[str]) -> tuple[Index, np.ndarray]:
        """The index of a context and the position in it of each sequence's entry (-1: none;
        `sequences` are what entries are keyed by: the sequence, or `import_key` for imports),
        every residue chunk of the entries found checked: a segment that fails is skipped and
        its entries looked up again in the others."""
        key = context_key(ctx)
        wanted = [entry_key(key, seq) for seq in sequences]
        while True:
            index = self.index(key)
            found = index.find(wanted)
            hit = found[found >= 0]
            bad = False
            for s in np.unique(index.segment[hit]).tolist():
                store = index.stores[s]
                try:
                    store.check_sequences(index.row[hit][index.segment[hit] == s])
                except StoreError as e:
                    self._skip(store.path, str(e))
                    bad = True
            if not bad:
                return index, found

    def missing(self, contexts: Sequence[dict[str, Any]], sequences: Sequence[str]) -> list[int]:
        """Indices of the sequences without a good entry in any of `contexts`."""
        lacking = np.ones(len(sequences), bool)
        for ctx in contexts:
            lacking &= self.lookup(ctx, sequences)[1] < 0
        return np.flatnonzero(lacking).tolist()

    def why_missing(self, ctx: dict[str, Any]) -> str:
        """Why no entry matches `ctx`: an empty cache, or which parts of the settings differ
        from those the cache holds entries for."""
        others = []
        for segment in self.segments():
            try:
                attrs = json.loads((segment / "zarr.json").read_text()).get("attributes", {})
                other = attrs.get("cache", {}).get("context")
            except (OSError, ValueError, AttributeError):
                continue  # a bad segment: `cache verify` names it
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
        """Entries (distinct keys; `copies` counts the copies two racing writers made), bytes
        and residues per context, over the good segments, with the settings in which each
        context differs from the others; the bad segments are listed under "corrupt" and
        those of uncommitted publishes under "uncommitted"."""
        contexts: dict[str, dict[str, Any]] = {}
        keys: dict[str, list[np.ndarray]] = {}
        for path in self.segments():
            loaded = self._load(path)
            if loaded is None:
                continue
            store = loaded[0]
            cache = store.attrs.get("cache", {})
            key = cache.get("context_key", "?")
            row = contexts.setdefault(
                key,
                {
                    "context": cache.get("context"),
                    "segments": 0,
                    "entries": 0,
                    "copies": 0,
                    "residues": 0,
                    "bytes": 0,
                },
            )
            keys.setdefault(key, []).append(loaded[1])
            row["segments"] += 1
            row["copies"] += len(store)
            row["residues"] += int(store.attrs["n_residues"])
            row["bytes"] += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        for key, row in contexts.items():
            row["entries"] = len(np.unique(np.concatenate(keys[key])))
        differs = differences([row["context"] or {} for row in contexts.values()])
        for row, different in zip(contexts.values(), differs, strict=True):
            row["differs"] = different
        return {
            "path": str(self.path),
            "entries": sum(c["entries"] for c in contexts.values()),
            "bytes": sum(c["bytes"] for c in contexts.values()),
            "contexts": contexts,
            "corrupt": {str(p): why for p, why in self.bad.items()},
            "uncommitted": sorted(map(str, self.uncommitted)),
        }

    def verify(self) -> dict[Path, list[str]]:
        """Check every segment in full (each array, chunk and metadata, and its keys); returns
        the bad segments with what is wrong (empty: every segment is intact)."""
        bad: dict[Path, list[str]] = {}
        for segment in self.segments():
            try:
                problems = verify(segment)
                if not problems:
                    _read_keys(open_store(segment))
            except StoreError as e:
                problems = [str(e)]
            if problems:
                bad[segment] = problems
        return bad

    def temporaries(self, grace: float) -> list[Path]:
        """What killed writers and collections left in `segments/` (hidden temporaries, lock
        and probe files, half-deleted segments) untouched for more than `grace` seconds: a live
        writer's are younger."""
        now = time.time()
        leftover = (".tmp-", ".probe-", ".lock", ".gc")
        return [
            p
            for p in (self.path / "segments").glob(".*")
            if any(part in p.name for part in leftover) and now - _mtime(p) > grace
        ]

    def gc(
        self, keep: Sequence[str | Path], drop_corrupt: bool = False, grace: float = 86400.0
    ) -> dict[str, int]:
        """Drop segments none of whose entries a kept store uses (whole segments: they are
        append-only and shared), when `keep` is given; with `drop_corrupt`, drop the segments
        `verify` finds bad, and the temporaries and the segments of uncommitted publishes
        (killed writers') older than `grace` seconds. Returns counts of kept and removed
        segments, and of removed corrupt segments and temporaries (uncommitted segments
        included)."""
        self.claim(what="nothing was removed")  # a read-only cache: one line, not a traceback
        used: set[bytes] = set()
        for path in keep:
            store = open_store(path)
            attrs = store.attrs
            if "cache_context" not in attrs:
                raise StoreError(f"{path}: was not assembled from a cache (no cache_context)")
            for ctx in attrs.get("cache_contexts", [attrs["cache_context"]]):
                key = context_key(ctx)
                used.update(entry_key(key, store.sequence(i)) for i in range(len(store)))
        corrupt = self.verify() if drop_corrupt else {}
        counts = {"kept": 0, "removed": 0, "corrupt": 0, "temporaries": 0}
        now = time.time()
        for segment in self.segments():
            if segment in corrupt:
                log.warning("%s: removed, corrupt (%s)", segment, corrupt[segment][0])
                _remove(segment)
                counts["corrupt"] += 1
                continue
            if drop_corrupt:
                self._load(segment)
                if segment in self.uncommitted and now - _mtime(segment) > grace:
                    log.warning("%s: removed, its publish was never committed", segment)
                    _remove(segment)
                    counts["temporaries"] += 1
                    continue
            loaded = self._load(segment) if keep else None
            if not keep or loaded is None or used.intersection(_full_keys(loaded[1])):
                counts["kept"] += 1  # a bad segment is kept unless --drop-corrupt
                continue
            _remove(segment)
            counts["removed"] += 1
        for leftover in self.temporaries(grace) if drop_corrupt else []:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            counts["temporaries"] += 1
        return counts


def _full_keys(keys: np.ndarray) -> list[bytes]:
    """Keys as 16-byte strings (numpy drops an `S16` item's trailing NUL bytes)."""
    return [bytes(k).ljust(16, b"\0") for k in keys]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()  # gone meanwhile: not ours to remove


def _remove(segment: Path) -> None:
    """Remove a segment, renamed away first: a reader never sees a half-deleted segment."""
    doomed = segment.with_name(f".{segment.name}.gc")
    segment.rename(doomed)
    shutil.rmtree(doomed)


CACHE = Kind("a protprof cache", _is_cache)


def assemble(
    cache: ProfileCache,
    ids: Sequence[str],
    sequences: Sequence[str],
    splits: Sequence[int],
    contexts: Sequence[dict[str, Any]],
    out: str | Path,
    attrs: dict[str, Any],
    searched: int,
    keys: Sequence[str] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write the store of these queries (in this order) from their cache entries, each taken
    from the first of `contexts` that has one. Only checked entries are copied: a query whose
    entry sits in a bad segment counts as lacking one (search it again first). `keys` are
    what the entries are keyed by when it is not the sequence (`import_key`)."""
    keys = sequences if keys is None else keys
    stores: list[ProfileStore] = []
    segment = np.full(len(ids), -1, np.int64)
    row = np.zeros(len(ids), np.int64)
    from_context = np.zeros(len(contexts), np.int64)
    for c, ctx in enumerate(contexts):
        todo = np.flatnonzero(segment < 0)
        # Checked now: the entries' residue chunks, besides each segment's other arrays.
        index, found = cache.lookup(ctx, [keys[int(i)] for i in todo])
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
                source = spans(stores[s].offsets[row[span][mine]], size)
                target = spans(offsets[mine], size)
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
    write_stores(out, parts(), provenance, sizes=size, extra_files=extra_files)
    log.info(
        "store %s: %d profiles searched, %d reused from the cache %s",
        out,
        searched,
        reused,
        cache.path,
    )
    return Path(out)
