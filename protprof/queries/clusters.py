"""Homology clusters of a query set with MMseqs2, for splits no family spans.

A cluster is a connected component of the graph whose edges are MMseqs2's hits of an
all-against-all search of the queries (`mmseqs easy-search`, the queries as both sides) at
sequence identity >= `identity` (MMseqs2's alignment identity, `--min-seq-id`) with the
alignment covering >= `coverage` of *both* sequences (`--cov-mode 0`, `easy-cluster`'s
default), E-value <= 1e-3, sensitivity 7.5. Single linkage rather than `easy-cluster`'s set
cover: two members of different set-cover clusters can still be homologs of each other, and
then a split by cluster would put one in training and the other in test. Components only merge
when sequences are added (an old pair's hit does not depend on the new sequences, up to the
E-value's dependence on the number of targets), which is what keeps old queries' splits.

MMseqs2: Steinegger & Soeding 2017, Nat. Biotechnol. 35:1026 (Debian package `mmseqs2`).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence

from protprof import mmseqs
from protprof.errors import ConfigError, ProtprofError

log = logging.getLogger(__name__)

EVALUE = 1e-3
SENSITIVITY = 7.5
COVERAGE_MODE = 0  # MMseqs2 --cov-mode 0: the alignment covers both sequences


def mmseqs_program() -> str:
    """The `mmseqs` program on PATH.

    Raises:
        ConfigError: MMseqs2 is not installed, naming the way out.
    """
    return mmseqs.find(
        "split_method mmseqs splits queries by homology cluster with MMseqs2, which is not "
        "on PATH: install it (Debian: apt-get install mmseqs2) or set ingest.split_method: "
        "hash (--split-method hash: by sequence hash, close homologs may then sit in "
        "different splits)",
        ConfigError,
    )


def mmseqs_version() -> str:
    """MMseqs2's version string (for provenance and logs)."""
    run = subprocess.run([mmseqs_program(), "version"], capture_output=True, text=True)
    return run.stdout.strip()


def homolog_pairs(
    sequences: Sequence[str], identity: float, coverage: float, threads: int = 1, *extra: str
) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, of the sequences MMseqs2 finds homologous at these thresholds
    (`extra`: more `easy-search` options, e.g. `--exhaustive-search` for an independent check).

    Raises:
        ConfigError: MMseqs2 is missing.
        ProtprofError: MMseqs2 failed (its last error lines).
    """
    program = mmseqs_program()
    with mmseqs.scratch(sequences, "protprof-split-") as (tmp, fasta):
        hits = tmp / "hits.tsv"
        command = [
            program,
            "easy-search",
            str(fasta),
            str(fasta),
            str(hits),
            str(tmp / "work"),
            "--min-seq-id",
            str(identity),
            "-c",
            str(coverage),
            "--cov-mode",
            str(COVERAGE_MODE),
            "-e",
            str(EVALUE),
            "-s",
            str(SENSITIVITY),
            "--format-output",
            "query,target",
            "--threads",
            str(max(1, threads)),
            "-v",
            "1",
            *extra,
        ]
        mmseqs.run(command, ProtprofError)
        pairs = {(min(a, b), max(a, b)) for a, b in mmseqs.index_pairs(hits) if a != b}
    return pairs


def components(n: int, pairs: set[tuple[int, int]]) -> list[int]:
    """The connected component of each of n nodes: its smallest node (union-find)."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(n)]


def homology_clusters(
    sequences: Sequence[str], identity: float, coverage: float, threads: int = 1
) -> list[int]:
    """The cluster of each sequence (the index of its cluster's first sequence): connected
    components of MMseqs2's all-against-all hits at these thresholds (module docstring)."""
    if not sequences:
        return []
    pairs = homolog_pairs(sequences, identity, coverage, threads)
    labels = components(len(sequences), pairs)
    log.info(
        "split clusters: %d sequences in %d clusters (%d homolog pairs at >= %.0f%% identity "
        "over >= %.0f%% coverage of both, MMseqs2 %s)",
        len(sequences),
        len(set(labels)),
        len(pairs),
        100 * identity,
        100 * coverage,
        mmseqs_version(),
    )
    return labels
