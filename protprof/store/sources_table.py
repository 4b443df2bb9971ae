"""An imported store's `sources.tsv`: per sequence, its ID, split, and the alignment file(s)
it came from with their SHA-256.

The importer writes it; the cache keys imported rows by it and the assembly carries it over,
without importing the importer (and its search and profile code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protprof.errors import StoreError
from protprof.queries.ingest import SPLITS
from protprof.store.zarr_store import ProfileStore

SOURCES_FILE = "sources.tsv"  # per sequence: its ID, split, and the files its alignment came from


def format_sources(rows: Sequence[Source], splits: Sequence[int]) -> bytes:
    """`sources.tsv` of these rows (`read_sources` reads it)."""
    lines = ["# id\tsplit\tfiles\tsha256\n"]
    for row, split in zip(rows, splits, strict=True):
        lines.append(f"{row.id}\t{SPLITS[split]}\t{','.join(row.files)}\t{','.join(row.sha256)}\n")
    return "".join(lines).encode()


@dataclass(frozen=True)
class Source:
    """One row of a store's `sources.tsv`: a sequence's ID and the file(s) it came from."""

    id: str
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
            fields[0], tuple(fields[2].split(",")), tuple(fields[3].split(","))
        )
    return out
