"""Profiles from alignments that already exist: the alignment-file source.

A jackhmmer search against UniRef90 costs core-hours per query; building HMMER's model of a
finished alignment costs milliseconds. `read_alignments` reads the files `files.discover`
finds (a3m, Stockholm, aligned FASTA/a2m; `formats`) and applies the ingest rules;
`write_imported` applies the alignment filters exactly as a search's alignment gets them,
builds each profile as `profiles.profile_from_msa` builds a searched one, and writes a store
with `sources.tsv` (each sequence's files and their SHA-256).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyhmmer

from protprof.alignments import formats
from protprof.alignments.files import Found, ImportParams, discover, in_shard
from protprof.alignments.filters import FilterParams, filter_msa
from protprof.alignments.profiles import Profiled, ProfileParams, build_hmm, profile_from_msa
from protprof.errors import InputFormatError
from protprof.jackhmmer import alignment_depth
from protprof.queries.ingest import IngestParams
from protprof.store.sources_table import SOURCES_FILE, Source, format_sources
from protprof.store.zarr_store import columns, quantise, write_stores

log = logging.getLogger(__name__)


def merge(alignments: Sequence[formats.Alignment]) -> formats.Alignment:
    """One alignment of the rows of several alignments of the same query: the query once, then
    each file's rows in order, a row already there (the same residues in the same columns)
    dropped. Consensus columns line up by the query's residues; each insert block is as wide
    as the widest of the files' blocks there, a file's insertions left-justified in it."""
    first = alignments[0]
    matrices = [formats.msa_matrix(a.msa) for a in alignments]
    length = len(first.query)
    # For each alignment, the column where each of the L + 1 insert blocks starts and ends.
    bounds = []
    for matrix in matrices:
        consensus = np.flatnonzero(matrix[0] != formats.GAP)
        starts = np.concatenate([[0], consensus + 1])
        stops = np.concatenate([consensus, [matrix.shape[1]]])
        bounds.append((consensus, starts, stops))
    widths = np.max([stops - starts for _, starts, stops in bounds], axis=0)
    block_start = np.concatenate([[0], np.cumsum(widths[:-1] + 1)])  # where block k begins
    n_columns = int(widths.sum()) + length
    rows: list[np.ndarray] = []
    names: list[str] = []
    seen: set[bytes] = set()
    for alignment, matrix, (consensus, starts, stops) in zip(
        alignments, matrices, bounds, strict=True
    ):
        merged = np.full((len(matrix), n_columns), formats.GAP, np.uint8)
        merged[:, block_start[:-1] + widths[:-1]] = matrix[:, consensus]
        for k in range(length + 1):
            width = stops[k] - starts[k]
            merged[:, block_start[k] : block_start[k] + width] = matrix[:, starts[k] : stops[k]]
        labels = [str(s.name) for s in alignment.msa.sequences]
        for i, row in enumerate(merged):
            key = row.tobytes()
            if key in seen:
                continue
            seen.add(key)
            rows.append(row)
            names.append(labels[i])
    _, _, matrix = formats.normalise(np.stack(rows))
    msa = formats.msa_from_matrix(names, matrix, first.query_id)
    sha = hashlib.sha256("".join(a.sha256 for a in alignments).encode()).hexdigest()
    return replace(first, sha256=sha, msa=msa)


@dataclass(frozen=True)
class Item:
    """One query's alignment as read (merged, cropped), ready to profile: `id` and `sequence`
    as for a query record, the file(s) it came from and their SHA-256."""

    id: str
    sequence: str
    alignment: formats.Alignment
    paths: tuple[Path, ...]
    sha256: tuple[str, ...]


def read_found(item: Found, params: ImportParams, ingest: IngestParams) -> Item | None:
    """The (merged, cropped) alignment of one query, or None when ingest skips it."""
    alignments = [formats.read_alignment(p, params.fmt, params.query_id) for p in item.paths]
    alignment = alignments[0]
    for other in alignments[1:]:
        if other.query != alignment.query:
            raise InputFormatError(
                f"{other.path}: its query differs from the query of {alignment.path} "
                f"(chain {item.id!r}): they cannot be merged"
            )
    if len(alignments) > 1:
        alignment = merge(alignments)
    length = len(alignment.query)
    if length < ingest.min_length:
        return None
    if length > ingest.max_length:
        if ingest.too_long == "skip":
            return None
        alignment = formats.crop(alignment, ingest.max_length)
    return Item(
        item.id, alignment.query, alignment, item.paths, tuple(a.sha256 for a in alignments)
    )


@dataclass
class Read:
    """What `read_alignments` found: one item per distinct query sequence, and what it left."""

    items: list[Item]
    skipped: int  # by the length limits
    missing: list[str]  # openfold chains without a picked file (--skip-missing)
    repeated: list[dict[str, Any]]  # sequences met again in a later file


def read_alignments(
    inputs: Sequence[str | Path],
    params: ImportParams,
    ingest: IngestParams,
    threads: int = 1,
    shard: tuple[int, int] | None = None,
) -> Read:
    """Find and read every alignment `inputs` hold (those of import job `shard` = (k, n) only,
    if given). A sequence found in several files is imported once, from the first in argument
    order; the others are listed in `repeated`.

    Raises:
        InputFormatError: a missing or malformed file, a folder without alignments, an ID
            given twice, or nothing left to import.
    """
    discovery = discover(inputs, params)
    if not discovery.found:
        raise InputFormatError(f"{', '.join(map(str, inputs))}: no alignment found")
    ids: dict[str, Found] = {}
    for found in discovery.found:
        if found.id in ids:
            raise InputFormatError(
                f"{found.paths[0]}: ID {found.id!r} already came from {ids[found.id].paths[0]}"
            )
        ids[found.id] = found
    mine = [found for found in discovery.found if in_shard(found, shard)]
    chosen: dict[str, Item] = {}
    repeated: list[dict[str, Any]] = []
    skipped = 0
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for item in pool.map(lambda f: read_found(f, params, ingest), mine):
            if item is None:
                skipped += 1
                continue
            first = chosen.setdefault(item.sequence, item)
            if first is not item:
                same = "the same" if first.alignment.sha256 == item.alignment.sha256 else "another"
                repeated.append(
                    {
                        "id": item.id,
                        "file": str(item.paths[0]),
                        "used": first.id,
                        "why": f"the same sequence came first from {first.paths[0]} "
                        f"({same} alignment)",
                    }
                )
    if repeated:
        log.warning(
            "import: %d sequences came from more than one file; the first file of each was "
            "used (the store's attrs import.repeated lists the others)",
            len(repeated),
        )
    if not chosen and shard is not None:
        log.warning("import job %d of %d: no alignment falls to it", shard[0], shard[1])
    elif not chosen:
        raise InputFormatError(
            f"{', '.join(map(str, inputs))}: no alignment passed the length limits "
            f"(min_length {ingest.min_length}, max_length {ingest.max_length}, too_long "
            f"{ingest.too_long})"
        )
    return Read(list(chosen.values()), skipped, discovery.missing, repeated)


def profile_item(item: Item, filters: FilterParams, profile: ProfileParams) -> Profiled:
    """The profile of an imported alignment after the filters, made as a searched one's is."""
    msa = filter_msa(item.alignment.msa, filters)
    length = len(item.sequence)
    hmm = build_hmm(msa, item.id, length, profile.seed)
    values, neff = profile_from_msa(msa, item.id, length, profile, hmm)
    return Profiled(item.id, item.sequence, values, neff, alignment_depth(msa), hmm)


