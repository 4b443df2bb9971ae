"""Regenerate tests/data/alignment.sto: the final jackhmmer alignment of one real demo query.

Usage: python tests/data/make_alignment.py

Query 5 of data/demo/queries_150.fasta.gz (a UniProtKB record, CC BY 4.0) searched with
protprof's jackhmmer (-N 2, HMMER's default thresholds, Z = 5,000) against the 5,000-record
demo database. Profile tests read this file instead of running a search.
"""

from __future__ import annotations

from pathlib import Path

from protprof.jackhmmer import JackhmmerSearch, SearchParams, load_database
from protprof.queries.fasta import read_fasta

HERE = Path(__file__).resolve().parent
DEMO = HERE.parents[1] / "data" / "demo"
QUERY_INDEX = 5


def main() -> None:
    query = read_fasta(DEMO / "queries_150.fasta.gz")[QUERY_INDEX]
    database = load_database(DEMO / "uniprot_5k.fasta.gz")
    (result,) = JackhmmerSearch(database.block, SearchParams(iterations=2), 2, 5000).run([query])
    with open(HERE / "alignment.sto", "wb") as handle:
        result.msa.write(handle, "stockholm")
    print(
        f"{query.id}: {len(result.sequence)} residues, {len(result.msa.sequences)} rows, "
        f"{result.n_hits} targets"
    )


if __name__ == "__main__":
    main()
