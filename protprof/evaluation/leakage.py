"""Leakage guard: drop pretraining queries homologous to any evaluation test sequence.

A model pretrained on a homologue of a test protein has seen (a relative of) the answer. Each
query is searched with phmmer against the test sequences of every registered task; a query with
any hit at E <= `evalue` (Z = the number of test sequences) is dropped before ingest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protprof.evaluation import registry
from protprof.evaluation.settings import GuardParams
from protprof.queries.fasta import Record, read_fasta

DEFAULT_EVALUE = GuardParams.evalue


def evaluation_test_sequences(data: Path) -> list[tuple[str, str]]:
    """(task/id, sequence) of every sequence a registered task tests on, deduplicated.

    Each task declares its own (`registry.Task.test_sequences`); mutant libraries contribute
    their wild types (a homologue of the wild type is a homologue of all its variants).
    """
    return registry.test_sequences(Path(data))


@dataclass
class GuardResult:
    """What the leakage guard kept and dropped (with each dropped query's closest test hit)."""

    kept: list[Record]
    dropped: list[dict]  # {id, test_id ("task/id" of the closest test sequence), evalue}
    n_test_sequences: int
    evalue: float = DEFAULT_EVALUE
    test_sequences_per_task: dict[str, int] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The guard's JSON report: counts, the threshold and every dropped query."""
        return {
            "n_queries": len(self.kept) + len(self.dropped),
            "n_kept": len(self.kept),
            "n_dropped": len(self.dropped),
            "evalue": self.evalue,
            "n_test_sequences": self.n_test_sequences,
            "test_sequences_per_task": self.test_sequences_per_task,
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
    per_task = Counter(name.split("/")[0] for name, _ in tests)
    return GuardResult(kept, dropped, len(tests), evalue, dict(per_task))


def _text(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def guard_files(
    paths: list[Path], data: Path, evalue: float = DEFAULT_EVALUE, threads: int = 1
) -> GuardResult:
    """Run the guard on query files against every test sequence of the benchmark folder."""
    records = [r for path in paths for r in read_fasta(path)]
    return guard(records, evaluation_test_sequences(data), evalue, threads)