def import_provenance(
    params: ImportParams, filters: FilterParams, profile: ProfileParams
) -> dict[str, Any]:
    """What an imported profile depends on besides its file's bytes (its cache context is
    made of this: `cache.import_context`)."""
    return {
        "source": "alignment files",
        "reader": {"query_id": params.query_id, "combine": params.combine},
        "filters": asdict(filters) if filters.active else None,
        "profile": asdict(profile),
        "pyhmmer_version": pyhmmer.__version__,
        "layout": params.layout,
        "pick": list(params.pick),
    }


def sources_file(items: Sequence[Item], splits: Sequence[int]) -> bytes:
    """`sources.tsv`: per sequence, its ID, split, file(s) and their SHA-256."""
    rows = [Source(item.id, tuple(map(os.fspath, item.paths)), item.sha256) for item in items]
    return format_sources(rows, splits)


def write_imported(
    items: Sequence[Item],
    splits: Sequence[int],
    out: Path,
    provenance: dict[str, Any],
    filters: FilterParams,
    profile: ProfileParams,
    threads: int = 1,
    progress: Callable[[object], None] | None = None,
) -> Path:
    """Profile `items` and write them as one store at `out`, with `sources.tsv`."""

    def build(item: Item) -> Profiled:
        profiled = profile_item(item, filters, profile)
        if progress is not None:
            progress(item)
        return profiled

    with ThreadPoolExecutor(max(1, threads)) as pool:
        profiled = list(pool.map(build, items))
    part = columns(
        [p.id for p in profiled],
        [p.sequence for p in profiled],
        [quantise(p.values) for p in profiled],
        [p.n_hits for p in profiled],
        [p.neff for p in profiled],
        list(splits),
    )
    attrs = {**provenance, "source_counts": {"imported": len(items), "searched": 0}}
    return write_stores(
        out, [part], attrs, extra_files={SOURCES_FILE: sources_file(items, splits)}
    )
