"""The search journal: each finished query's profile made durable while a search job runs, so
the rerun of a killed job (time limit, preemption, node failure) searches only the queries the
killed run had not finished and writes the store an uninterrupted run writes.

Layout, beside the job's output (`journal_path`: `<out>.journal/`)::

    journal.json        what the records were made with: settings and their key
    <run id>.seg        the records one run appended (one segment per run)

A record holds one query's ID, sequence, quantised profile (the store's own bytes), depth, Neff
and, with `--msa-dir`, its final alignment as that folder's file bytes. It is framed as
`magic, payload length, payload CRC-32, header CRC-32` and appended with one write and an
fsync before the query counts as finished, so a kill loses only the queries in flight. Each run
appends to a segment of its own: a record a kill tore (the last of its segment) is never
followed by another run's records.

Every record is checked when read: a torn tail, a header or payload failing its CRC, or a
payload that is not a profile is skipped with a warning naming the segment and byte offset, and
its query is searched again. A journal made with other settings (the database's content; search,
profile and filter parameters; pyhmmer's version; the alignment format) is discarded with a
warning naming what differs. The journal is removed once the output is written.

The name is not one of the output's temporaries (`.<out>.tmp-*`, cleared when the output is next
written, see `atomic`): the journal outlives the killed job by design.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import shutil
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protprof.alphabet import N_STANDARD
from protprof.atomic import Kind, claim_output, output_error
from protprof.errors import OutputError
from protprof.queries.fasta import Record
from protprof.store import cache
from protprof.store.zarr_store import QUANT

log = logging.getLogger(__name__)
FORMAT = "protprof.journal"
FORMAT_VERSION = "1.0"
HEADER = "journal.json"
SEGMENT = ".seg"
MAGIC = b"PPJ1"
# magic, payload length, payload CRC-32, then the CRC-32 of those 16 bytes: a flipped length is
# caught before it sends the reader past good records.
_FRAME = struct.Struct("<4sQI")
_FRAME_CRC = struct.Struct("<I")
FRAME_BYTES = _FRAME.size + _FRAME_CRC.size
_META = struct.Struct("<I")


def journal_path(out: Path) -> Path:
    """Where the journal of the output `out` lives."""
    return out.with_name(f"{out.name}.journal")


def _is_journal(path: Path) -> bool:
    if not path.is_dir() or path.is_symlink():
        return False
    try:
        return json.loads((path / HEADER).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        # A journal killed before its header was renamed in holds segments and hidden files.
        return all(p.suffix == SEGMENT or p.name.startswith(".") for p in path.iterdir())


JOURNAL = Kind("a protprof search journal", _is_journal)


@dataclass(frozen=True)
class Entry:
    """One finished query: what its store row and alignment file are made of."""

    id: str
    sequence: str
    profile: np.ndarray  # (L, 20) uint8, rows summing to store.QUANT: the store's bytes
    n_hits: int
    neff: float
    alignment: bytes | None = None  # the --msa-dir file's bytes, when one is kept


def settings(
    fingerprint: dict[str, Any],
    search: Any,
    profile: Any,
    filters: Any,
    msa_format: str | None,
) -> dict[str, Any]:
    """What a journal's records depend on: the cache's context (the database by content, every
    search and profile parameter with Z, pyhmmer's version, the profile format), the filters
    when on, and the format of the kept alignments (None: none kept)."""
    ctx = cache.settings_context(fingerprint, search, profile)
    if filters.active:
        ctx["filters"] = asdict(filters)
    return {**ctx, "alignments": msa_format}


def encode(entry: Entry) -> bytes:
    """One framed record."""
    meta = json.dumps(
        {
            "id": entry.id,
            "sequence": entry.sequence,
            "n_hits": int(entry.n_hits),
            "neff": float(entry.neff),  # float32 -> float64 is exact, and JSON round-trips it
            "alignment": None if entry.alignment is None else len(entry.alignment),
        }
    ).encode()
    profile = np.ascontiguousarray(entry.profile, np.uint8).tobytes()
    payload = b"".join([_META.pack(len(meta)), meta, profile, entry.alignment or b""])
    head = _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload))
    return head + _FRAME_CRC.pack(zlib.crc32(head)) + payload


def _decode(payload: bytes) -> Entry:
    """A record's payload as an entry; ValueError if it is not one."""
    (n,) = _META.unpack_from(payload)
    meta = json.loads(payload[_META.size : _META.size + n])
    sequence = str(meta["sequence"])
    start = _META.size + n
    stop = start + len(sequence) * N_STANDARD
    size = meta["alignment"]
    if len(payload) != stop + (size or 0):
        raise ValueError("its sizes do not add up")
    profile = np.frombuffer(payload, np.uint8, len(sequence) * N_STANDARD, start)
    profile = profile.reshape(len(sequence), N_STANDARD)
    if (profile.sum(axis=1, dtype=np.int64) != QUANT).any():
        raise ValueError(f"a profile row does not sum to {QUANT}")
    alignment = None if size is None else payload[stop:]
    return Entry(
        str(meta["id"]), sequence, profile, int(meta["n_hits"]), float(meta["neff"]), alignment
    )


def read_segment(path: Path) -> tuple[list[Entry], list[str]]:
    """The good records of one segment, and a line for each bad one (torn, failing a CRC, not
    a profile). After a bad header, reading goes on at the next record's magic."""
    entries: list[Entry] = []
    problems: list[str] = []
    size = path.stat().st_size
    if size == 0:
        return entries, problems
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        pos = 0
        while pos < size:
            if size - pos < FRAME_BYTES:
                problems.append(
                    f"{path}: record at byte {pos} is cut short (a kill while it was appended)"
                )
                break
            magic, length, crc = _FRAME.unpack_from(m, pos)
            (head_crc,) = _FRAME_CRC.unpack_from(m, pos + _FRAME.size)
            if magic != MAGIC or zlib.crc32(m[pos : pos + _FRAME.size]) != head_crc:
                problems.append(f"{path}: record at byte {pos} has a corrupt header")
                found = m.find(MAGIC, pos + 1)
                pos = size if found < 0 else found
                continue
            start = pos + FRAME_BYTES
            if start + length > size:
                problems.append(
                    f"{path}: record at byte {pos} is cut short (a kill while it was appended)"
                )
                break
            payload = m[start : start + length]
            pos = start + length
            if zlib.crc32(payload) != crc:
                problems.append(f"{path}: record at byte {start - FRAME_BYTES} fails its checksum")
                continue
            try:
                entries.append(_decode(payload))
            except (ValueError, KeyError, TypeError, struct.error) as e:
                problems.append(
                    f"{path}: record at byte {start - FRAME_BYTES} is not a profile ({e})"
                )
    return entries, problems


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """An open journal: the records earlier runs left, and a segment this run appends to."""

    def __init__(self, path: Path, entries: dict[tuple[str, str], Entry]) -> None:
        self.path = path
        self.entries = entries
        self._fd: int | None = None
        self.appended = 0  # records this run made durable
        self._stopped = False  # after Ctrl-C: searches still finishing append nothing
        # Worker threads append: one record at a time, so a partial write (or O_APPEND on
        # NFS, which is not atomic) never interleaves two records.
        self._lock = threading.Lock()

    def finished(self, records: Sequence[Record]) -> dict[int, Entry]:
        """The records (by index) a journaled entry of the same ID and sequence covers."""
        found = {}
        for i, r in enumerate(records):
            entry = self.entries.get((r.id, r.sequence))
            if entry is not None:
                found[i] = entry
        return found

    def append(self, entry: Entry) -> None:
        """Make one finished query durable (written and fsync'd before returning); called
        from the search's worker threads."""
        frame = encode(entry)
        with self._lock:
            if self._stopped:
                return
            self._write(frame)
            self.appended += 1

    def stop(self) -> int:
        """Stop appending (worker threads may still finish searches after Ctrl-C) and close
        the segment; the number of finished queries the journal holds."""
        with self._lock:
            self._stopped = True
            self.close()
            return len(self.entries) + self.appended

    def _write(self, frame: bytes) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(
                    self.path / f"{uuid.uuid4().hex}{SEGMENT}",
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                    0o644,
                )
                _fsync_dir(self.path)  # the segment's name is durable before its records
            view = memoryview(frame)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as e:
            raise output_error(self.path, e) from e

    def close(self) -> None:
        """Close this run's segment (its records stay)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Drop the journal once the output holding its records is written."""
        self.close()
        _drop(self.path)


def _drop(path: Path) -> None:
    """Remove a journal folder, renamed first to a name the output's next write clears
    (`atomic._recover`) should the removal be cut short."""
    doomed = path.with_name(f".{path.name.removesuffix('.journal')}.tmp-journal")
    if doomed.exists():
        shutil.rmtree(doomed)
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def remove_journal(path: Path) -> None:
    """Remove the journal at `path`, if any, under its lock: once the items it holds are
    safe elsewhere (published to the profile cache)."""
    if path.exists():
        with claim_output(path, JOURNAL):
            _drop(path)


def _read_header(path: Path) -> dict[str, Any] | None:
    try:
        header = json.loads((path / HEADER).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); the journal is discarded", path / HEADER, e)
        return None
    return header if isinstance(header, dict) else None


def _write_header(path: Path, wanted: dict[str, Any]) -> None:
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "key": cache.context_key(wanted),
        "settings": wanted,
    }
    tmp = path / f".{HEADER}.tmp"
    with open(tmp, "w") as handle:
        handle.write(json.dumps(header, indent=1, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path / HEADER)
    _fsync_dir(path)


def _load(path: Path, wanted: dict[str, Any]) -> dict[tuple[str, str], Entry]:
    """The good entries of a journal made with `wanted`; any other journal is emptied."""
    segments = sorted(path.glob(f"*{SEGMENT}"))
    header = _read_header(path)
    if header is not None and header.get("settings") == wanted:
        entries: dict[tuple[str, str], Entry] = {}
        for segment in segments:
            good, problems = read_segment(segment)
            for line in problems:
                log.warning("%s; skipped, its query is searched again", line)
            for entry in good:
                entries.setdefault((entry.id, entry.sequence), entry)
        return entries
    if segments or header is not None:
        old = header.get("settings") if header else None
        why = "no readable header"
        if isinstance(old, dict):
            was, now = cache.differences([old, wanted])
            why = "other settings: " + ", ".join(f"{k} {was[k]!r} (now {now[k]!r})" for k in was)
        log.warning(
            "%s: a journal of %d segments made with %s; discarded, every query is searched",
            path,
            len(segments),
            why,
        )
        for p in path.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    _write_header(path, wanted)
    return {}


@contextmanager
def open_journal(path: Path | None, wanted: dict[str, Any]) -> Iterator[Journal | None]:
    """Hold the journal at `path` (locked, like an output) and read what it holds; None
    without a path (no journal kept)."""
    if path is None:
        yield None
        return
    with claim_output(path, JOURNAL):
        try:
            path.mkdir(exist_ok=True)
            journal = Journal(path, _load(path, wanted))
        except OSError as e:
            if isinstance(e, OutputError):
                raise
            raise output_error(path, e) from e
        try:
            yield journal
        except KeyboardInterrupt as e:
            # Ctrl-C: the finished queries stay for the rerun, and the user is told where; an
            # empty journal is not left behind.
            finished = journal.stop()
            if finished:
                e.add_note(
                    f"the {finished} queries searched so far are kept in {path}: "
                    "the same command continues from them"
                )
            else:
                try:
                    journal.remove()
                except OSError as error:  # the interrupt stays what the user sees
                    log.warning("%s: not removed (%s)", path, error)
            raise
        finally:
            journal.close()
