"""The profile store: one Zarr v3 group, ragged data flat with offsets (CSR-style).

| array      | shape   | dtype  | meaning                                                  |
|------------|---------|--------|----------------------------------------------------------|
| `tokens`   | (R,)    | uint8  | query residues as `alphabet` token ids, concatenated     |
| `profiles` | (R, 20) | uint8  | profile quantised to 1/255 steps; each row sums to 255   |
| `offsets`  | (N+1,)  | int64  | sequence i is rows offsets[i]:offsets[i+1]               |
| `ids`      | (N,)    | string | query identifiers, unique                                |
| `n_hits`   | (N,)    | int32  | rows of the final alignment besides the query's          |
| `neff`     | (N,)    | float32| HMMER's effective sequence number of the final alignment |
| `split`    | (N,)    | uint8  | 0 train, 1 valid, 2 test (stable hash of the sequence)   |

`tokens` and `profiles` are written uncompressed in row chunks, so each chunk file is raw
little-endian bytes that readers memory-map and slice (~µs per protein) instead of going
through zarr per item (~ms). Quantisation uses largest-remainder rounding: every entry is
within 1/255 of the float profile and rows sum to exactly 1 after dividing by 255.

Every array is checksummed (format 1.2): the root attribute `checksums` holds, per array, the
metadata the checksums were computed for (`data_type`, `shape`, `chunk_shape`, and a CRC-32 of
its `zarr.json`) and a CRC-32 of each chunk file, plus one of each extra file (a cache
segment's `keys.npy`). The table lives beside the data rather than in a zarr codec: a value
changed through zarr would get a fresh codec checksum and pass, and a codec does not cover the
metadata (`bench/bench_checksums.py` measures both). Readers check the metadata of every array
and the chunks of the per-sequence arrays and offsets when they open a store, and each residue
chunk the first time they read it; `verify` checks everything.
"""

from __future__ import annotations

import datetime
import json
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from protprof import __version__
from protprof.alphabet import FIRST_RESIDUE, N_STANDARD, VOCAB_SIZE, decode, encode
from protprof.atomic import Kind, atomic_output
from protprof.errors import StoreError
from protprof.store.reuse_records import combined_summary, settings_of

FORMAT = "protprof.profiles"
# 1.1 adds `store_id` and per-chunk `checksums` of `tokens` and `profiles` to the root
# attributes; 1.2 adds checksums of every other array, of each array's metadata and of extra
# files (`checksums["arrays"]`, `checksums["files"]`). The arrays are unchanged: 1.0 and 1.1
# stores are still read, checked as far as their checksums go and by their invariants.
FORMAT_VERSION = "1.2"
SUPPORTED_MAJOR = 1
QUANT = 255
CHUNK_ROWS = 1 << 18  # 5 MiB profile chunks: few files per store, cheap to page in
SPLIT_NAMES = ("train", "valid", "test")
_PER_SEQUENCE = {"n_hits": np.int32, "neff": np.float32, "split": np.uint8}
RESIDUE_ARRAYS = ("tokens", "profiles")
# Arrays whose chunks readers check when they open a store (small: one value per sequence).
INDEX_ARRAYS = ("offsets", "ids", *_PER_SEQUENCE)
ARRAYS = (*RESIDUE_ARRAYS, *INDEX_ARRAYS)
# A store's size, first estimate: tokens and profiles are stored uncompressed (21 bytes per
# residue); offsets, ids and the per-sequence arrays add some per sequence.
STORE_BYTES_PER_RESIDUE = 21
STORE_BYTES_PER_SEQUENCE = 48


@dataclass
class StoreData:
    """In-memory columns of a store (one shard's worth)."""

    ids: list[str]
    tokens: np.ndarray  # (R,) uint8
    profiles: np.ndarray  # (R, 20) uint8, quantised
    offsets: np.ndarray  # (N+1,) int64
    n_hits: np.ndarray  # (N,) int32
    neff: np.ndarray  # (N,) float32
    split: np.ndarray  # (N,) uint8


