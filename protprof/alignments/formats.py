"""Alignments people already have (a3m, Stockholm, a2m, aligned FASTA) as HMMER alignments whose
consensus columns are the query's residues, ready for `profiles.build_hmm`; and an a3m writer.

Formats (from the file's extension, or named):

- `a3m` (HHblits, ColabFold, MMseqs2; `.a3m`): uppercase letters and `-` are aligned to the
  query's columns, lowercase letters are insertions, `.` is ignored. Insertions carry no column
  placement, so they are laid out as HMMER lays out the insertions of its own alignments
  (`p7_tracealign.c`): one block of insert columns after each consensus column, as wide as the
  longest insertion there; an insertion of n residues puts its first n // 2 residues at the
  left of the block and the rest at its right (before the first consensus column: at the
  right; after the last: at the left). HMMER's builder reads the width of the alignment (it
  marks fragments by their span), so this layout gives back HMMER's own alignment, and its
  model, bit for bit, from an a3m that protprof wrote.
- `a2m` (`.a2m`): as a3m, except that when every column is either aligned (uppercase, `-`)
  or inserted (lowercase, `.`) in every row, the columns are kept as they stand. HMMER's
  writer (`esl_msafile_a2m`) writes the "dotless" a2m, which is read as a3m.
- `stockholm` (`.sto`, `.stockholm`; HMMER, AlphaFold's jackhmmer outputs): the first alignment
  of the file; multi-block; `#=GF`, `#=GS`, `#=GR`, `#=GC` lines are skipped; names stay as
  written (`name/start-end`).
- `afa` (aligned FASTA: `.afa`, `.fasta`, `.fa`, `.aln`): rows of equal length; case is ignored.

In every format the query is the first record, unless `query_id` names another; the consensus
columns are those where the query has a residue, whatever the file's own annotation (RF line,
case) says. Rows with no residue in a consensus column align nothing to the query and are
dropped, and so are insert columns left with no residue.

References: HMMER 3.4 and Easel (Stockholm, a2m); HH-suite 3 a3m (Steinegger et al. 2019).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from pyhmmer.easel import Alphabet, DigitalMSA, DigitalSequence

from protprof.errors import ConfigError, InputFormatError

AMINO = Alphabet.amino()
GAP = 20  # HMMER amino digital codes: 0-19 ACDEFGHIKLMNPQRSTVWY, 20 gap, 21-26 BJZOUX
FORMATS: dict[str, tuple[str, ...]] = {
    "a3m": (".a3m",),
    "a2m": (".a2m",),
    "stockholm": (".sto", ".stockholm"),
    "afa": (".afa", ".fasta", ".fa", ".aln"),
}
# The layouts of a3m insertions `_expand` knows; `hmmer` is the one readers use (module
# docstring). `left` (left-justified) and `drop` (no insert columns) are there to measure.
A3M_LAYOUTS = ("hmmer", "left", "drop")

_ILLEGAL = 255
_CODES = np.full(256, _ILLEGAL, dtype=np.uint8)  # text byte -> HMMER digital code
for _code, _symbol in enumerate(AMINO.symbols[: GAP + 7]):  # residues, gap, degenerate
    _CODES[ord(_symbol)] = _CODES[ord(_symbol.lower())] = _code
for _symbol in ".-_~":
    _CODES[ord(_symbol)] = GAP
_LETTERS = np.frombuffer(AMINO.symbols.encode("ascii"), dtype=np.uint8)  # code -> uppercase


@dataclass(frozen=True)
class Alignment:
    """One query's alignment read from a file.

    `msa` holds the query as row 0 and a reference line (`#=GC RF`: `x` consensus, `.` insert)
    marking the query's residues' columns, so `build_hmm(msa, query_id, len(query))` has
    `len(query)` match states.
    """

    path: Path
    sha256: str  # of the file's bytes: what the alignment is keyed by
    query_id: str
    query: str  # ungapped, uppercase
    msa: DigitalMSA[Any]


@dataclass(frozen=True)
class _Rows:
    """Parsed rows before assembly: names, text rows, and each row's first line in the file."""

    names: list[str]
    texts: list[str]
    lines: list[int]


