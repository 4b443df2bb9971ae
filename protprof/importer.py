"""Profiles from alignments that already exist: the alignment-file source.

A jackhmmer search against UniRef90 costs core-hours per query; building HMMER's model of a
finished alignment costs milliseconds. `import_alignments` reads alignment files (a3m,
Stockholm, aligned FASTA/a2m; `msa_formats`), applies the ingest rules and the alignment filters
exactly as a search's alignment gets them, builds each profile as `profiles.profile_from_msa`
builds a searched one, and writes a store like `protprof build` does.

What is found where (`discover`):
- a file: one alignment; its ID is the file name without its extension;
- a folder that protprof wrote (`--msa-dir`, with `index.tsv`): the files its index lists, under
  the IDs it lists;
- any other folder: the alignment files directly inside it, in name order;
- `layout="openfold"`: each sub-folder is a chain (its name is the ID) holding files named as
  AlphaFold's pipeline names them; `pick` says which, in order of preference, and `combine`
  whether the first one found is used or all found are merged (query once, repeated rows
  dropped).
A glob is expanded first. The query of a file is its first record unless `query_id` is given.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyhmmer

from protprof import msa_formats
from protprof.alignments import MSA_INDEX, _is_msa_dir
from protprof.errors import ConfigError, InputFormatError, StoreError
from protprof.ingest import SPLITS, IngestParams
from protprof.msa_filter import FilterParams, filter_msa
from protprof.profiles import Profiled, ProfileParams, build_hmm, profile_from_msa
from protprof.search import alignment_depth
from protprof.store import ProfileStore, columns, quantise, write_stores

log = logging.getLogger(__name__)

LAYOUTS = ("files", "openfold")
COMBINE = ("first", "merge")
# AlphaFold/OpenFold's per-chain file names, the UniRef90 search first (a jackhmmer alignment,
# the kind protprof's own searches make).
OPENFOLD_PICK = ("uniref90_hits.sto", "bfd_uniclust_hits.a3m", "mgnify_hits.sto")
SOURCES_FILE = "sources.tsv"  # per sequence: its ID, split, and the files its alignment came from


@dataclass(frozen=True)
class ImportParams:
    """How alignment files are found and read."""

    layout: str = "files"
    pick: tuple[str, ...] = OPENFOLD_PICK
    combine: str = "first"
    query_id: str | None = None
    skip_missing: bool = False

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"import: layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.combine not in COMBINE:
            raise ConfigError(f"import: combine must be one of {COMBINE}, got {self.combine!r}")
        if not self.pick:
            raise ConfigError("import: pick names no file")


@dataclass(frozen=True)
class Found:
    """One query's alignment files (several only with `combine="merge"`), and its ID."""

    id: str
    paths: tuple[Path, ...]


@dataclass
class Discovery:
    """The alignments found, and the openfold chains skipped for lack of a picked file."""

    found: list[Found]
    missing: list[str] = field(default_factory=list)  # chains without a picked file


_SUFFIXES = {suffix for suffixes in msa_formats.FORMATS.values() for suffix in suffixes}


def _alignment_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)


def _expand(inputs: Sequence[str | Path]) -> list[Path]:
    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        if glob.has_magic(text) and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputFormatError(f"{text}: the pattern matches no file")
            paths += [Path(m) for m in matches]
        else:
            paths.append(Path(text))
    return paths


def discover(inputs: Sequence[str | Path], params: ImportParams) -> Discovery:
    """The alignments that `inputs` (files, folders, globs) hold, in argument order."""
    found: list[Found] = []
    missing: list[str] = []
    for path in _expand(inputs):
        if not path.exists():
            raise InputFormatError(f"{path}: no such file or folder")
        if params.layout == "openfold":
            if not path.is_dir():
                raise InputFormatError(f"{path}: --layout openfold takes folders of chains")
            chains = [path] if _has_picked(path, params.pick) else _chain_folders(path)
            for chain in chains:
                picked = [chain / name for name in params.pick if (chain / name).is_file()]
                if not picked:
                    if not params.skip_missing:
                        raise InputFormatError(
                            f"{chain}: none of {', '.join(params.pick)} is there (pass "
                            "--skip-missing to skip such chains)"
                        )
                    missing.append(str(chain))
                    continue
                chosen = picked if params.combine == "merge" else picked[:1]
                found.append(Found(chain.name, tuple(chosen)))
        elif path.is_dir() and _is_msa_dir(path):
            found += _from_index(path)
        elif path.is_dir():
            files = _alignment_files(path)
            if not files:
                raise InputFormatError(
                    f"{path}: no alignment file in it (.a3m, .sto, .a2m, .afa, .fasta); for "
                    "AlphaFold/OpenFold per-chain folders pass --layout openfold"
                )
            found += [Found(_id_of(f), (f,)) for f in files]
        else:
            found.append(Found(_id_of(path), (path,)))
    if missing:
        log.warning("import: skipped %d chains without a picked file", len(missing))
    return Discovery(found, missing)


