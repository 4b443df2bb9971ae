"""jackhmmer against a database split into K chunks, one iteration at a time, so that each
search job holds only one chunk in memory (databases larger than a node's memory).

Iteration i of a query shard = K `search_chunk` jobs (each: every unconverged query's model
against one chunk, `Z` = the whole database's sequence count) and one `merge_iteration` job
(merge the K hit lists, then exactly pyhmmer's `IterativeSearch` step: sort by key, select,
compare with the previous ranking, align the included hits with the query as row 0, test
convergence, build the next model). The result equals the in-memory search: same included
hits, same profiles (tested for K = 1 and K = 3).

Intermediate files are pickles of pyhmmer objects (HMM, TopHits, KeyHash) plus Stockholm text
for alignments (DigitalMSA does not pickle); they are only read by the same protprof version.
Each file starts with a header and the CRC-32 of the pickle: a damaged or foreign file is
refused in one line, never unpickled into a wrong state.
"""

from __future__ import annotations

import io
import itertools
import pickle
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from pyhmmer.easel import (
    DigitalMSA,
    DigitalSequence,
    DigitalSequenceBlock,
    KeyHash,
    MSAFile,
    TextSequence,
)
from pyhmmer.plan7 import HMM, Background, TopHits, Trace

from protprof.atomic import atomic_output
from protprof.errors import InputFormatError
from protprof.jackhmmer import (
    AMINO,
    QueryResult,
    SearchParams,
    alignment_depth,
    balanced_bounds,
    cap_included,
    make_builder,
    make_pipeline,
    read_database,
)
from protprof.queries.fasta import Record, write_fasta

STATE_VERSION = 2
STATE_MAGIC = b"protprof search state\n"


@dataclass
class QueryState:
    """Where one query's iterative search stands after an iteration."""

    hmm: HMM | None  # the model to search with next; None once converged
    ranking: KeyHash  # targets seen so far (for the convergence test)
    n_prev: int  # alignment rows of the previous iteration
    msa: bytes  # the latest alignment, Stockholm
    n_hits: int  # rows of the latest alignment besides the query's
    iterations: int
    converged: bool


def split_database(path: str | Path, outs: list[Path]) -> list[int]:
    """Write the database as len(outs) contiguous FASTA chunks of about equal residue counts.

    Two streaming passes (lengths, then records), so the job holds one sequence at a time and
    not the database it exists to split.
    """
    path = Path(path)
    lengths = np.fromiter((len(s) for s in read_database(path)), dtype=np.int64)
    bounds = balanced_bounds(lengths, len(outs))
    records = (Record(s.name, s.textize().sequence, s.description) for s in read_database(path))
    for out, (a, b) in zip(outs, bounds, strict=True):
        with atomic_output(out) as tmp:
            write_fasta(tmp, itertools.islice(records, b - a))
    return [b - a for a, b in bounds]


def _digital(record: Record) -> DigitalSequence:
    # A description gives the query a `#=GS` line, which keeps it row 0 through Stockholm
    # (the reader orders rows by first mention, and hits have descriptions).
    return TextSequence(name=record.id, description="query", sequence=record.sequence).digitize(
        AMINO
    )


def initial_states(records: list[Record], params: SearchParams) -> dict[str, QueryState]:
    """Before iteration 1: the single-sequence model of every query."""
    builder, background = make_builder(params), Background(AMINO)
    states = {}
    for r in records:
        hmm, _, _ = builder.build(_digital(r), background)
        states[r.id] = QueryState(hmm, KeyHash(), 1, b"", 0, 0, False)
    return states


def search_chunk(
    states: dict[str, QueryState],
    chunk: DigitalSequenceBlock,
    params: SearchParams,
    z: int,
    threads: int,
) -> dict[str, TopHits]:
    """Every unconverged query's model against one chunk (queries in parallel)."""
    todo = [(qid, s.hmm) for qid, s in states.items() if s.hmm is not None]

    def one(item: tuple[str, HMM]) -> tuple[str, TopHits]:
        pipeline = make_pipeline(params, z)
        return item[0], pipeline.search_hmm(item[1], chunk)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return dict(pool.map(one, todo))


def _write_msa(msa: DigitalMSA) -> bytes:
    buffer = io.BytesIO()
    msa.write(buffer, "stockholm")
    return buffer.getvalue()


