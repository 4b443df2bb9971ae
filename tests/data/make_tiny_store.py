"""Regenerate tests/data/tiny.zarr: a real store that tests about reading a store use instead
of searching (data loading, training, evaluation, integrity checks).

Usage: python tests/data/make_tiny_store.py [OUT]   (OUT defaults to tests/data/tiny.zarr)

The first 24 queries of data/demo/queries_150.fasta.gz (UniProtKB records, CC BY 4.0), at most
400 residues, split 70/20/10 by MMseqs2 homology clusters, searched with protprof's jackhmmer
(-N 2) against the 5,000-record demo database on 2 threads. Run it again when the store format
changes: tests/test_tiny_store.py fails until then, and checks a rebuild gives the same arrays.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from protprof.alignments.profiles import ProfileParams
from protprof.jackhmmer import SearchParams, load_database
from protprof.queries.fasta import read_fasta
from protprof.queries.ingest import IngestParams, select_records
from protprof.stages import build

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEMO = Path("data") / "demo"  # relative to ROOT: the store records the database path
N_QUERIES = 24
INGEST = IngestParams(max_length=400, valid_fraction=0.2, test_fraction=0.1)
SEARCH = SearchParams(iterations=2)


def make_tiny_store(out: Path) -> Path:
    """Build the tiny store at `out` (replacing a store there)."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    queries = out.parent / f".{out.name}.queries.fasta"
    records = read_fasta(DEMO / "queries_150.fasta.gz")[:N_QUERIES]
    queries.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    try:
        selected = select_records([queries], INGEST)
    finally:
        queries.unlink()
    database = load_database(DEMO / "uniprot_5k.fasta.gz")
    return build(selected, database, out, 2, INGEST, SEARCH, ProfileParams())


if __name__ == "__main__":
    path = make_tiny_store(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "tiny.zarr")
    print(f"wrote {path}")
