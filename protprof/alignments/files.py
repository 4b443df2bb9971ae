"""Finding alignment files: what `protprof import` and the workflow's import jobs read.

What is found where (`discover`):
- a file: one alignment; its ID is the file name without its extension;
- a folder that protprof wrote (`--msa-dir`, with `index.tsv`): the files its index lists, under
  the IDs it lists;
- any other folder: the alignment files directly inside it, in name order;
- `layout="openfold"`: each sub-folder is a chain (its name is the ID) holding files named as
  AlphaFold's pipeline names them; `pick` says which, in order of preference, and `combine`
  whether the first one found is used or all found are merged.
A glob is expanded first. Import job k of n takes the alignments whose ID hashes to k
(`in_shard`), so adding files leaves the other jobs' inputs as they were.

This module reads no alignment and imports neither zarr nor torch: the workflow calls it when
Snakemake parses, to give each import job its input files.
"""

from __future__ import annotations

import glob
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from protprof.alignments import formats
from protprof.alignments.folder import MSA_INDEX, _is_msa_dir
from protprof.errors import ConfigError, InputFormatError
from protprof.params import check_params, param

log = logging.getLogger(__name__)

LAYOUTS = ("files", "openfold")
COMBINE = ("first", "merge")
# Which profile a sequence keeps when it is both a searched query and an imported alignment.
PREFER = ("alignment", "search")
# AlphaFold/OpenFold's per-chain file names, the UniRef90 search first (a jackhmmer alignment,
# the kind protprof's own searches make).
OPENFOLD_PICK = ("uniref90_hits.sto", "bfd_uniclust_hits.a3m", "mgnify_hits.sto")


@dataclass(frozen=True)
class ImportParams:
    """How alignment files are found and read (the `protprof import` options and the
    workflow's `alignments:` keys come from these fields)."""

    layout: str = param(
        "files",
        help="files: each file one query, its ID the file name without extension; openfold: "
        "folders of per-chain folders (<chain>/uniref90_hits.sto, ...), the chain's name as "
        "its ID",
        choices=LAYOUTS,
    )
    pick: tuple[str, ...] = param(
        OPENFOLD_PICK,
        help="--layout openfold: the files to use per chain, in order of preference "
        "(comma-separated)",
    )
    combine: str = param(
        "first",
        help="first: the first picked file found; merge: all of them, query once, repeated "
        "rows dropped",
        choices=COMBINE,
    )
    query_id: str | None = param(
        None, help="the query's record name in each file (default: the first record)"
    )
    skip_missing: bool = param(
        False,
        help="--layout openfold: skip chains without a picked file (counted) instead of failing",
    )
    fmt: str | None = param(
        None,
        help="the files' format (default: from each file's extension: .a3m, .a2m, .sto, "
        ".stockholm, .afa, .fasta, .fa, .aln)",
        flag="--format",
        key="format",
        choices=tuple(formats.FORMATS),
    )

    def __post_init__(self) -> None:
        check_params(self, "alignments")
        if not self.pick:
            raise ConfigError("alignments.pick names no file")


@dataclass(frozen=True)
class ImportJobs:
    """How the workflow runs the imports, and which profile a sequence given both ways keeps
    (`protprof combine --prefer`)."""

    prefer: str = param(
        "alignment",
        help="a sequence given both as a query and as an alignment keeps this profile",
        choices=PREFER,
    )
    jobs: int = param(
        1, help="import jobs (the alignments split by ID)", bounds="[1, inf)", cli=False
    )
    threads: int = param(1, help="cores per import job", bounds="[1, inf)", cli=False)

    def __post_init__(self) -> None:
        check_params(self, "alignments")


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


_SUFFIXES = {suffix for suffixes in formats.FORMATS.values() for suffix in suffixes}


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


def in_shard(found: Found, shard: tuple[int, int] | None) -> bool:
    """Whether an alignment belongs to import job k of n (by a stable hash of its ID, so adding
    files leaves the others' jobs as they were)."""
    if shard is None:
        return True
    digest = hashlib.sha256(found.id.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0]