def read_msa(data: bytes) -> DigitalMSA[Any]:
    """An alignment saved in a search state (Stockholm bytes), digital."""
    with MSAFile(io.BytesIO(data), format="stockholm", digital=True, alphabet=AMINO) as handle:
        msa = handle.read()
    if msa is None:
        raise InputFormatError("a saved search state holds an empty alignment")
    return msa


def merge_iteration(
    records: list[Record],
    states: dict[str, QueryState],
    chunk_hits: list[dict[str, TopHits]],
    params: SearchParams,
) -> dict[str, QueryState]:
    """Merge one iteration's chunk hits and take pyhmmer's IterativeSearch step per query."""
    builder, background = make_builder(params), Background(AMINO)
    new = {}
    for r in records:
        state = states[r.id]
        if state.hmm is None:
            new[r.id] = state
            continue
        parts = [hits[r.id] for hits in chunk_hits]
        hits = parts[0].merge(*parts[1:]) if len(parts) > 1 else parts[0]
        hits.sort(by="key")
        cap_included(hits, params.max_hits)
        n_new = hits.compare_ranking(state.ranking)
        query = _digital(r)
        msa = cast(
            DigitalMSA,
            hits.to_msa(
                AMINO,
                sequences=[query],
                traces=[Trace.from_sequence(query)],
                all_consensus_cols=True,
                digitize=True,
            ),
        )
        iterations = state.iterations + 1
        msa.name = f"{r.id}-i{iterations}"  # as IterativeSearch names it (the builder needs one)
        converged = n_new == 0 and len(msa.sequences) <= state.n_prev
        last = converged or iterations >= params.iterations
        hmm = None if last else builder.build_msa(msa, background)[0]
        n_hits = alignment_depth(msa)
        new[r.id] = QueryState(
            hmm, state.ranking, len(msa.sequences), _write_msa(msa), n_hits, iterations, converged
        )
    return new


def results(records: list[Record], states: dict[str, QueryState]) -> list[QueryResult]:
    """The final alignment of every query, as the in-memory search returns them."""
    return [
        QueryResult(
            r.id,
            r.sequence,
            read_msa(states[r.id].msa),
            states[r.id].n_hits,
            states[r.id].iterations,
        )
        for r in records
    ]


def save(path: Path, obj: object) -> None:
    """Write a search state or hit list atomically: a header, the CRC-32 of the rest, and the
    pickle tagged with the state format version."""
    data = pickle.dumps({"version": STATE_VERSION, "data": obj})
    with atomic_output(path) as tmp:
        tmp.write_bytes(STATE_MAGIC + struct.pack(">I", zlib.crc32(data)) + data)


def load(path: Path) -> Any:
    """Read what `save` wrote, checked: a damaged file, or one of another state format version
    or of something else, is refused in one line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputFormatError(f"{path}: unreadable search state ({e})") from e
    rerun = "run the step that wrote it again"
    if not raw.startswith(STATE_MAGIC):
        raise InputFormatError(
            f"{path}: not a search state of this protprof version (no {STATE_MAGIC!r} header); "
            f"{rerun}"
        )
    head = len(STATE_MAGIC) + 4
    data = raw[head:]
    if len(raw) < head or struct.unpack(">I", raw[len(STATE_MAGIC) : head])[0] != zlib.crc32(data):
        raise InputFormatError(f"{path}: damaged search state (its checksum differs); {rerun}")
    try:
        payload = pickle.loads(data)
    except Exception as e:  # a damaged pickle raises nearly anything (ValueError, ...)
        raise InputFormatError(
            f"{path}: damaged search state ({type(e).__name__}); {rerun}"
        ) from e
    if not isinstance(payload, dict) or payload.get("version") != STATE_VERSION:
        raise InputFormatError(f"{path}: search state from another protprof version; {rerun}")
    return payload["data"]


def run_chunked(
    records: list[Record],
    chunks: list[DigitalSequenceBlock],
    params: SearchParams,
    z: int,
    threads: int,
) -> Iterator[dict[str, QueryState]]:
    """All iterations in one process (what the workflow's jobs do one by one); for tests."""
    states = initial_states(records, params)
    for _ in range(params.iterations):
        hits = [search_chunk(states, c, params, z, threads) for c in chunks]
        states = merge_iteration(records, states, hits, params)
        yield states