def alignment_format(path: str | Path, fmt: str | None = None) -> str:
    """The format of an alignment file: `fmt` if given, else from the file's extension.

    Raises:
        ConfigError: `fmt` is not a known format.
        InputFormatError: no format given and the extension is not a known one.
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"alignment format must be one of {tuple(FORMATS)}, got {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for suffixes in FORMATS.values() for s in suffixes)
    raise InputFormatError(
        f"{path}: cannot tell the alignment format from the extension {suffix!r} "
        f"(known: {known}); name the format"
    )


def read_alignment(
    path: str | Path, fmt: str | None = None, query_id: str | None = None
) -> Alignment:
    """Read one query's alignment (see the module docstring for the formats' rules).

    Args:
        path: the alignment file.
        fmt: `a3m`, `a2m`, `stockholm` or `afa`; None: from the extension.
        query_id: the record that is the query (its name, or for Stockholm its name without
            `/start-end`); None: the first record. A query without a name is named after the
            file (its stem).

    Raises:
        InputFormatError: the file is empty, not UTF-8, malformed, holds an illegal character,
            or has no record `query_id`; the message names the file and the line.
    """
    path = Path(path)
    fmt = alignment_format(path, fmt)
    data = _read_bytes(path)
    text = _decode(path, data)
    if fmt == "stockholm":
        rows = _parse_stockholm(path, text)
    else:
        rows = _parse_fasta(path, text)
    query_index = _query_index(path, rows, query_id)
    if fmt == "a3m" or (fmt == "a2m" and not _columns_stand(rows.texts)):
        matrix = _expand(path, rows, query_index, "hmmer")
    else:
        matrix = _column_matrix(path, rows, query_index)
    return _assemble(path, hashlib.sha256(data).hexdigest(), rows, query_index, matrix)


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise InputFormatError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise InputFormatError(f"{path}: is a folder, not an alignment file") from e
    except PermissionError as e:
        raise InputFormatError(f"{path}: cannot read it (permission denied)") from e
    if not data.strip():
        raise InputFormatError(f"{path}: empty file, no alignment")
    return data


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputFormatError(
            f"{path}, line {line}: not a text file (a byte that is not UTF-8 at offset {e.start})"
        ) from e


def _parse_fasta(path: Path, text: str) -> _Rows:
    """FASTA-like records (a3m, a2m, aligned FASTA). Comment lines (`#`, as ColabFold's first
    line) before the first record are skipped."""
    names: list[str] = []
    chunks: list[list[str]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(">"):
            names.append(line[1:].split(maxsplit=1)[0] if line[1:].strip() else "")
            chunks.append([])
            lines.append(number)
        elif chunks:
            chunks[-1].append(line.strip())
        elif line.strip() and not line.startswith("#"):
            raise InputFormatError(
                f"{path}, line {number}: expected a '>' record header, got {line.strip()[:40]!r}"
            )
    if not names:
        raise InputFormatError(f"{path}: no '>' record in the file")
    texts = ["".join(chunk) for chunk in chunks]
    for label, row, number in zip(names, texts, lines, strict=True):
        if not row:
            raise InputFormatError(f"{path}, line {number}: record {label!r} has no sequence")
    return _Rows(names, texts, lines)


def _parse_stockholm(path: Path, text: str) -> _Rows:
    """The first alignment of a Stockholm file; rows of several blocks are joined."""
    rows: dict[str, list[str]] = {}
    at: dict[str, list[int]] = {}  # the line of each of a row's segments
    header = ended = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not header:
            if not stripped.startswith("# STOCKHOLM"):
                raise InputFormatError(
                    f"{path}, line {number}: not a Stockholm file (expected '# STOCKHOLM 1.0', "
                    f"got {stripped[:40]!r})"
                )
            header = True
        elif stripped == "//":
            ended = True
            break
        elif not stripped.startswith("#"):
            fields = stripped.split()
            if len(fields) != 2:
                raise InputFormatError(
                    f"{path}, line {number}: expected '<name> <aligned sequence>', got "
                    f"{len(fields)} fields"
                )
            name, segment = fields
            if name not in rows:
                rows[name], at[name] = [], []
            rows[name].append(segment)
            at[name].append(number)
    if not ended:
        raise InputFormatError(f"{path}: no '//' line ends the alignment (a truncated file?)")
    if not rows:
        raise InputFormatError(f"{path}: the alignment has no rows")
    names = list(rows)
    _check_blocks(path, names, rows, at)
    return _Rows(names, ["".join(rows[name]) for name in names], [at[name][0] for name in names])


def _check_blocks(
    path: Path, names: list[str], rows: dict[str, list[str]], at: dict[str, list[int]]
) -> None:
    """Every row as long as the first, block by block: its k-th segment as the first row's."""
    widths = [len(segment) for segment in rows[names[0]]]
    for name in names[1:]:
        mine = [len(segment) for segment in rows[name]]
        if mine == widths:
            continue
        k = next(
            (k for k, (a, b) in enumerate(zip(mine, widths, strict=False)) if a != b),
            min(len(mine), len(widths)),
        )
        line = at[name][min(k, len(mine) - 1)]
        raise InputFormatError(
            f"{path}, line {line}: rows of unequal length: row {name!r} has "
            f"{sum(mine)} columns ({len(mine)} blocks), row {names[0]!r} {sum(widths)} "
            f"({len(widths)} blocks); they differ in block {k + 1}"
        )