def columns(
    ids: list[str],
    sequences: list[str],
    profiles: list[np.ndarray],
    n_hits: list[int],
    neff: list[float],
    splits: list[int],
) -> StoreData:
    """The store's columns of some sequences: residues and quantised (L, 20) profiles
    concatenated, with offsets."""
    lengths = [len(seq) for seq in sequences]
    return StoreData(
        ids=list(ids),
        tokens=np.concatenate([encode(seq) for seq in sequences])
        if sequences
        else np.zeros(0, np.uint8),
        profiles=np.concatenate(profiles) if profiles else np.zeros((0, N_STANDARD), np.uint8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        n_hits=np.array(n_hits, dtype=np.int32),
        neff=np.array(neff, dtype=np.float32),
        split=np.array(splits, dtype=np.uint8),
    )


def spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every index of the ranges [start, start + length), concatenated."""
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())


def subset(data: StoreData, rows: np.ndarray) -> StoreData:
    """The rows `rows` (sorted) of a store's data."""
    starts, stops = data.offsets[rows], data.offsets[rows + 1]
    lengths = stops - starts
    residues = spans(starts, lengths)
    return StoreData(
        [data.ids[i] for i in rows],
        data.tokens[residues],
        data.profiles[residues],
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        data.n_hits[rows],
        data.neff[rows],
        data.split[rows],
    )


def store_sequences(data: StoreData) -> list[str]:
    """The sequences of a store's data, in row order."""
    return [
        decode(data.tokens[data.offsets[i] : data.offsets[i + 1]]) for i in range(len(data.ids))
    ]


def store_bytes(items: Sequence[Any]) -> int:
    """About how many bytes a store of these items (anything with a `sequence`) takes on
    disk."""
    residues = sum(len(r.sequence) for r in items)
    return STORE_BYTES_PER_RESIDUE * residues + STORE_BYTES_PER_SEQUENCE * len(items)


def provenance(
    database: dict[str, Any],
    search: dict[str, Any],
    profile: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Root attributes that say how a store was made (versions are added by `write_stores`)."""
    import pyhmmer

    return {
        "pyhmmer_version": pyhmmer.__version__,
        "database": database,
        "search": {**search, "Z": database["n_sequences"]},
        "profile": profile,
        **(extra or {}),
    }


def quantise(profile: np.ndarray) -> np.ndarray:
    """Quantise rows of a probability matrix to uint8 summing to exactly `QUANT`.

    Largest-remainder rounding: |q/255 - p| < 1/255 for every entry.
    """
    p = np.asarray(profile, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    scaled = p * QUANT
    q = np.floor(scaled).astype(np.int64)
    short = QUANT - q.sum(axis=1)  # how many units each row still needs (0..19)
    order = np.argsort(-(scaled - q), axis=1, kind="stable")
    bump = np.arange(p.shape[1])[None, :] < short[:, None]
    np.add.at(q, (np.repeat(np.arange(len(q)), p.shape[1])[bump.ravel()], order[bump]), 1)
    return q.astype(np.uint8)


def dequantise(q: np.ndarray) -> np.ndarray:
    """Return the float32 profile of quantised rows (each row sums to 1)."""
    return q.astype(np.float32) / np.float32(QUANT)


def _create(group: zarr.Group, n_seq: int, n_res: int, chunk_rows: int) -> dict[str, Any]:
    raw: dict[str, Any] = {"compressors": None, "config": {"write_empty_chunks": True}}
    rows = max(1, min(chunk_rows, n_res))
    seqs = max(1, min(chunk_rows, n_seq))
    arrays = {
        "tokens": group.create_array(
            "tokens", shape=(n_res,), chunks=(rows,), dtype="uint8", **raw
        ),
        "profiles": group.create_array(
            "profiles", shape=(n_res, N_STANDARD), chunks=(rows, N_STANDARD), dtype="uint8", **raw
        ),
        "offsets": group.create_array(
            "offsets", shape=(n_seq + 1,), chunks=(seqs + 1,), dtype="int64"
        ),
        "ids": group.create_array("ids", shape=(n_seq,), chunks=(seqs,), dtype=str),
    }
    for name, dtype in _PER_SEQUENCE.items():
        arrays[name] = group.create_array(name, shape=(n_seq,), chunks=(seqs,), dtype=dtype)
    return arrays


class _ChunkWriter:
    """Appends values to an array in whole chunks. A part that ended mid-chunk would make zarr
    read, patch and rewrite (and recompress) that chunk once per part: ~4x slower assembly of
    many small parts, measured on 10^5 sequences."""

    def __init__(self, array: Any, start: int = 0) -> None:
        self.array, self.size = array, int(array.chunks[0])
        self.done = start
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    def add(self, values: np.ndarray) -> None:
        if len(values):
            self.pending.append(values)
            self.n_pending += len(values)
        if self.n_pending >= self.size:
            self._flush(final=False)

    def close(self) -> None:
        if self.n_pending:
            self._flush(final=True)

    def _flush(self, final: bool) -> None:
        values = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        # Whole chunks only, unless closing; the first write may start mid-chunk (offsets[0]).
        room = self.size - self.done % self.size
        n = (
            len(values)
            if final
            else (
                room + (len(values) - room) // self.size * self.size if len(values) >= room else 0
            )
        )
        if n:
            self.array[self.done : self.done + n] = values[:n]
            self.done += n
        self.pending = [values[n:]] if n < len(values) else []
        self.n_pending = len(values) - n


def _base_attrs(attrs: dict[str, Any], n_seq: int, n_res: int, chunk_rows: int) -> dict:
    return {
        **attrs,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "protprof_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        # Identity: a reader that reopens files later can tell the store was replaced meanwhile.
        "store_id": uuid.uuid4().hex,
        "n_sequences": n_seq,
        "n_residues": n_res,
        "chunk_rows": chunk_rows,
        "profile_encoding": {"dtype": "uint8", "scale": QUANT, "columns": "ACDEFGHIKLMNPQRSTVWY"},
    }


def write_stores(
    out: str | Path,
    parts: Iterable[StoreData],
    attrs: dict[str, Any],
    chunk_rows: int = CHUNK_ROWS,
    sizes: tuple[int, int] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write parts, concatenated in order, as one store at `out`, atomically.

    With `sizes` = (sequences, residues) of all parts together, `parts` may be an iterator
    that loads each part only when it is written, so only one part is in memory at a time.
    `extra_files` (name: content) are written into the store folder before it appears.
    """
    out = Path(out)
    if sizes is None:
        parts = list(parts)
        sizes = sum(len(p.ids) for p in parts), sum(len(p.tokens) for p in parts)
    n_seq, n_res = sizes
    with atomic_output(out, STORE) as tmp:
        group = zarr.create_group(str(tmp), zarr_format=3)
        arrays = _create(group, n_seq, n_res, chunk_rows)
        writers = {name: _ChunkWriter(array) for name, array in arrays.items()}
        writers["offsets"].add(np.zeros(1, np.int64))
        seq0 = res0 = 0
        for part in parts:
            writers["tokens"].add(part.tokens)
            writers["profiles"].add(part.profiles)
            writers["offsets"].add(part.offsets[1:] + res0)
            writers["ids"].add(np.array(part.ids, dtype=str))
            for name in _PER_SEQUENCE:
                writers[name].add(np.asarray(getattr(part, name)))
            seq0, res0 = seq0 + len(part.ids), res0 + len(part.tokens)
            del part  # before the next part loads
        for writer in writers.values():
            writer.close()
        if (seq0, res0) != (n_seq, n_res):
            raise StoreError(
                f"{out}: parts hold {seq0} sequences and {res0} residues, but "
                f"{n_seq} and {n_res} were announced"
            )
        for name, content in (extra_files or {}).items():
            (tmp / name).write_bytes(content)
        base = _base_attrs(attrs, n_seq, n_res, chunk_rows)
        base["checksums"] = checksum_table(tmp, list(extra_files or {}))
        group.attrs.update(base)
    return out


def _crc(path: Path) -> int | None:
    """CRC-32 of a file's bytes, None when there is no such file."""
    try:
        return zlib.crc32(path.read_bytes())
    except FileNotFoundError:
        return None


def _chunk_keys(shape: list[int], chunk_shape: list[int]) -> list[str]:
    """Keys of every chunk of an array, in C order (zarr v3's default key encoding)."""
    grid = [-(-int(n) // max(1, int(c))) for n, c in zip(shape, chunk_shape, strict=True)]
    return ["c/" + "/".join(map(str, index)) for index in np.ndindex(*grid)]


def _described(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata a checksum table records of an array: what its values mean and where its
    chunks are."""
    return {
        "data_type": meta["data_type"],
        "shape": list(meta["shape"]),
        "chunk_shape": list(meta["chunk_grid"]["configuration"]["chunk_shape"]),
    }


def checksum_table(path: Path, files: Iterable[str] = ()) -> dict[str, Any]:
    """The checksums of a store as it is on disk (read back: what is on disk is what counts):
    per array its metadata and a CRC-32 of each chunk file (None for a chunk zarr did not
    write, all fill value), and a CRC-32 of each extra file. `tokens` and `profiles` keep their
    chunk checksums where format 1.1 had them, so older readers still check them."""
    table: dict[str, Any] = {"algorithm": "crc32", "arrays": {}, "files": {}}
    for name in ARRAYS:
        raw = (path / name / "zarr.json").read_bytes()
        described = _described(json.loads(raw))
        chunks = [
            _crc(path / name / key)
            for key in _chunk_keys(described["shape"], described["chunk_shape"])
        ]
        if name in RESIDUE_ARRAYS:
            table[name] = chunks
        else:
            described["chunks"] = chunks
        table["arrays"][name] = {**described, "metadata": zlib.crc32(raw)}
    table["files"] = {name: _crc(path / name) for name in files}
    return table


def _version(attrs: dict[str, Any]) -> tuple[int, int]:
    major, _, minor = str(attrs.get("format_version", "")).partition(".")
    return int(major), int(minor) if minor.isdigit() else 0


def _chunk_paths(path: Path, name: str, n_res: int, chunk_rows: int) -> list[Path]:
    """Chunk files of `tokens` or `profiles`: the keys zarr v3 gives a 1-D and a (R, 20) array."""
    size = min(chunk_rows, max(1, n_res))
    keys = [f"{c}" if name == "tokens" else f"{c}/0" for c in range(-(-n_res // size))]
    return [path / name / "c" / k for k in keys]


def _checksums(path: Path, attrs: dict[str, Any]) -> dict[str, Any] | None:
    """A store's checksum table; None for a 1.0 store, made before checksums.

    Raises:
        StoreError: the format version promises checksums and the table is missing or
            incomplete (the root attributes were edited: nothing in the store can be trusted).
    """
    version = _version(attrs)
    if version < (1, 1):
        return None
    table = attrs.get("checksums") or {}
    ok = isinstance(table, dict) and all(isinstance(table.get(n), list) for n in RESIDUE_ARRAYS)
    if ok and version >= (1, 2):
        arrays = table.get("arrays") or {}
        ok = isinstance(table.get("files"), dict) and isinstance(arrays, dict)
        ok = ok and all(
            isinstance(arrays.get(n), dict)
            and {"data_type", "shape", "chunk_shape", "metadata"} <= set(arrays[n])
            and (n in RESIDUE_ARRAYS or isinstance(arrays[n].get("chunks"), list))
            for n in ARRAYS
        )
    if not ok:
        raise StoreError(
            f"{path}/zarr.json: format {attrs['format_version']} stores carry checksums, but "
            "its 'checksums' attribute is missing or incomplete (edited); the store cannot "
            "be checked and is refused"
        )
    return dict(table)


def _what_changed(raw: bytes, recorded: dict[str, Any]) -> str:
    """Which of an array's recorded metadata differs from its zarr.json now."""
    try:
        now = _described(json.loads(raw))
    except (ValueError, KeyError, TypeError) as e:
        return f"malformed: {type(e).__name__}: {e}"
    changed = [
        f"{key} is {now[key]!r}, the checksums are for {recorded[key]!r}"
        for key in ("data_type", "shape", "chunk_shape")
        if now[key] != recorded[key]
    ]
    return "; ".join(changed) or "its zarr.json differs from the one the checksums are for"


def _array_problems(
    path: Path, table: dict[str, Any] | None, name: str, chunks: bool
) -> list[str]:
    """What an array's checksums find wrong: its metadata, then (with `chunks`) each chunk
    file. Nothing for arrays the table has no checksums for (1.0; 1.1 but residue chunks)."""
    recorded = (table or {}).get("arrays", {}).get(name)
    if recorded is None:
        return []
    meta = path / name / "zarr.json"
    try:
        raw = meta.read_bytes()
    except OSError as e:
        return [f"{meta}: metadata of {name!r} is missing or unreadable ({e})"]
    if zlib.crc32(raw) != recorded["metadata"]:
        return [
            f"{meta}: metadata of {name!r} changed since it was written "
            f"({_what_changed(raw, recorded)})"
        ]
    if not chunks:
        return []
    expected = recorded["chunks"] if name not in RESIDUE_ARRAYS else table[name]  # type: ignore[index]
    keys = _chunk_keys(recorded["shape"], recorded["chunk_shape"])
    if len(keys) != len(expected):
        return [
            f"{path}/zarr.json: the checksums of {name!r} list {len(expected)} chunks, "
            f"the array has {len(keys)}"
        ]
    problems = []
    for key, crc in zip(keys, expected, strict=True):
        found = _crc(path / name / key)
        if found == crc:
            continue
        what = (
            "is missing"
            if found is None
            else "exists but was never written (all fill value)"
            if crc is None
            else "is corrupt"
        )
        problems.append(f"{path / name / key}: checksum mismatch, chunk {key} of {name!r} {what}")
    return problems


def _file_problems(path: Path, table: dict[str, Any] | None, names: Iterable[str]) -> list[str]:
    """What the checksums find wrong with a store's extra files (those the table lists)."""
    files = (table or {}).get("files", {})
    return [
        f"{path / name}: checksum mismatch, the file is "
        + ("missing" if _crc(path / name) is None else "corrupt")
        for name in names
        if name in files and _crc(path / name) != files[name]
    ]


def _raise_first(path: Path, problems: list[str]) -> None:
    if problems:
        n = len(problems) - 1
        more = f"; {n} more problem{'s' if n > 1 else ''}" if n else ""
        raise StoreError(f"{problems[0]} (run `protprof verify {path}`{more})")


class ProfileStore:
    """A read-only view of a store. Residue data is memory-mapped lazily, so an instance
    pickles small (path and attributes; the receiver re-reads the offsets and checks the store
    is still the same one) and is safe to hand to DataLoader workers under any start method.

    Opening checks the metadata of every array and every chunk of the offsets and the
    per-sequence arrays against the store's checksums (a few MB per million sequences); each
    residue chunk is checked the first time it is read.
    """

    def __init__(self, path: str | Path, check: bool = True) -> None:
        self.path = Path(path)
        self.attrs = _read_attrs(self.path)
        self._table = _checksums(self.path, self.attrs)
        if check:
            _raise_first(
                self.path,
                [
                    problem
                    for name in ARRAYS
                    for problem in _array_problems(
                        self.path, self._table, name, chunks=name in INDEX_ARRAYS
                    )
                ],
            )
        self.offsets = self._read("offsets").astype(np.int64)
        self._validate()
        self._maps: dict[str, list[np.ndarray]] = {}
        self._checked: set[tuple[str, int]] = set()
        self._cache: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Path and attributes only: the receiving process reads the offsets again (no copy of
        # an 8 MB-per-million array per worker) and checks the store is still the same one.
        return {"path": self.path, "attrs": self.attrs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._maps, self._checked, self._cache = {}, set(), {}
        self._check_identity()
        self._table = _checksums(self.path, self.attrs)
        _raise_first(self.path, _array_problems(self.path, self._table, "offsets", chunks=True))
        self.offsets = self._read("offsets").astype(np.int64)

    def extra_file(self, name: str) -> bytes:
        """An extra file of the store (a cache segment's `keys.npy`), checked against its
        checksum when the store has one for it.

        Raises:
            StoreError: the file is missing, unreadable or does not match its checksum.
        """
        _raise_first(self.path, _file_problems(self.path, self._table, [name]))
        try:
            return (self.path / name).read_bytes()
        except OSError as e:
            raise StoreError(f"{self.path / name}: missing or unreadable ({e})") from e

    def _read(self, name: str) -> np.ndarray:
        try:
            return np.asarray(zarr.open_array(str(self.path / name), mode="r")[:])
        except Exception as e:  # zarr raises many types for malformed metadata and chunks
            raise StoreError(
                f"{self.path}: array {name!r} is missing or unreadable ({type(e).__name__}: {e})"
            ) from e

    @property
    def identity(self) -> str:
        """The store's `store_id` (the creation time for 1.0 stores, which have none)."""
        return str(self.attrs.get("store_id") or self.attrs.get("created"))

    def _check_identity(self) -> None:
        """Refuse to read files of a store replaced since this reader opened it (the offsets
        in memory would index someone else's data)."""
        on_disk = ProfileStore.__new__(ProfileStore)
        on_disk.attrs = _read_attrs(self.path)
        if on_disk.identity != self.identity:
            raise StoreError(
                f"{self.path}: the store was replaced while in use (opened {self.identity}, "
                f"now {on_disk.identity}); restart the reader"
            )

    def _validate(self) -> None:
        n, r = int(self.attrs["n_sequences"]), int(self.attrs["n_residues"])
        o = self.offsets
        if len(o) != n + 1 or o[0] != 0 or o[-1] != r or (np.diff(o) < 0).any():
            raise StoreError(
                f"{self.path}: corrupt offsets (need {n + 1} non-decreasing values from 0 to {r})"
            )
        for name, shape in (("tokens", (r,)), ("profiles", (r, N_STANDARD))):
            meta = _array_meta(self.path, name)
            try:
                found = (
                    tuple(meta["shape"]),
                    meta["data_type"],
                    [c["name"] for c in meta.get("codecs", [])],
                )
            except (KeyError, TypeError) as e:
                raise StoreError(
                    f"{self.path}/{name}/zarr.json: malformed array metadata "
                    f"({type(e).__name__}: {e})"
                ) from e
            if found != (shape, "uint8", ["bytes"]):
                raise StoreError(
                    f"{self.path}/{name}: expected uncompressed uint8 of shape {shape}, found "
                    f"{found[1]} {found[0]} with codecs {found[2]}"
                )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _array(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self._read(name)
        return self._cache[name]

    @property
    def ids(self) -> np.ndarray:
        """Query identifiers, in store order."""
        return self._array("ids")

    @property
    def n_hits(self) -> np.ndarray:
        """Alignment depth of each sequence (rows of its final alignment besides the query's)."""
        return self._array("n_hits")

    @property
    def neff(self) -> np.ndarray:
        """HMMER's effective sequence number of each final alignment."""
        return self._array("neff")

    @property
    def split(self) -> np.ndarray:
        """Split code of each sequence: 0 train, 1 valid, 2 test."""
        return self._array("split")

    @property
    def lengths(self) -> np.ndarray:
        """Residues per sequence."""
        return np.diff(self.offsets)

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of `tokens` or `profiles`, read through memory maps."""
        if stop <= start:
            return np.zeros((0,) if name == "tokens" else (0, N_STANDARD), dtype=np.uint8)
        maps = self._maps.get(name) or self._map(name)
        size = len(maps[0])
        first, last = start // size, (stop - 1) // size
        for c in range(first, last + 1):
            if (name, c) not in self._checked:
                self._check_chunk(name, c, maps[c])
        if first == last:
            return maps[first][start - first * size : stop - first * size]
        pieces = [
            maps[c][max(start - c * size, 0) : min(stop - c * size, size)]
            for c in range(first, last + 1)
        ]
        return np.concatenate(pieces)

    def check_sequences(self, indices: np.ndarray) -> None:
        """Check the residue chunks holding these sequences now (each chunk once per reader),
        rather than when they are first read.

        Raises:
            StoreError: a chunk is missing, truncated or does not match its checksum.
        """
        starts, stops = self.offsets[indices], self.offsets[np.asarray(indices) + 1]
        size, _, files = self._chunk_files("tokens")
        keep = stops > starts
        # Chunks touched: +1 where a sequence's first chunk is, -1 after its last.
        marks = np.zeros(len(files) + 1, np.int64)
        np.add.at(marks, starts[keep] // size, 1)
        np.add.at(marks, (stops[keep] - 1) // size + 1, -1)
        touched = np.flatnonzero(np.cumsum(marks)[: len(files)] > 0)
        for name in RESIDUE_ARRAYS:
            maps = self._maps.get(name) or self._map(name)
            for c in touched.tolist():
                if (name, c) not in self._checked:
                    self._check_chunk(name, c, maps[c])

    def gather(self, name: str, rows: np.ndarray) -> np.ndarray:
        """The rows of `tokens` or `profiles` at these residue indices (any order): one
        fancy-indexing read per chunk file touched, through the memory maps."""
        maps = self._maps.get(name) or self._map(name)
        size = len(maps[0])
        out = np.empty((len(rows), *maps[0].shape[1:]), dtype=np.uint8)
        if not len(rows):
            return out
        first, last = int(rows.min()) // size, int(rows.max()) // size
        for c in range(first, last + 1):  # rows of a few sequences: one or two chunks
            if (name, c) not in self._checked:
                self._check_chunk(name, c, maps[c])
            if first == last:
                out[:] = maps[c][rows - c * size]
                break
            picked = (rows >= c * size) & (rows < (c + 1) * size)
            out[picked] = maps[c][rows[picked] - c * size]
        return out

    def _check_chunk(self, name: str, c: int, chunk: np.ndarray) -> None:
        """Check a chunk the first time it is read (~1 ms per 5 MiB chunk for the checksum):
        its checksum, or for 1.0 stores without checksums, its invariants."""
        checksums = self._table
        if checksums:
            if zlib.crc32(chunk.data) != checksums[name][c]:
                raise StoreError(
                    f"{self._chunk_files(name)[2][c]}: checksum mismatch, chunk "
                    f"{c} of {name!r} is corrupt (run `protprof verify`)"
                )
        else:
            problem = self._invariant_problem(name, c, chunk)
            if problem:
                raise StoreError(f"{self._chunk_files(name)[2][c]}: {problem}")
        self._checked.add((name, c))

    def _invariant_problem(self, name: str, c: int, chunk: np.ndarray) -> str | None:
        """What is wrong with the real rows of a chunk, if anything: token ids must be
        residues, quantised profile rows must sum to 255."""
        size, r = len(chunk), int(self.attrs["n_residues"])
        rows = np.asarray(chunk[: max(0, min(size, r - c * size))])
        if name == "tokens":
            bad = np.flatnonzero((rows < FIRST_RESIDUE) | (rows >= VOCAB_SIZE))
            what = "a token id that is not a residue"
        else:
            bad = np.flatnonzero(rows.sum(axis=1, dtype=np.uint32) != QUANT)
            what = f"a profile row that does not sum to {QUANT}"
        if len(bad):
            return f"chunk {c} of {name!r} is corrupt: row {c * size + int(bad[0])} has {what}"
        return None

    def _chunk_files(self, name: str) -> tuple[int, tuple[int, ...], list[Path]]:
        """Rows per chunk, row shape and chunk files of `tokens` or `profiles`."""
        r, rows = int(self.attrs["n_residues"]), int(self.attrs["chunk_rows"])
        width = () if name == "tokens" else (N_STANDARD,)
        return min(rows, max(1, r)), width, _chunk_paths(self.path, name, r, rows)

    def _map(self, name: str) -> list[np.ndarray]:
        self._check_identity()
        size, width, files = self._chunk_files(name)
        try:
            maps: list[np.ndarray] = [
                np.memmap(f, dtype=np.uint8, mode="r", shape=(size, *width)) for f in files
            ]
        except (OSError, ValueError) as e:
            raise StoreError(f"{self.path}/{name}: chunk file missing or truncated ({e})") from e
        self._maps[name] = maps
        return maps

    def chunk_problems(self) -> list[str]:
        """Missing or wrongly sized chunk files (a cheap `stat` of each, no reading)."""
        problems = []
        for name in RESIDUE_ARRAYS:
            size, width, files = self._chunk_files(name)
            expected = size * (width[0] if width else 1)
            for c, f in enumerate(files):
                if not f.is_file():
                    problems.append(f"{f}: chunk {c} of {name!r} is missing")
                elif f.stat().st_size != expected:
                    problems.append(
                        f"{f}: chunk {c} of {name!r} has {f.stat().st_size} bytes, "
                        f"expected {expected} (truncated or overwritten)"
                    )
        return problems

    def tokens(self, i: int) -> np.ndarray:
        """Residue token ids (uint8) of sequence i."""
        return self.rows("tokens", int(self.offsets[i]), int(self.offsets[i + 1]))

    def sequence(self, i: int) -> str:
        """The residues of sequence i as a string."""
        return decode(self.tokens(i))

    def quantised_profile(self, i: int) -> np.ndarray:
        """The stored (L, 20) uint8 profile of sequence i (rows sum to 255)."""
        return self.rows("profiles", int(self.offsets[i]), int(self.offsets[i + 1]))

    def profile(self, i: int) -> np.ndarray:
        """The (L, 20) float32 profile of sequence i; rows sum to 1."""
        return dequantise(self.quantised_profile(i))

    def read_all(self) -> StoreData:
        """Every column in memory (for assembling and tests)."""
        return StoreData(
            ids=[str(x) for x in self.ids],
            tokens=self._read_rows("tokens"),
            profiles=self._read_rows("profiles"),
            offsets=self.offsets.copy(),
            n_hits=self.n_hits,
            neff=self.neff,
            split=self.split,
        )

    def _read_rows(self, name: str) -> np.ndarray:
        """All rows of `tokens` or `profiles`, read straight into one array: no memory maps
        left holding pages after the data is copied (assemble reads shard after shard)."""
        size, width, files = self._chunk_files(name)
        out = np.empty((int(self.attrs["n_residues"]), *width), dtype=np.uint8)
        for c, path in enumerate(files):
            try:
                raw = path.read_bytes()
            except OSError as e:
                raise StoreError(f"{self.path}/{name}: chunk file unreadable ({e})") from e
            chunk = np.frombuffer(raw, dtype=np.uint8)
            if len(chunk) != size * (width[0] if width else 1):
                raise StoreError(f"{path}: chunk file truncated or overwritten")
            chunk = chunk.reshape(size, *width)
            self._check_chunk(name, c, chunk)
            part = out[c * size : (c + 1) * size]
            part[:] = chunk[: len(part)]
        return out


def _is_store(path: Path) -> bool:
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return path.is_dir() and isinstance(attrs, dict) and attrs.get("format") == FORMAT


STORE = Kind("a protprof store", _is_store)


def _array_meta(path: Path, name: str) -> dict[str, Any]:
    try:
        return dict(json.loads((path / name / "zarr.json").read_text()))
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: array {name!r} is missing or unreadable ({e})") from e


def _read_attrs(path: Path) -> dict[str, Any]:
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: not a protprof store (no zarr.json; incomplete or wrong path)")
    try:
        attrs = dict(json.loads((path / "zarr.json").read_text()).get("attributes", {}))
    except ValueError as e:
        raise StoreError(f"{path}/zarr.json: not valid JSON ({e})") from e
    if attrs.get("format") != FORMAT:
        raise StoreError(f"{path}: not a protprof store (format is {attrs.get('format')!r})")
    version = str(attrs.get("format_version", ""))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) != SUPPORTED_MAJOR:
        raise StoreError(
            f"{path}: store format version {version!r} is not supported by protprof "
            f"{__version__} (reads {SUPPORTED_MAJOR}.x)"
        )
    return attrs


def open_store(path: str | Path) -> ProfileStore:
    """Open a store read-only, validating its format version, arrays and offsets.

    Raises:
        StoreError: missing, unknown format version, missing arrays or corrupt offsets.
    """
    return ProfileStore(path)


def verify(path: str | Path) -> list[str]:
    """Check everything in a store and return what is wrong (empty: nothing found).

    Reads every file once: each array's metadata and chunks against the checksums (what the
    store's format version has: see `unchecked`), the extra files', chunk sizes, the
    invariants (offsets run from 0 to the residue count, token ids are residues, quantised rows
    sum to 255) and the per-sequence arrays (lengths, unique ids, split codes, counts).

    Raises:
        StoreError: the store cannot be opened at all, or its checksums were removed.
    """
    path = Path(path)
    attrs = _read_attrs(path)
    table = _checksums(path, attrs)
    problems = [
        problem
        for name in ARRAYS
        for problem in _array_problems(path, table, name, chunks=name in INDEX_ARRAYS)
    ]
    problems += _file_problems(path, table, (table or {}).get("files", {}))
    try:
        store = ProfileStore(path, check=False)
    except StoreError as e:  # offsets or residue metadata that locate no rows
        return [*problems, str(e)]
    problems += store.chunk_problems()
    for name in RESIDUE_ARRAYS:
        size, width, files = store._chunk_files(name)
        for c, f in enumerate(files):
            if any(p.startswith(f"{f}:") for p in problems):
                continue
            chunk = np.fromfile(f, dtype=np.uint8).reshape(size, *width)
            expected = table[name][c] if table and c < len(table[name]) else None
            if table and zlib.crc32(chunk.data) != expected:
                problems.append(f"{f}: checksum mismatch, chunk {c} of {name!r} is corrupt")
            problem = store._invariant_problem(name, c, chunk)
            if problem:
                problems.append(f"{f}: {problem}")
    n = len(store)
    for name in ("ids", *_PER_SEQUENCE):
        try:
            values = store._array(name)
        except StoreError as e:
            problems.append(str(e))
            continue
        if len(values) != n:
            problems.append(f"{store.path}/{name}: {len(values)} values for {n} sequences")
        elif name == "ids" and len(set(map(str, values))) != n:
            problems.append(f"{store.path}/ids: identifiers repeat")
        elif name == "split" and not np.isin(values, range(len(SPLIT_NAMES))).all():
            problems.append(f"{store.path}/split: codes other than 0, 1, 2")
        elif name == "n_hits" and (values < 0).any():
            problems.append(f"{store.path}/n_hits: negative counts")
        elif name == "neff" and not (np.isfinite(values) & (values >= 0)).all():
            problems.append(f"{store.path}/neff: values that are not finite and >= 0")
    return problems


def unchecked(path: str | Path) -> list[str]:
    """What a store's format version has no checksums for (empty for 1.2 and later): `verify`
    checks those parts by their invariants only, so a store listing any is never "intact"."""
    version = _version(_read_attrs(Path(path)))
    if version < (1, 1):
        return [*ARRAYS, "the arrays' metadata"]
    if version < (1, 2):
        return [*INDEX_ARRAYS, "the arrays' metadata"]
    return []


def summary(store: ProfileStore) -> dict[str, Any]:
    """A JSON-able summary: counts, sizes, statistics and provenance."""
    lengths = store.lengths
    on_disk = sum(f.stat().st_size for f in store.path.rglob("*") if f.is_file())
    n_res = int(store.attrs["n_residues"])
    return {
        "path": str(store.path),
        "format": store.attrs["format"],
        "format_version": store.attrs["format_version"],
        "n_sequences": len(store),
        "n_residues": n_res,
        "length": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "max": int(lengths.max()) if len(lengths) else 0,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
        },
        "split": {name: int((store.split == k).sum()) for k, name in enumerate(SPLIT_NAMES)},
        # Stores from `protprof import` count their profiles; older stores were all searched.
        "sources": store.attrs.get("source_counts", {"imported": 0, "searched": len(store)}),
        "no_hits": int((store.n_hits == 0).sum()),
        "n_hits_median": float(np.median(store.n_hits)) if len(store) else 0.0,
        "neff_median": float(np.median(store.neff)) if len(store) else 0.0,
        "bytes_on_disk": on_disk,
        "bytes_per_residue": on_disk / n_res if n_res else None,
        "problems": store.chunk_problems(),
        "provenance": {
            k: v
            for k, v in store.attrs.items()
            if k not in ("format", "format_version", "n_sequences", "n_residues", "checksums")
        },
    }


def assemble(shards: list[Path], out: Path, ingest: dict[str, Any] | None = None) -> Path:
    """Concatenate shard stores into one, refusing shards made with different settings.

    `ingest`, the settings the shards' queries were ingested with, is recorded as provenance.
    """
    stores = [open_store(p) for p in shards]
    if not stores:
        raise StoreError("assemble: no shard stores given")
    keys = ("database", "search", "profile")
    reference = {k: stores[0].attrs.get(k) for k in keys}
    for store in stores[1:]:
        for k in keys:
            if store.attrs.get(k) != reference[k]:
                raise StoreError(
                    f"{store.path}: its {k} settings differ from {stores[0].path}'s; "
                    "rebuild the shards with one configuration"
                )
    settings = {settings_of(s.attrs.get("reuse")) for s in stores}
    if len(settings) > 1:
        raise StoreError(
            f"assemble: the shards were searched with different reuse settings {sorted(settings)}"
            "; rebuild them with one configuration"
        )
    seen: dict[str, Path] = {}
    for store in stores:
        for query_id in map(str, store.ids):
            if query_id in seen:
                raise StoreError(
                    f"assemble: query {query_id!r} is in both {seen[query_id]} and {store.path}"
                )
            seen[query_id] = store.path
    kept = (*keys, "pyhmmer_version", "database_chunks")
    extra = {k: v for k, v in stores[0].attrs.items() if k in kept}
    extra.update({"ingest": ingest} if ingest else {})
    extra["reuse"] = combined_summary([s.attrs.get("reuse") for s in stores], len(seen))
    # One shard in memory at a time: a UniRef-scale dataset need not fit in the gather job.
    sizes = len(seen), sum(int(s.attrs["n_residues"]) for s in stores)
    return write_stores(
        out, (s.read_all() for s in stores), {**extra, "n_shards": len(stores)}, sizes=sizes
    )
