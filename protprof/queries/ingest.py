"""Ingest: validate query FASTA files, drop duplicates, apply length limits, and assign each
unique sequence to a shard (a stable hash of its sequence) and a split (by homology cluster,
or by the sequence hash).

Ingest owns the shard file format: plain FASTA whose headers carry the split
(`>id split=train`), written by `ingest` and read back by `read_shard`.

Hashing the *sequence* (not the ID or file position) means adding queries later moves no old
query to another shard, and identical sequences always meet in the same shard.

Splits (`split_method`):
- `mmseqs` (default): every sequence of a homology cluster (`clusters.homology_clusters`,
  single linkage at >= `split_identity` identity over >= `split_coverage` of both sequences)
  gets the split its *anchor* hashes to: the member with the smallest sequence hash. So no
  cluster spans two splits, and a query that has no homolog gets the split the `hash` method
  would give it. Adding queries moves an old query only when its cluster merges with another
  (a new query homologous to both, or to its cluster across the thresholds) and the merged
  cluster's anchor hashes to another split, or when a new query joins its cluster with a
  smaller hash than the anchor's and hashes to another split. Removing queries can split a
  cluster, and its parts then follow their own anchors.
- `hash`: each sequence by its own hash; stable under any addition, but close homologs of a
  test sequence sit in training.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protprof.atomic import Kind, atomic_output
from protprof.errors import ConfigError, InputFormatError
from protprof.params import check_params, param
from protprof.queries.clusters import COVERAGE_MODE, EVALUE, SENSITIVITY, homology_clusters
from protprof.queries.fasta import Record, read_fasta, write_fasta

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
_BUCKETS = 10_000


TOO_LONG = ("crop", "skip")
SPLIT_METHODS = ("mmseqs", "hash")


@dataclass(frozen=True)
class IngestParams:
    """Length limits and split fractions for ingest: every default, bound and help text of
    ingest's options, the workflow's `ingest:` keys and their schema (`protprof.params`)."""

    min_length: int = param(20, help="skip queries shorter than this", bounds="[1, inf)")
    max_length: int = param(1000, help="crop or skip longer queries", bounds="[1, inf)")
    too_long: str = param(
        "crop",
        help="crop: keep the first max_length residues; skip: drop the record",
        choices=TOO_LONG,
    )
    valid_fraction: float = param(
        0.1,
        help="share of sequences in the valid split (stable sequence hash)",
        bounds="[0, 1)",
    )
    test_fraction: float = param(0.05, help="share in the test split", bounds="[0, 1)")
    split_method: str = param(
        "mmseqs",
        help="mmseqs: whole homology clusters (MMseqs2) per split; hash: each sequence by "
        "its hash (homologs may share splits)",
        choices=SPLIT_METHODS,
    )
    split_identity: float = param(
        0.3, help="mmseqs: cluster sequences at this identity or more", bounds="(0, 1]"
    )
    split_coverage: float = param(
        0.8,
        help="mmseqs: ... whose alignment covers this share of both sequences",
        bounds="(0, 1]",
    )

    def __post_init__(self) -> None:
        check_params(self, "ingest")
        if self.min_length > self.max_length:
            raise ConfigError(
                f"ingest: need 1 <= min_length <= max_length, got {self.min_length}, "
                f"{self.max_length}"
            )
        if self.valid_fraction + self.test_fraction >= 1:
            raise ConfigError("ingest: valid_fraction + test_fraction must lie in [0, 1)")


@dataclass(frozen=True)
class ShardParams:
    """How many search jobs a full build's queries are cut into (`protprof plan --shards`,
    the workflow's `shards`; a shard's queries are those `shard_of` assigns it)."""

    shards: int = param(
        4,
        help="search jobs for a full build (an update gets proportionally fewer)",
        bounds="[1, inf)",
    )


def _digest(sequence: str) -> int:
    return int.from_bytes(hashlib.sha256(sequence.encode("ascii")).digest()[:16], "big")


def shard_of(sequence: str, n_shards: int) -> int:
    """Return the shard (0-based) of a sequence: stable for a fixed shard count."""
    return _digest(sequence) % n_shards


def _hash_split(sequence: str, params: IngestParams) -> int:
    bucket = (_digest(sequence) >> 64) % _BUCKETS
    if bucket < params.test_fraction * _BUCKETS:
        return 2
    if bucket < (params.test_fraction + params.valid_fraction) * _BUCKETS:
        return 1
    return 0


def split_of(sequence: str, params: IngestParams) -> int:
    """The split code (0 train, 1 valid, 2 test) of one sequence by the `hash` method:
    independent of the shard count and of the other sequences.

    Raises:
        ConfigError: `params` asks for cluster splits, which depend on every sequence: those
            come from `assign_splits` (a per-sequence hash there would put homologs of test
            sequences in training while the store's provenance says they are not).
    """
    if params.split_method != "hash":
        raise ConfigError(
            f"split_of gives the hash method's split; split_method {params.split_method!r} "
            "needs every sequence at once: use ingest.assign_splits"
        )
    return _hash_split(sequence, params)


def assign_splits(sequences: list[str], params: IngestParams, threads: int = 1) -> list[int]:
    """The split code of each sequence by `params.split_method` (module docstring).

    Raises:
        ConfigError: `mmseqs` without MMseqs2 on PATH.
    """
    if params.split_method == "hash":
        return [_hash_split(s, params) for s in sequences]
    if params.valid_fraction == params.test_fraction == 0:
        return [0] * len(sequences)  # one split: no clustering needed
    labels = homology_clusters(sequences, params.split_identity, params.split_coverage, threads)
    anchors: dict[int, str] = {}
    for label, sequence in zip(labels, sequences, strict=True):
        if label not in anchors or _digest(sequence) < _digest(anchors[label]):
            anchors[label] = sequence
    split = {label: _hash_split(anchor, params) for label, anchor in anchors.items()}
    return [split[label] for label in labels]


def ingest_attrs(params: IngestParams) -> dict[str, Any]:
    """The store's `ingest` attribute: the parameters, and the split's fixed MMseqs2 settings."""
    record: dict[str, Any] = asdict(params)
    if params.split_method == "mmseqs":
        record["split"] = {
            "clusters": "connected components of mmseqs easy-search, all against all",
            "min_seq_id": params.split_identity,
            "coverage": params.split_coverage,
            "cov_mode": COVERAGE_MODE,
            "evalue": EVALUE,
            "sensitivity": SENSITIVITY,
            "anchor": "the member with the smallest sequence hash",
        }
    return record


def select_records(paths: list[Path], params: IngestParams) -> list[Record]:
    """Read every query file, apply length limits and drop repeated sequences.

    Raises:
        InputFormatError: a bad file, an ID repeated across files, or nothing left to search.
        InvalidSequenceError: a bad record (see `fasta.read_fasta`).
    """
    kept: list[Record] = []
    ids: dict[str, Path] = {}
    sequences: set[str] = set()
    too_short = too_long = duplicates = cropped = 0
    for path in paths:
        for record in read_fasta(path):
            if record.id in ids:
                raise InputFormatError(
                    f"{path}: record ID {record.id!r} already appeared in {ids[record.id]}"
                )
            ids[record.id] = path
            sequence = record.sequence
            if len(sequence) < params.min_length:
                too_short += 1
                continue
            if len(sequence) > params.max_length:
                if params.too_long == "skip":
                    too_long += 1
                    continue
                sequence, cropped = sequence[: params.max_length], cropped + 1
            if sequence in sequences:
                duplicates += 1
                continue
            sequences.add(sequence)
            kept.append(Record(record.id, sequence))
    log.info(
        "ingest: kept %d sequences; skipped %d shorter than %d, %d longer than %d; cropped %d; "
        "dropped %d repeated sequences",
        len(kept),
        too_short,
        params.min_length,
        too_long,
        params.max_length,
        cropped,
        duplicates,
    )
    if not kept:
        raise InputFormatError(f"{', '.join(map(str, paths))}: no sequence passed the filters")
    return kept


def _is_shard(path: Path) -> bool:
    """A shard FASTA written by `ingest`: empty, or its first header carries the split."""
    try:
        with open(path, encoding="ascii") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return path.is_file() and (not first or (first.startswith(">") and " split=" in first))


SHARD = Kind("a shard FASTA of `protprof ingest`", _is_shard)


def write_shards(records: list[Record], out_paths: list[Path]) -> list[int]:
    """Write each record to the shard its sequence hashes to; returns the count per shard.

    Every shard file is written, even an empty one, so the workflow's outputs always exist.
    """
    shards: list[list[Record]] = [[] for _ in out_paths]
    for record in records:
        shards[shard_of(record.sequence, len(out_paths))].append(record)
    for path, shard in zip(out_paths, shards, strict=True):
        with atomic_output(path, SHARD) as tmp:
            write_fasta(tmp, shard)
    return [len(s) for s in shards]


def ingest(
    paths: list[Path], shard_paths: list[Path], params: IngestParams, threads: int = 1
) -> list[int]:
    """Validate queries and write one FASTA per shard; the header carries the split."""
    records = select_records(paths, params)
    splits = assign_splits([r.sequence for r in records], params, threads)
    labelled = [
        Record(r.id, r.sequence, f"split={SPLITS[k]}")
        for r, k in zip(records, splits, strict=True)
    ]
    log.info(
        "ingest: split by %s: %s",
        params.split_method,
        {name: splits.count(k) for k, name in enumerate(SPLITS)},
    )
    return write_shards(labelled, shard_paths)


def _split_code(record: Record, path: Path) -> int:
    for word in record.description.split():
        key, _, value = word.partition("=")
        if key == "split" and value in SPLITS:
            return SPLITS.index(value)
    raise InputFormatError(
        f"{path}: record {record.id!r} has no 'split=train|valid|test' in its header; shard "
        "files are written by `protprof ingest`"
    )


def read_shard(shard: Path) -> tuple[list[Record], list[int]]:
    """The records of a shard FASTA written by `ingest`, and their split codes."""
    # An empty shard is valid (ingest writes every shard); anything else must be FASTA.
    records = [] if shard.is_file() and shard.stat().st_size == 0 else read_fasta(shard)
    return records, [_split_code(r, shard) for r in records]