def _query_index(path: Path, rows: _Rows, query_id: str | None) -> int:
    if query_id is None:
        return 0
    if query_id in rows.names:
        return rows.names.index(query_id)
    stripped = [re.sub(r"/\d+-\d+$", "", name) for name in rows.names]
    matches = [i for i, name in enumerate(stripped) if name == query_id]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputFormatError(
            f"{path}: query {query_id!r} names {len(matches)} rows "
            f"({', '.join(rows.names[i] for i in matches[:3])}); give the full row name"
        )
    raise InputFormatError(
        f"{path}: no record {query_id!r} (the file's first records: "
        f"{', '.join(repr(n) for n in rows.names[:3])})"
    )


def _encode(path: Path, rows: _Rows, row: int, text: str) -> np.ndarray:
    """HMMER digital codes of one row's text; an illegal character names its line."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    codes = _CODES[raw]
    if (codes == _ILLEGAL).any():
        _illegal(path, rows, row, text)
    return codes


def _illegal(path: Path, rows: _Rows, row: int, text: str) -> None:
    position = next(i for i, c in enumerate(text) if ord(c) > 127 or _CODES[ord(c)] == _ILLEGAL)
    raise InputFormatError(
        f"{path}, line {rows.lines[row]}: row {rows.names[row]!r} holds the illegal character "
        f"{text[position]!r} at column {position + 1} (allowed: letters and the gaps "
        f"'-', '.', '_', '~')"
    )


def _columns_stand(texts: Sequence[str]) -> bool:
    """Whether rows are already column-aligned a2m: equal length, each column aligned (upper,
    `-`) or inserted (lower, `.`) in every row."""
    if len({len(t) for t in texts}) != 1:
        return False
    inserts = [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]
    matrix = np.array(inserts)
    kind = ((matrix >= ord("a")) & (matrix <= ord("z"))) | (matrix == ord("."))
    return bool((kind.all(axis=0) | ~kind.any(axis=0)).all())


def _column_matrix(path: Path, rows: _Rows, query_index: int) -> np.ndarray:
    """(n_rows, n_columns) digital codes of rows that are already column-aligned."""
    width = len(rows.texts[query_index])
    for i, t in enumerate(rows.texts):
        if len(t) != width:
            raise InputFormatError(
                f"{path}, line {rows.lines[i]}: rows of unequal length: record "
                f"{rows.names[i]!r} has {len(t)} columns, the query {width}"
            )
    return np.stack([_encode(path, rows, i, t) for i, t in enumerate(rows.texts)])


def _expand(path: Path, rows: _Rows, query_index: int, layout: str) -> np.ndarray:
    """(n_rows, n_columns) digital codes of a3m rows, insertions laid out by `layout`
    (`A3M_LAYOUTS`). Vectorised over the whole file: the a3m of a deep search holds ~1e5 rows."""
    texts = [t.replace(".", "") for t in rows.texts]
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    for empty in np.flatnonzero(lengths == 0):
        raise InputFormatError(
            f"{path}, line {rows.lines[empty]}: record {rows.names[empty]!r} is empty"
        )
    raw = np.frombuffer("".join(texts).encode("utf-8"), dtype=np.uint8)
    codes = _CODES[raw]
    if len(raw) != lengths.sum() or (codes == _ILLEGAL).any():
        for i, t in enumerate(texts):
            _encode(path, rows, i, t)
    n = len(texts)
    row = np.repeat(np.arange(n), lengths)
    insert = (raw >= ord("a")) & (raw <= ord("z"))
    aligned = ~insert
    before: np.ndarray = (
        np.cumsum(aligned) - aligned
    )  # aligned characters before each one, in its row
    before -= before[np.cumsum(lengths) - lengths][row]
    per_row = np.bincount(row, weights=aligned, minlength=n).astype(np.int64)
    width = int(per_row[query_index])
    _check_a3m(path, rows, query_index, per_row, insert[row == query_index])
    if layout == "drop":
        matrix = np.full((n, width), GAP, dtype=np.uint8)
        matrix[row[aligned], before[aligned]] = codes[aligned]
        return matrix
    at = np.flatnonzero(insert)
    slot: np.ndarray = before[at]  # insert slot j: after aligned column j - 1
    key = row[at] * (width + 1) + slot
    counts = np.bincount(key, minlength=n * (width + 1))
    widths = counts.reshape(n, width + 1).max(axis=0)  # each slot as wide as its longest insert
    run = np.r_[True, np.diff(key) != 0]  # one row's insertion in one slot is contiguous
    rank = np.arange(len(at)) - np.maximum.accumulate(np.where(run, np.arange(len(at)), 0))
    size = counts[key]
    right = widths[slot] - size + rank  # right-justified
    if layout == "left":
        place = rank
    else:  # HMMER: split (first size // 2 left), right at the N-terminus, left at the C
        split = np.where(rank < size // 2, rank, right)
        place = np.where(slot == 0, right, np.where(slot == width, rank, split))
    cumulative = np.r_[0, np.cumsum(widths)]
    insert_start = np.arange(width + 1) + cumulative[:-1]
    aligned_column = np.arange(width) + cumulative[1:-1]
    matrix = np.full((n, width + int(cumulative[-1])), GAP, dtype=np.uint8)
    matrix[row[aligned], aligned_column[before[aligned]]] = codes[aligned]
    matrix[row[at], insert_start[slot] + place] = codes[at]
    return matrix


def _check_a3m(
    path: Path, rows: _Rows, query_index: int, per_row: np.ndarray, query_inserts: np.ndarray
) -> None:
    line, name = rows.lines[query_index], rows.names[query_index]
    if query_inserts.any():
        raise InputFormatError(
            f"{path}, line {line}: the query row {name!r} holds lowercase letters (insertions "
            f"relative to itself); an a3m query is uppercase"
        )
    width = int(per_row[query_index])
    for i in np.flatnonzero(per_row != width):
        raise InputFormatError(
            f"{path}, line {rows.lines[i]}: row {rows.names[i]!r} has {per_row[i]} aligned "
            f"columns (uppercase letters and '-'), the query {name!r} {width}"
        )


def _assemble(
    path: Path, sha256: str, rows: _Rows, query_index: int, matrix: np.ndarray
) -> Alignment:
    order = [query_index, *(i for i in range(len(rows.names)) if i != query_index)]
    matrix = matrix[order]
    query_id = rows.names[query_index] or path.stem
    consensus = matrix[0] != GAP
    if not consensus.any():
        raise InputFormatError(
            f"{path}, line {rows.lines[query_index]}: the query row {query_id!r} has only gaps"
        )
    names = [query_id, *(rows.names[i] for i in order[1:])]
    kept, _, part = normalise(matrix)
    msa = msa_from_matrix([names[i] for i in kept], part, query_id)
    return Alignment(path, sha256, query_id, query_of(matrix[0]), msa)


def query_of(row: np.ndarray) -> str:
    """The ungapped uppercase sequence of a row of digital codes."""
    return bytes(_LETTERS[row[row != GAP]]).decode("ascii")


def msa_matrix(msa: DigitalMSA[Any]) -> np.ndarray:
    """(n_rows, n_columns) uint8 digital codes of an alignment."""
    return np.array([np.asarray(row, dtype=np.uint8) for row in msa.alignment])


def normalise(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows and columns to keep of an alignment whose row 0 is the query, and that part of it:
    the query's row, rows with a residue in a consensus column (the query's residues'
    columns), consensus columns and insert columns with a residue left.

    Returns:
        (kept rows' indices, kept columns' indices, the kept matrix)
    """
    consensus = matrix[0] != GAP
    residues = matrix != GAP
    rows = np.flatnonzero(residues[:, consensus].any(axis=1) | (np.arange(len(matrix)) == 0))
    columns = np.flatnonzero(consensus | residues[rows].any(axis=0))
    return rows, columns, matrix[np.ix_(rows, columns)]


