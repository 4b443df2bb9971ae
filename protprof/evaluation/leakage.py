"""Leakage guard: drop pretraining queries homologous to any evaluation test sequence.

A model pretrained on a homologue of a test protein has seen (a relative of) the answer. Each
query is searched with phmmer against the test sequences of every task; a query with any hit
at E <= `evalue` (Z = the number of test sequences) is dropped before ingest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protprof.evaluation import datasets as ds
from protprof.fasta import Record, read_fasta

DEFAULT_EVALUE = 1e-3


def evaluation_test_sequences(data: Path) -> list[tuple[str, str]]:
    """(id, sequence) of every sequence a downstream test set scores, deduplicated.

    Mutant libraries contribute their wild types (a homologue of the wild type is a
    homologue of all its variants).
    """
    data = Path(data)
    named: list[tuple[str, str]] = [(f"ss/{e.id}", e.sequence) for e in ds.read_cb513(data)]
    _, scope_test, _ = ds.split_remote_homology(ds.read_scope(data))
    named += [(f"homology/{e.id}", e.sequence) for e in scope_test]
    named += [
        (f"contacts/{path.stem}_{chain}", sequence)
        for path, chain, sequence in ds.contact_chains(data, "test")
    ]
    stability, _ = ds.read_stability(data, "test")
    named += [(f"stability/{e.id}", e.sequence) for e in stability if e.id == e.group]
    gfp = ds.read_wild_type(data / "fluorescence_avgfp" / "wt_sequence.json", "avgfp")
    named.append(("fluorescence/avGFP", gfp["wt_aa"]))
    named.append(("variants/BLAT_ECOLX", ds.read_blat_ecolx(data).wild_type))
    unique: dict[str, str] = {}
    for name, sequence in named:
        unique.setdefault(sequence, name)
    return [(name, sequence) for sequence, name in unique.items()]


@dataclass
class GuardResult:
    """What the leakage guard kept and dropped (with each dropped query's closest test hit)."""

    kept: list[Record]
    dropped: list[dict]  # {id, test_id, evalue}
    n_test_sequences: int
    evalue: float = DEFAULT_EVALUE

    def report(self) -> dict[str, Any]:
        """The guard's JSON report: counts, the threshold and every dropped query."""
        return {
            "n_queries": len(self.kept) + len(self.dropped),
            "n_kept": len(self.kept),
            "n_dropped": len(self.dropped),
            "evalue": self.evalue,
            "n_test_sequences": self.n_test_sequences,
            "dropped": self.dropped,
        }


def guard(
    records: list[Record],
    tests: list[tuple[str, str]],
    evalue: float = DEFAULT_EVALUE,
    threads: int = 1,
) -> GuardResult:
    """Split `records` into kept and dropped by a phmmer search against `tests`."""
    import pyhmmer

    alphabet = pyhmmer.easel.Alphabet.amino()
    queries = [
        pyhmmer.easel.TextSequence(name=str(i).encode(), sequence=r.sequence).digitize(alphabet)
        for i, r in enumerate(records)
    ]
    targets = pyhmmer.easel.DigitalSequenceBlock(
        alphabet,
        [
            pyhmmer.easel.TextSequence(name=name.encode(), sequence=seq).digitize(alphabet)
            for name, seq in tests
        ],
    )
    best: dict[int, tuple[str, float]] = {}
    search: Any = pyhmmer.hmmer.phmmer  # its stubs reject amino-typed sequences
    for hits in search(queries, targets, cpus=threads, E=evalue, Z=len(targets)):
        index = int(_text(hits.query.name))
        for hit in hits:
            if hit.evalue <= evalue and (index not in best or hit.evalue < best[index][1]):
                best[index] = (_text(hit.name), hit.evalue)
    kept = [r for i, r in enumerate(records) if i not in best]
    dropped = [
        {"id": records[i].id, "test_id": name, "evalue": e}
        for i, (name, e) in sorted(best.items())
    ]
    return GuardResult(kept, dropped, len(tests), evalue)


def _text(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def guard_files(
    paths: list[Path], data: Path, evalue: float = DEFAULT_EVALUE, threads: int = 1
) -> GuardResult:
    """Run the guard on query files against every test sequence of the benchmark folder."""
    records = [r for path in paths for r in read_fasta(path)]
    return guard(records, evaluation_test_sequences(data), evalue, threads)
