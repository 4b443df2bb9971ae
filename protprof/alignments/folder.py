"""The alignment folder (`--msa-dir`, `profile.keep_msa`): each query's final alignment as one
file, named from its ID, and an `index.tsv` that lists them and marks the folder as protprof's.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from protprof.alignments.formats import write_a3m
from protprof.atomic import Kind, atomic_output
from protprof.jackhmmer import QueryResult
from protprof.params import check_params, param

MSA_FORMATS = {"stockholm": ".sto", "a2m": ".a2m", "a3m": ".a3m"}
MSA_INDEX = "index.tsv"
_MSA_INDEX_HEADER = "# protprof alignments: query_id<TAB>file\n"


@dataclass(frozen=True)
class MsaOutput:
    """The format of the kept alignments (`--msa-dir`; the workflow's `profile.keep_msa`)."""

    msa_format: str = param(
        "stockholm", help="the kept alignments' format", choices=tuple(MSA_FORMATS)
    )

    def __post_init__(self) -> None:
        check_params(self, "profile")


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


def alignment_bytes(result: QueryResult, msa_format: str) -> bytes:
    """A result's final alignment as the bytes of its file in an alignment folder."""
    handle = io.BytesIO()
    if msa_format == "a3m":  # HMMER writes no a3m
        write_a3m(result.msa, handle)
    else:
        result.msa.write(handle, msa_format)  # type: ignore[arg-type]  # stockholm, a2m
    return handle.getvalue()


def write_alignments(results: Iterable[QueryResult], msa_dir: Path, msa_format: str) -> None:
    """Write each result's final alignment as a file of `msa_dir`, plus the index (atomic)."""
    write_alignment_files(
        ((r.id, alignment_bytes(r, msa_format)) for r in results), msa_dir, msa_format
    )


def write_alignment_files(
    files: Iterable[tuple[str, bytes]], msa_dir: Path, msa_format: str
) -> None:
    """Write (query ID, alignment bytes) pairs as the files of `msa_dir`, plus the index
    (atomic)."""
    with atomic_output(msa_dir, MSA_DIR) as tmp:
        tmp.mkdir(parents=True)
        index = [_MSA_INDEX_HEADER]
        for query_id, content in files:
            name = msa_filename(query_id, msa_format)
            (tmp / name).write_bytes(content)
            index.append(f"{query_id}\t{name}\n")
        (tmp / MSA_INDEX).write_text("".join(index))