def msa_from_matrix(names: Sequence[str], matrix: np.ndarray, name: str) -> DigitalMSA[Any]:
    """A digital alignment of `matrix` (rows named `names`, row 0 the query) with the
    reference line marking the query's residues' columns as consensus."""
    sequences = [
        DigitalSequence(AMINO, name=label.encode(), sequence=matrix[i])
        for i, label in enumerate(_unique(names))
    ]
    msa: DigitalMSA[Any] = DigitalMSA(alphabet=AMINO, name=name.encode(), sequences=sequences)
    msa.reference = "".join(np.where(matrix[0] != GAP, "x", "."))
    return msa


def _unique(names: Sequence[str]) -> list[str]:
    """Names as easel needs them: distinct and not empty (a3m files repeat names or have none)."""
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        label = name or f"row{i}"
        while label in seen:
            label = f"{label}#{i}"
        seen.add(label)
        out.append(label)
    return out


def select_rows(
    msa: DigitalMSA[Any], keep: np.ndarray, n_columns: int | None = None
) -> DigitalMSA[Any]:
    """The alignment of rows `keep` (row 0 among them) and its first `n_columns` columns, with
    rows left with no residue in a consensus column and insert columns left empty dropped.
    Annotation (names, descriptions, reference line) is kept."""
    matrix = msa_matrix(msa)[np.asarray(keep)][:, :n_columns]
    rows, columns, _ = normalise(matrix)
    return msa.select(sequences=np.asarray(keep)[rows].tolist(), columns=columns.tolist())


