"""MMseqs2 on a list of sequences: one home for the scratch FASTA, the call, its failure
message and its two-column output (homology splits and reuse's family shards both use it).

MMseqs2: Steinegger & Soeding 2017, Nat. Biotechnol. 35:1026 (Debian package `mmseqs2`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from protprof.errors import ProtprofError


def find(missing: str, error: type[ProtprofError]) -> str:
    """The `mmseqs` program on PATH; `error(missing)` when it is not installed (the caller's
    message says what needs it and the way out)."""
    program = shutil.which("mmseqs")
    if program is None:
        raise error(missing)
    return program


@contextmanager
def scratch(sequences: Sequence[str], prefix: str) -> Iterator[tuple[Path, Path]]:
    """A temporary folder and, in it, the sequences as FASTA named by their index (0, 1, ...),
    so MMseqs2's output maps back by `int`; the folder is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        fasta = Path(tmp) / "queries.fasta"
        fasta.write_text("".join(f">{i}\n{seq}\n" for i, seq in enumerate(sequences)))
        yield Path(tmp), fasta


def run(command: Sequence[str], error: type[ProtprofError]) -> None:
    """Run an `mmseqs` command; a failure raises `error` with MMseqs2's last error lines."""
    done = subprocess.run(list(command), capture_output=True, text=True)
    if done.returncode != 0:
        raise error(f"mmseqs {command[1]} failed: {done.stderr.strip()[-500:]}")


def index_pairs(path: Path) -> list[tuple[int, int]]:
    """The (first, second) sequence indices of each line of a two-column MMseqs2 table."""
    pairs = []
    for line in path.read_text().splitlines():
        first, second = line.split("\t")
        pairs.append((int(first), int(second)))
    return pairs