def _has_picked(folder: Path, pick: Sequence[str]) -> bool:
    return any((folder / name).is_file() for name in pick)


def _chain_folders(folder: Path) -> list[Path]:
    chains = sorted(p for p in folder.iterdir() if p.is_dir())
    if not chains:
        raise InputFormatError(f"{folder}: no chain folder in it (--layout openfold)")
    return chains


def _id_of(path: Path) -> str:
    return path.name.rsplit(".", 1)[0] if "." in path.name else path.name


def _from_index(folder: Path) -> list[Found]:
    """The alignments of a protprof alignment folder, under the IDs its index gives."""
    found = []
    lines = (folder / MSA_INDEX).read_text().splitlines()[1:]
    for number, line in enumerate(lines, start=2):
        query_id, tab, name = line.partition("\t")
        if not tab or not name:
            raise InputFormatError(f"{folder / MSA_INDEX}: line {number}: not 'id<TAB>file'")
        if unquote(name).startswith(".") or "/" in name:
            raise InputFormatError(f"{folder / MSA_INDEX}: line {number}: bad file name {name!r}")
        found.append(Found(query_id, (folder / name,)))
    return found


def merge(alignments: Sequence[msa_formats.Alignment]) -> msa_formats.Alignment:
    """One alignment of the rows of several alignments of the same query: the query once, then
    each file's rows in order, a row already there (the same residues in the same columns)
    dropped. Consensus columns line up by the query's residues; each insert block is as wide
    as the widest of the files' blocks there, a file's insertions left-justified in it."""
    first = alignments[0]
    matrices = [msa_formats.msa_matrix(a.msa) for a in alignments]
    length = len(first.query)
    # For each alignment, the column where each of the L + 1 insert blocks starts and ends.
    bounds = []
    for matrix in matrices:
        consensus = np.flatnonzero(matrix[0] != msa_formats.GAP)
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
        merged = np.full((len(matrix), n_columns), msa_formats.GAP, np.uint8)
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
    _, _, matrix = msa_formats.normalise(np.stack(rows))
    msa = msa_formats.msa_from_matrix(names, matrix, first.query_id)
    sha = hashlib.sha256("".join(a.sha256 for a in alignments).encode()).hexdigest()
    return replace(first, sha256=sha, msa=msa)


@dataclass(frozen=True)
class Item:
    """One query's alignment as read (merged, cropped), ready to profile: `id` and `sequence`
    as for a query record, the file(s) it came from and their SHA-256."""

    id: str
    sequence: str
    alignment: msa_formats.Alignment
    paths: tuple[Path, ...]
    sha256: tuple[str, ...]


def read_found(item: Found, params: ImportParams, ingest: IngestParams) -> Item | None:
    """The (merged, cropped) alignment of one query, or None when ingest skips it."""
    alignments = [msa_formats.read_alignment(p, query_id=params.query_id) for p in item.paths]
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
        alignment = msa_formats.crop(alignment, ingest.max_length)
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
    inputs: Sequence[str | Path], params: ImportParams, ingest: IngestParams, threads: int = 1
) -> Read:
    """Find and read every alignment `inputs` hold. A sequence found in several files is
    imported once, from the first in argument order; the others are listed in `repeated`.

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
    chosen: dict[str, Item] = {}
    repeated: list[dict[str, Any]] = []
    skipped = 0
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for item in pool.map(lambda f: read_found(f, params, ingest), discovery.found):
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
    if not chosen:
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
    lines = ["# id\tsplit\tfiles\tsha256\n"]
    for item, split in zip(items, splits, strict=True):
        files = ",".join(os.fspath(p) for p in item.paths)
        lines.append(f"{item.id}\t{SPLITS[split]}\t{files}\t{','.join(item.sha256)}\n")
    return "".join(lines).encode()


@dataclass(frozen=True)
class Source:
    """One row of a store's `sources.tsv`."""

    split: str
    files: tuple[str, ...]
    sha256: tuple[str, ...]


def read_sources(store: ProfileStore) -> dict[str, Source]:
    """The `sources.tsv` of an imported store, by sequence ID (checked with the store's other
    files when it was opened)."""
    text = store.extra_file(SOURCES_FILE).decode()
    out = {}
    for number, line in enumerate(text.splitlines()[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 4:
            raise StoreError(f"{store.path / SOURCES_FILE}: line {number}: not 4 fields")
        out[fields[0]] = Source(
            fields[1], tuple(fields[2].split(",")), tuple(fields[3].split(","))
        )
    return out


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
