"""Read and validate protein FASTA (plain or gzip) with Biopython.

Accepted oddities: CRLF line endings, blank lines, lowercase residues (uppercased), a terminal
`*` (stripped), and the ambiguity / rare residues `X B Z J U O`. Everything else that is wrong
is refused with one message naming the file, the record and the position.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser

from protprof.alphabet import RESIDUES
from protprof.errors import InputFormatError, InvalidSequenceError

_ALLOWED = frozenset(RESIDUES)
_NUCLEOTIDES = frozenset("ACGTUN")
# A protein file made of >= 90% ACGTUN residues is almost surely DNA/RNA read as protein.
_NUCLEOTIDE_FRACTION = 0.9
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Record:
    """One validated protein record."""

    id: str
    sequence: str  # uppercase, only characters of `alphabet.RESIDUES`
    description: str = ""


def _open_text(path: Path) -> io.TextIOBase:
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="ascii")  # newline=None: CRLF becomes \n
    return open(path, encoding="ascii")


def _parse(path: Path) -> Iterator[tuple[str, str]]:
    """Yield (title, raw sequence) pairs; refuse files that are not FASTA."""
    try:
        with _open_text(path) as handle:
            first = ""
            for line in handle:
                if line.strip():
                    first = line
                    break
            if not first:
                raise InputFormatError(f"{path}: empty file, no FASTA records")
            if not first.startswith(">"):
                raise InputFormatError(
                    f"{path}: not a FASTA file (first non-blank line does not start with '>': "
                    f"{first.strip()[:40]!r})"
                )
            yield from SimpleFastaParser(_chain_first(first, handle))
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputFormatError(f"{path}: truncated or corrupt gzip file ({e})") from e
    except UnicodeDecodeError as e:
        # e.start counts from the decoder's current buffer, not the file: find the byte again.
        offset, line_number = _first_non_ascii(path)
        raise InputFormatError(
            f"{path}: not a text FASTA file (non-ASCII byte at line {line_number}, byte offset "
            f"{offset}{' of the decompressed text' if _is_gzip(path) else ''})"
        ) from e
    except FileNotFoundError as e:
        raise InputFormatError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise InputFormatError(f"{path}: is a folder, not a FASTA file") from e
    except PermissionError as e:
        raise InputFormatError(f"{path}: cannot read it (permission denied)") from e


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as raw:
        return raw.read(2) == _GZIP_MAGIC


def gzip_damage(path: Path) -> str | None:
    """What is wrong with a gzip file's compressed stream (a flipped byte decompresses to text
    that fails to parse long before the CRC check at the end), None if it is intact or not
    gzip. Reads the whole file: call it once something failed."""
    try:
        if not _is_gzip(path):
            return None
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        return str(e) or type(e).__name__
    except OSError:
        return None
    return None


def refuse_if_corrupt_gzip(path: Path, error: Exception) -> None:
    """Raise a corrupt-gzip error instead of `error` (a parse error) when the gzip stream of
    `path` is damaged."""
    damage = gzip_damage(path)
    if damage is not None:
        raise InputFormatError(
            f"{path}: truncated or corrupt gzip file ({damage}); the text it decompresses to "
            "cannot be trusted: download or copy it again"
        ) from error


def _first_non_ascii(path: Path) -> tuple[int, int]:
    """Byte offset (0-based) and line (1-based) of the first non-ASCII byte of the text."""
    offset, line = 0, 1
    with gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            bad = next((i for i, b in enumerate(block) if b > 127), None)
            if bad is not None:
                return offset + bad, line + block.count(b"\n", 0, bad)
            offset, line = offset + len(block), line + block.count(b"\n")
    return offset, line


def _chain_first(first: str, handle: Iterator[str]) -> Iterator[str]:
    yield first
    yield from handle


def _clean(path: Path, title: str, raw: str) -> Record:
    # The identifier ends at any whitespace (a TAB too): it names files and index rows.
    record_id, description = (title.split(maxsplit=1) + ["", ""])[:2]
    if not title[:1].strip():
        raise InvalidSequenceError(f"{path}: a record has an empty identifier ('>{title}')")
    sequence = "".join(raw.split()).upper()
    if sequence.endswith("*"):
        sequence = sequence[:-1]
    if not sequence:
        raise InvalidSequenceError(f"{path}: record {record_id!r} has no sequence")
    for position, char in enumerate(sequence, start=1):
        if char not in _ALLOWED:
            raise InvalidSequenceError(
                f"{path}: record {record_id!r}: character {char!r} at position {position} is "
                f"not a protein residue (allowed: {RESIDUES}, a terminal '*')"
            )
    return Record(record_id, sequence, description.strip())


def read_fasta(path: str | Path) -> list[Record]:
    """Read and validate every record of a protein FASTA or FASTA.gz file.

    Args:
        path: the file; gzip is detected from its magic bytes, not its suffix.

    Returns:
        The records, in file order.

    Raises:
        InputFormatError: empty, not FASTA, truncated gzip, or nucleotide sequence.
        InvalidSequenceError: a record with no sequence, a bad character, a duplicate ID.
    """
    path = Path(path)
    records: list[Record] = []
    seen: set[str] = set()
    try:
        for title, raw in _parse(path):
            record = _clean(path, title, raw)
            if record.id in seen:
                raise InvalidSequenceError(f"{path}: duplicate record ID {record.id!r}")
            seen.add(record.id)
            records.append(record)
        _refuse_nucleotides(path, records)
    except (InputFormatError, InvalidSequenceError) as e:
        refuse_if_corrupt_gzip(path, e)
        raise
    return records


def _refuse_nucleotides(path: Path, records: list[Record]) -> None:
    total = sum(len(r.sequence) for r in records)
    nucleotide = sum(sum(r.sequence.count(c) for c in _NUCLEOTIDES) for r in records)
    if total and nucleotide / total >= _NUCLEOTIDE_FRACTION:
        raise InputFormatError(
            f"{path}: looks like nucleotide sequence ({100 * nucleotide / total:.0f}% of residues "
            "are A/C/G/T/U/N); protprof needs protein queries"
        )


def write_fasta(path: str | Path, records: Iterable[Record], width: int = 60) -> None:
    """Write records as plain FASTA (the caller handles atomicity)."""
    with open(path, "w", encoding="ascii") as out:
        for r in records:
            out.write(f">{r.id} {r.description}\n" if r.description else f">{r.id}\n")
            for i in range(0, len(r.sequence), width):
                out.write(r.sequence[i : i + width] + "\n")