def crop(alignment: Alignment, max_length: int) -> Alignment:
    """Keep the first `max_length` residues of the query and the alignment's columns up to
    the last of them (as ingest crops a long query).

    Raises:
        ConfigError: `max_length` < 1.
    """
    if max_length < 1:
        raise ConfigError(f"crop: max_length must be >= 1, got {max_length}")
    if len(alignment.query) <= max_length:
        return alignment
    msa = alignment.msa
    consensus = np.flatnonzero(msa_matrix(msa)[0] != GAP)
    cropped = select_rows(msa, np.arange(len(msa.sequences)), int(consensus[max_length - 1]) + 1)
    return replace(alignment, query=alignment.query[:max_length], msa=cropped)


_UPPER = _LETTERS.copy()
_UPPER[GAP:] = ord("-")
_UPPER[GAP + 1 : GAP + 7] = _LETTERS[GAP + 1 : GAP + 7]  # BJZOUX
_LOWER = np.array([ord(chr(c).lower()) for c in _UPPER], dtype=np.uint8)


def write_a3m(msa: DigitalMSA[Any], handle: BinaryIO) -> None:
    """Write an alignment whose row 0 is the query as a3m (HH-suite; read by ColabFold and
    OpenFold): the query first, one line per row, the query's residues' columns as uppercase
    letters and `-`, the other columns' residues as lowercase letters, their gaps left out."""
    matrix = msa_matrix(msa)
    consensus = matrix[0] != GAP
    text = np.where(consensus, _UPPER[matrix], _LOWER[matrix])
    keep = consensus | (matrix != GAP)
    lines = []
    for i, sequence in enumerate(msa.sequences):
        title = " ".join(filter(None, (sequence.name, sequence.description)))
        lines.append(f">{title}\n".encode() + bytes(text[i][keep[i]]) + b"\n")
    handle.write(b"".join(lines))


def _layout_matrix(path: str | Path, layout: str, fmt: str = "a3m") -> np.ndarray:
    """The a3m matrix of a file with insertions laid out by `layout` (for measuring layouts)."""
    path = Path(path)
    rows = _parse_fasta(path, _decode(path, _read_bytes(path)))
    return _expand(path, rows, 0, layout)
