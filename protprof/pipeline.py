"""The stages the workflow's rules call, as plain functions: ingest, search a shard, assemble.

`build` chains them on one machine without Snakemake.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyhmmer

from protprof._atomic import Kind, atomic_output
from protprof.alphabet import encode
from protprof.errors import InputFormatError, StoreError
from protprof.fasta import Record, read_fasta
from protprof.ingest import SPLITS, IngestParams, select_records, split_of, write_shards
from protprof.profiles import ProfileParams, profile_from_msa
from protprof.search import Database, JackhmmerSearch, QueryResult, SearchParams
from protprof.store import StoreData, open_store, quantise, write_stores

log = logging.getLogger(__name__)
MSA_FORMATS = {"stockholm": ".sto", "a2m": ".a2m"}


def ingest(
    paths: list[Path], shard_paths: list[Path], params: IngestParams
) -> list[int]:
    """Validate queries and write one FASTA per shard; the header carries the split."""
    records = select_records(paths, params)
    labelled = [
        Record(r.id, r.sequence, f"split={SPLITS[split_of(r.sequence, params)]}") for r in records
    ]
    return write_shards(labelled, shard_paths)


def _split_code(record: Record, path: Path) -> int:
    for field in record.description.split():
        key, _, value = field.partition("=")
        if key == "split" and value in SPLITS:
            return SPLITS.index(value)
    raise InputFormatError(
        f"{path}: record {record.id!r} has no 'split=train|valid|test' in its header; shard "
        "files are written by `protprof ingest`"
    )


@dataclass(frozen=True)
class _Profiled:
    """A search result with its profile, computed in the search's worker thread."""

    result: QueryResult
    profile: np.ndarray  # (L, 20) uint8, quantised
    neff: float


def _store_part(profiled: list[_Profiled], splits: list[int]) -> StoreData:
    results = [p.result for p in profiled]
    lengths = [len(r.sequence) for r in results]
    return StoreData(
        ids=[r.id for r in results],
        tokens=np.concatenate([encode(r.sequence) for r in results]) if results else
        np.zeros(0, np.uint8),
        profiles=np.concatenate([p.profile for p in profiled]) if profiled else
        np.zeros((0, 20), np.uint8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        n_hits=np.array([r.n_hits for r in results], dtype=np.int32),
        neff=np.array([p.neff for p in profiled], dtype=np.float32),
        split=np.array(splits, dtype=np.uint8),
    )


MSA_INDEX = "index.tsv"
_MSA_INDEX_HEADER = "# protprof alignments: query_id<TAB>file\n"


def msa_filename(query_id: str, msa_format: str) -> str:
    """A file name for a query's alignment: percent-encoded (`/` and `%` among others), so
    distinct IDs (`q/1`, `q_1`) never share a file and the ID can be read back
    (`urllib.parse.unquote`). UniProt IDs (`sp|P69905|HBA_HUMAN`) stay as they are."""
    name = quote(query_id, safe="|:=+,@")
    name = "%2E" + name[1:] if name.startswith(".") else name  # no hidden files, no `..`
    return name + MSA_FORMATS[msa_format]


def _is_msa_dir(path: Path) -> bool:
    try:
        with open(path / MSA_INDEX) as handle:
            return handle.readline() == _MSA_INDEX_HEADER
    except (OSError, UnicodeDecodeError):
        return False


MSA_DIR = Kind("a protprof alignment folder (with index.tsv)", _is_msa_dir)


def _write_msas(results: list[QueryResult], msa_dir: Path, msa_format: str) -> None:
    with atomic_output(msa_dir, MSA_DIR) as tmp:
        tmp.mkdir(parents=True)
        index = [_MSA_INDEX_HEADER]
        for r in results:
            name = msa_filename(r.id, msa_format)
            with open(tmp / name, "wb") as handle:
                r.msa.write(handle, msa_format)
            index.append(f"{r.id}\t{name}\n")
        (tmp / MSA_INDEX).write_text("".join(index))


def provenance(fingerprint: dict[str, Any], search: SearchParams, profile: ProfileParams,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Root attributes that say how a store was made."""
    return {
        "pyhmmer_version": pyhmmer.__version__,
        "database": fingerprint,
        "search": {**asdict(search), "Z": fingerprint["n_sequences"]},
        "profile": asdict(profile),
        **(extra or {}),
    }


def search_records(
    records: list[Record], splits: list[int], database: Database, search: SearchParams,
    profile: ProfileParams, threads: int, out: Path, msa_dir: Path | None = None,
    msa_format: str = "stockholm", progress: Callable[[object], None] | None = None,
    extra_attrs: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """Search records, build their profiles and write one store at `out` (atomically)."""
    z = int(database.fingerprint["n_sequences"])  # type: ignore[call-overload]
    profiled = JackhmmerSearch(database.block, search, threads, z).run(
        records, progress, lambda r: _profile(r, profile)
    )
    return _write(profiled, splits, out, provenance(database.fingerprint, search, profile,
                                                     extra_attrs), msa_dir, msa_format)  # fmt: skip


def _profile(result: QueryResult, params: ProfileParams) -> _Profiled:
    values, neff = profile_from_msa(result.msa, result.id, len(result.sequence), params,
                                    result.hmm)
    return _Profiled(result, quantise(values), neff)


def _write(profiled: list[_Profiled], splits: list[int], out: Path, attrs: dict[str, Any],
           msa_dir: Path | None, msa_format: str) -> Path:  # fmt: skip
    if msa_dir is not None:
        _write_msas([p.result for p in profiled], msa_dir, msa_format)
    return write_stores(out, [_store_part(profiled, splits)], attrs)


def read_shard(shard: Path) -> tuple[list[Record], list[int]]:
    """The records of a shard FASTA written by `ingest`, and their split codes."""
    # An empty shard is valid (ingest writes every shard); anything else must be FASTA.
    records = [] if shard.is_file() and shard.stat().st_size == 0 else read_fasta(shard)
    return records, [_split_code(r, shard) for r in records]


def finish_chunked_shard(shard: Path, results: list[QueryResult], fingerprint: dict[str, Any],
                         search: SearchParams, profile: ProfileParams, out: Path,
                         msa_dir: Path | None = None, msa_format: str = "stockholm") -> Path:  # fmt: skip
    """Profiles and the shard store from a chunked search's final alignments."""
    _, splits = read_shard(shard)
    profiled = [_profile(r, profile) for r in results]
    attrs = provenance(fingerprint, search, profile, {"database_chunks": True})
    return _write(profiled, splits, out, attrs, msa_dir, msa_format)


def search_shard(shard: Path, database: Database, search: SearchParams, profile: ProfileParams,
                 threads: int, out: Path, **kwargs: Any) -> Path:  # fmt: skip
    """Search one shard FASTA written by `ingest` (an empty shard gives an empty store)."""
    records, splits = read_shard(shard)
    return search_records(records, splits, database, search, profile, threads, out, **kwargs)


def assemble(shards: list[Path], out: Path) -> Path:
    """Concatenate shard stores into one, refusing shards made with different settings."""
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
    seen: dict[str, Path] = {}
    for store in stores:
        for query_id in map(str, store.ids):
            if query_id in seen:
                raise StoreError(f"assemble: query {query_id!r} is in both {seen[query_id]} and "
                                 f"{store.path}")  # fmt: skip
            seen[query_id] = store.path
    extra = {k: v for k, v in stores[0].attrs.items() if k in (*keys, "pyhmmer_version")}
    # One shard in memory at a time: a UniRef-scale dataset need not fit in the gather job.
    sizes = len(seen), sum(int(s.attrs["n_residues"]) for s in stores)
    return write_stores(out, (s.read_all() for s in stores), {**extra, "n_shards": len(stores)},
                        sizes=sizes)  # fmt: skip


def build(
    records: list[Record], database: Database, out: Path, threads: int, ingest_params: IngestParams,
    search: SearchParams, profile: ProfileParams, **kwargs: Any,
) -> Path:  # fmt: skip
    """Search, profile and store records from `select_records` on one machine: what the
    workflow does, unsharded."""
    splits = [split_of(r.sequence, ingest_params) for r in records]
    extra = {"ingest": asdict(ingest_params)}
    return search_records(records, splits, database, search, profile, threads, out,
                          extra_attrs=extra, **kwargs)  # fmt: skip
