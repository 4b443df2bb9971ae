"""Iterative jackhmmer search with pyhmmer, parallel within each query as well as across queries.

`pyhmmer.hmmer.jackhmmer` runs one query per thread, so the longest queries leave cores idle
at the end of a job. Here each iteration's search is split across database chunks that run on a
shared thread pool, with `Z` fixed to the whole database's sequence count, and the per-chunk hits
are merged (`TopHits.merge` re-thresholds them, recomputing domZ). Several queries are driven at
once so the Python-side work of one (building the next model) overlaps the others' searches.
The iteration logic itself is pyhmmer's `IterativeSearch`; only its search step is replaced.

Reference: HMMER 3.4 jackhmmer; pyhmmer 0.12.3.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pyhmmer
from pyhmmer.easel import Alphabet, DigitalMSA, DigitalSequence, DigitalSequenceBlock, SequenceFile
from pyhmmer.plan7 import HMM, Builder, IterativeSearch, Pipeline, TopHits

from protprof.atomic import Kind
from protprof.errors import InputFormatError, SearchError
from protprof.params import check_params, param
from protprof.queries.fasta import Record, refuse_if_corrupt_gzip
from protprof.store.file_versions import check

log = logging.getLogger(__name__)
AMINO = Alphabet.amino()


# HMMER's default random seed (domain definition; the profile builder's too).
HMMER_SEED = 42
_E_VALUE = "(0, inf)"
_P_VALUE = "(0, 1]"


@dataclass(frozen=True)
class SearchParams:
    """jackhmmer parameters, named and flagged as the jackhmmer program names them (the CLI
    options, the workflow's `search:` keys and their schema come from these fields). Defaults
    = HMMER's, except -N: 3 here (the program's is 5), the one default of `build` and the
    workflow. On the command line and in the workflow, unset values are the preset's."""

    # -N: maximum number of iterations. 3, not HMMER's 5: each iteration is another scan of the
    # database (at UniRef90, hours per query), and profiles change little after the third.
    iterations: int = param(
        3, help="maximum iterations", flag="-N", aliases=("--iterations",), bounds="[1, inf)"
    )
    E: float = param(
        10.0, help="report sequences with E-value <= this", flag="-E", bounds=_E_VALUE
    )
    domE: float = param(10.0, help="report domains with E-value <= this", bounds=_E_VALUE)
    incE: float = param(1e-3, help="include sequences with E-value <= this", bounds=_E_VALUE)
    incdomE: float = param(1e-3, help="include domains with E-value <= this", bounds=_E_VALUE)
    F1: float = param(0.02, help="MSV filter P-value threshold", bounds=_P_VALUE)
    F2: float = param(1e-3, help="Viterbi filter P-value threshold", bounds=_P_VALUE)
    F3: float = param(1e-5, help="Forward filter P-value threshold", bounds=_P_VALUE)
    max_hits: int | None = param(
        None,
        help="maximum MSA depth (keep the best this many included targets)",
        bounds="[1, inf)",
    )
    seed: int = param(
        HMMER_SEED, help="RNG seed (domain definition, builder)", cli=False, config=False
    )

    def __post_init__(self) -> None:
        check_params(self, "search")

    def thresholds(self) -> dict[str, Any]:
        """The keyword arguments every `Pipeline` gets (never pyhmmer's silent defaults)."""
        return {k: getattr(self, k) for k in ("E", "domE", "incE", "incdomE", "F1", "F2", "F3")}


PRESETS: dict[str, SearchParams] = {
    # HMMER 3.4 jackhmmer's thresholds, with protprof's -N 3.
    "hmmer": SearchParams(),
    # AlphaFold's UniRef90 recipe (jackhmmer -N 1 -E 1e-4 --incE 1e-4 --F1 5e-4 --F2 5e-5
    # --F3 5e-7, MSA capped at 10,000 sequences).
    "alphafold": SearchParams(
        iterations=1, E=1e-4, incE=1e-4, F1=5e-4, F2=5e-5, F3=5e-7, max_hits=10_000
    ),
}


@dataclass(frozen=True)
class Preset:
    """The preset a search's parameters start from; `SearchParams` options override it."""

    preset: str = param(
        "hmmer",
        help="hmmer: HMMER's jackhmmer thresholds with -N 3; alphafold: AlphaFold's UniRef90 "
        "recipe",
        choices=tuple(PRESETS),
    )

    def __post_init__(self) -> None:
        check_params(self, "search")


def search_params(preset: str = Preset.preset, **overrides: object) -> SearchParams:
    """Return a preset with overrides (None values are ignored)."""
    Preset(preset)  # refused naming search.preset and the choices
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[preset], **changes)


@dataclass(frozen=True)
class Database:
    """A target database loaded in memory, with the fingerprint stored as provenance."""

    block: DigitalSequenceBlock
    fingerprint: dict[str, Any]


def _describe(path: Path, n_sequences: int, n_residues: int) -> dict[str, Any]:
    """The fingerprint of a database whose sequences were already counted: only the checksum
    needs another (byte-level) pass over the file."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "sha256": digest,
        "n_sequences": n_sequences,
        "n_residues": n_residues,
    }


def fingerprint_database(path: str | Path) -> dict[str, Any]:
    """Count sequences and residues and checksum the file (the `prepare_db` step), streaming:
    the database is never held in memory."""
    path = Path(path)
    n_sequences = n_residues = 0
    for seq in read_database(path):
        n_sequences += 1
        n_residues += len(seq)
    return _describe(path, n_sequences, n_residues)


def is_fingerprint(path: Path) -> bool:
    """Whether `path` is a fingerprint JSON written by `protprof prepare-db`."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"sha256", "n_sequences", "n_residues"} <= set(data)


FINGERPRINT = Kind("a protprof database fingerprint", is_fingerprint)


def _open_database(path: Path) -> BinaryIO | gzip.GzipFile:
    """The database as bytes. Gzip is decompressed here, not by easel: easel pipes through
    `gzip -dc` and reads a file cut short (a partial download) as a complete database, with
    only a stray message on stderr; Python's reader raises EOFError at the cut."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_database(path: Path) -> Iterator[DigitalSequence[Any]]:
    """Stream the database's sequences; one clear error for a truncated or unreadable file."""
    try:
        with (
            _open_database(path) as raw,
            SequenceFile(
                cast(BinaryIO, raw), digital=True, alphabet=AMINO, format="fasta"
            ) as handle,
        ):
            while (block := handle.read_block(sequences=10_000)) and len(block):
                yield from block
    except FileNotFoundError as e:
        raise InputFormatError(f"{path}: database file not found") from e
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputFormatError(
            f"{path}: truncated or corrupt gzip file ({e}); download it again"
        ) from e
    except (ValueError, OSError) as e:
        refuse_if_corrupt_gzip(path, e)
        raise InputFormatError(f"{path}: cannot read the database as protein FASTA ({e})") from e


def read_block(path: str | Path) -> DigitalSequenceBlock:
    """A FASTA(.gz) database in memory (~3 bytes per residue), without fingerprinting it."""
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path}: database file not found")
    block = DigitalSequenceBlock(AMINO, read_database(path))
    if not len(block):
        raise InputFormatError(f"{path}: the database holds no sequences")
    return block


def load_database(path: str | Path, fingerprint: dict[str, Any] | None = None) -> Database:
    """Load a database once per job; fingerprint it unless a fingerprint is given (checked)."""
    path = Path(path)
    block = read_block(path)
    if fingerprint is None:
        # Count from the loaded block rather than parsing the FASTA a second time.
        fingerprint = _describe(path, len(block), sum(len(seq) for seq in block))
    elif fingerprint["n_sequences"] != len(block):
        raise SearchError(
            f"{path}: holds {len(block)} sequences but its fingerprint says "
            f"{fingerprint['n_sequences']}: the database changed, rerun prepare-db"
        )
    return Database(block, fingerprint)


def read_fingerprint(path: str | Path) -> dict[str, Any]:
    """Read a fingerprint JSON written by `protprof prepare-db`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputFormatError(f"{path}: not a database fingerprint JSON ({e})") from e
    check(data, "fingerprint", path)
    missing = [k for k in ("sha256", "n_sequences", "n_residues") if k not in data]
    if missing:
        raise InputFormatError(
            f"{path}: not a fingerprint of `protprof prepare-db` (no {', '.join(missing)})"
        )
    # the version describes the file, not the database: stores record what build computes
    return {k: v for k, v in data.items() if k not in ("format", "format_version")}


@dataclass(frozen=True)
class QueryResult:
    """The final alignment of one query and what the search found."""

    id: str
    sequence: str
    msa: DigitalMSA  # final iteration's alignment; the query is row 0
    n_hits: int  # rows of the final alignment besides the query's (its depth; `alignment_depth`)
    iterations: int  # iterations actually run (fewer than asked if it converged)
    # HMMER's model of `msa` when the search already built it: its last two alignments were
    # identical, so the model it searched with last is the model of the final alignment.
    hmm: HMM | None = None
    # The model the last iteration searched with (calibrated), how many targets that search
    # reported (its domZ), and the names of the targets it included with an alignment row.
    final_model: HMM | None = None
    final_reported: int = 0
    included: frozenset[str] = frozenset()
    # Names of every target reported in any iteration (the representative's pool); filled only
    # when the search was asked to collect it.
    reported: frozenset[str] = field(default_factory=frozenset)
    cpu_seconds: float = 0.0  # CPU time the search took, all threads


def balanced_bounds(lengths: Sequence[int] | np.ndarray, n: int) -> list[tuple[int, int]]:
    """Cut a sequence of lengths into n contiguous ranges [a, b) of about equal total length
    (empty ranges at the end when there are fewer items than n).

    Range k ends after the first item where the running total reaches k/n of the whole, one
    cut per item at most. Numpy throughout: at UniRef90 scale (2e8 sequences) a Python list of
    lengths would take ~7 GB.
    """
    cumulative = np.cumsum(np.asarray(lengths, dtype=np.int64))
    size, total = len(cumulative), int(cumulative[-1]) if len(cumulative) else 0
    cuts, last = [], 0
    for k in range(1, n):
        if last >= size:
            break
        # first item i (counting from 1) with cumulative[i - 1] >= total * k / n, after `last`
        cut = max(int(np.searchsorted(cumulative, total * k / n, side="left")) + 1, last + 1)
        if cut > size:
            break
        cuts.append(cut)
        last = cut
    edges = [0, *cuts, size]
    bounds = [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return bounds + [(size, size)] * (n - len(bounds))


def _chunks(
    block: DigitalSequenceBlock, lengths: np.ndarray, n: int
) -> list[DigitalSequenceBlock]:
    """Split a block into at most n non-empty contiguous chunks of about equal residue counts."""
    bounds = balanced_bounds(lengths, max(1, min(n, len(block))))
    return [block[a:b] for a, b in bounds if b > a]


def same_alignment(a: DigitalMSA, b: DigitalMSA) -> bool:
    """Whether two alignments hold the same rows, residues and consensus columns: all that
    HMMER's builder reads. (easel's `==` also compares the alignments' names, which jackhmmer
    numbers by iteration, and ignores the reference line that marks the consensus columns.)"""
    return (
        a.names == b.names
        and a.reference == b.reference
        and all(bytes(x) == bytes(y) for x, y in zip(a.alignment, b.alignment, strict=True))
    )


def aligned_targets(hits: TopHits) -> frozenset[str]:
    """Names of the targets with a row in the alignment built from `hits`: the included
    targets with at least one included domain. A target can be included on its whole-sequence
    E-value with no domain passing `incdomE`; it then has no alignment row."""
    return frozenset(
        _name(hit.name) for hit in hits if hit.included and any(d.included for d in hit.domains)
    )


def alignment_depth(msa: DigitalMSA) -> int:
    """The depth of a query's alignment: its rows besides the query's own (row 0). One row per
    included domain, whatever the targets' names (a database may repeat names)."""
    return len(msa.sequences) - 1


def _name(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def cap_included(hits: TopHits, max_hits: int | None) -> None:
    """Keep only the best `max_hits` included targets (by E-value) included: the MSA depth cap."""
    if max_hits is None:
        return
    included = sorted((h for h in hits if h.included), key=lambda h: h.evalue)
    for hit in included[max_hits:]:
        hit.included = False


def make_pipeline(params: SearchParams, z: int) -> Pipeline:
    """A search pipeline with every threshold given explicitly and `Z` fixed to the whole
    database's sequence count, so E-values never depend on how the database is split."""
    return Pipeline(AMINO, Z=z, seed=params.seed, **params.thresholds())


def make_builder(params: SearchParams) -> Builder:
    """jackhmmer's model builder (`--hand`: the query's columns are the consensus columns).
    HMMER reseeds its RNG for every model (seed != 0), so a fresh builder per job is exact."""
    return Builder(AMINO, architecture="hand", seed=params.seed)


class _ChunkedSearch(IterativeSearch):
    """pyhmmer's IterativeSearch whose search step runs over database chunks in parallel."""

    def __init__(self, *args: Any, chunk_search: Callable[[HMM], TopHits]) -> None:
        super().__init__(*args)
        self.chunk_search = chunk_search

    def _search_hmm(self, hmm: HMM) -> TopHits:
        return self.chunk_search(hmm)


class _CoreBoundBuilder(Builder):
    """A Builder that holds one of the job's core permits while it builds (and calibrates)."""

    def __init__(self, cores: threading.Semaphore, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cores = cores

    def build(self, *args: Any) -> tuple:
        with self.cores:
            return super().build(*args)

    def build_msa(self, *args: Any) -> tuple:
        with self.cores:
            return super().build_msa(*args)


class JackhmmerSearch:
    """Run jackhmmer for many queries against one in-memory database.

    Args:
        database: the loaded targets.
        params: every search parameter (passed explicitly to each Pipeline).
        threads: cores to use: at most this many searches, builds and `finish` calls at once.
        z: sequence count of the *whole* database, so E-values do not depend on splitting.
    """

    def __init__(
        self, database: DigitalSequenceBlock, params: SearchParams, threads: int, z: int
    ) -> None:
        self.params = params
        self.threads = max(1, threads)
        self.z = z
        # One query driver more than threads, so while a driver builds its next model (GIL-free
        # C code) the chunk pool still has work queued.
        # Splitting costs some CPU per search, so a query is split only as much as needed to
        # keep every thread busy: into threads // (queries in flight) chunks. With many queries
        # in flight that is 1 (plain query-level parallelism); at a job's tail, all threads
        # work on the last queries.
        lengths = np.fromiter((len(s) for s in database), dtype=np.int64, count=len(database))
        self._chunkings = {k: _chunks(database, lengths, k) for k in range(1, self.threads + 1)}
        # At most `threads` CPU-heavy steps at once (chunk searches, model builds, `finish`),
        # so a job uses the cores Snakemake or SLURM gave it, however many drivers wait.
        self._cores = threading.BoundedSemaphore(self.threads)
        self._in_flight = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def _pipeline(self) -> Pipeline:
        if not hasattr(self._local, "pipeline"):
            self._local.pipeline = make_pipeline(self.params, self.z)
        pipeline: Pipeline = self._local.pipeline
        pipeline.clear()
        return pipeline

    def _search_chunk(
        self, hmm: HMM, chunk: DigitalSequenceBlock, cost: list[float] | None = None
    ) -> TopHits:
        with self._cores:
            start = time.thread_time()
            hits = self._pipeline().search_hmm(hmm, chunk)
            if cost is not None:  # list.append is atomic: chunks of one query add up safely
                cost.append(time.thread_time() - start)
            return hits

    def _search_all(
        self,
        pool: Executor,
        hmm: HMM,
        targets: DigitalSequenceBlock | None = None,
        cost: list[float] | None = None,
    ) -> TopHits:
        if targets is not None:  # a small target set (a pool): not worth splitting
            return self._search_chunk(hmm, targets)  # in this thread: its CPU time is counted
        chunks = self._chunkings[max(1, self.threads // max(1, self._in_flight))]
        futures = [pool.submit(self._search_chunk, hmm, c, cost) for c in chunks]
        hits = [f.result() for f in futures]
        return hits[0].merge(*hits[1:]) if len(hits) > 1 else hits[0]

    def _select_hits(self, hits: TopHits) -> None:
        cap_included(hits, self.params.max_hits)

    def _finish(
        self,
        finish: Callable[[QueryResult], object] | None,
        pool: Executor,
        record: Record,
        targets: DigitalSequenceBlock | None = None,
        collect: bool = False,
    ) -> object:
        result = self._run_query(pool, record, targets, collect)
        if finish is None:
            return result
        with self._cores:
            return finish(result)

    def _run_query(
        self,
        pool: Executor,
        record: Record,
        targets: DigitalSequenceBlock | None = None,
        collect: bool = False,
    ) -> QueryResult:
        # Only whole-database searches count: the database is split for them by how many run
        # at once, and searches of small target sets (pools) are never split.
        whole = targets is None
        with self._lock:
            self._in_flight += whole
        try:
            # CPU time: this driver thread's (model builds, small searches) plus the chunk
            # searches it handed to the pool.
            cost: list[float] = []
            start = time.thread_time()
            result = self._iterate(pool, record, targets, collect, cost)
            return replace(result, cpu_seconds=time.thread_time() - start + sum(cost))
        finally:
            with self._lock:
                self._in_flight -= whole

    def _iterate(
        self,
        pool: Executor,
        record: Record,
        targets: DigitalSequenceBlock | None = None,
        collect: bool = False,
        cost: list[float] | None = None,
    ) -> QueryResult:
        query = pyhmmer.easel.TextSequence(name=record.id, sequence=record.sequence).digitize(
            AMINO
        )
        builder = _CoreBoundBuilder(self._cores, AMINO, architecture="hand", seed=self.params.seed)
        driver_pipeline = make_pipeline(self.params, self.z)
        search = _ChunkedSearch(
            # The whole database is passed for form's sake; searches go through chunk_search.
            driver_pipeline,
            builder,
            query,
            self._chunkings[1][0],
            self._select_hits,
            chunk_search=lambda hmm: self._search_all(pool, hmm, targets, cost),
        )
        result = previous = None
        reported: set[str] = set()
        for result in search:
            if collect:
                reported.update(_name(hit.name) for hit in result.hits if hit.reported)
            if result.converged or result.iteration >= self.params.iterations:
                break
            # Copied before the next iteration's builder edits it (it marks fragments).
            previous = result.msa.copy()
        assert result is not None  # IterativeSearch always yields a first iteration
        included = aligned_targets(result.hits)
        model = (
            result.hmm if previous is not None and same_alignment(previous, result.msa) else None
        )
        return QueryResult(
            record.id,
            record.sequence,
            result.msa,
            alignment_depth(result.msa),
            result.iteration,
            model,
            final_model=result.hmm,
            final_reported=sum(1 for hit in result.hits if hit.reported),
            included=included,
            reported=frozenset(reported),
        )

    def run(
        self,
        records: Sequence[Record],
        progress: Callable[[object], None] | None = None,
        finish: Callable[[QueryResult], object] | None = None,
    ) -> list:
        """Search every record; returns results (or `finish(result)`) in input order.

        Longest queries start first so the job does not end waiting on one long query.
        `finish` runs in the worker threads (pyhmmer releases the GIL), so per-query
        post-processing such as building the profile overlaps other queries' searches.
        """
        log.info(
            "jackhmmer parameters: %s, Z=%d, threads=%d", asdict(self.params), self.z, self.threads
        )
        order = sorted(range(len(records)), key=lambda i: -len(records[i].sequence))
        results: list[object] = [None] * len(records)
        with self.session() as submit:
            futures = {submit(records[i], finish): i for i in order}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if progress is not None:
                    progress(results[i])
        return results

    @contextmanager
    def session(self) -> Iterator[Callable[..., Future]]:
        """Thread pools for searches submitted one by one, as a caller decides what to search
        next: `submit(record, finish=None, targets=None, collect=False)` returns a Future of
        the result (or of `finish(result)`). `targets`: search this block instead of the
        database (Z stays the whole database's); `collect`: fill `QueryResult.reported`;
        `lead`: run on drivers of their own, so it does not wait for a driver behind the
        queries queued without it (the chunk pool and the core permits are shared)."""
        chunk_pool = ThreadPoolExecutor(self.threads, thread_name_prefix="chunk")
        query_pool = ThreadPoolExecutor(self.threads + 1, thread_name_prefix="query")
        lead_pool = ThreadPoolExecutor(self.threads + 1, thread_name_prefix="lead")
        pools = (lead_pool, query_pool, chunk_pool)

        def submit(
            record: Record,
            finish: Callable[[QueryResult], object] | None = None,
            targets: DigitalSequenceBlock | None = None,
            collect: bool = False,
            lead: bool = False,
        ) -> Future:
            driver = lead_pool if lead else query_pool
            return driver.submit(self._finish, finish, chunk_pool, record, targets, collect)

        try:
            yield submit
        except BaseException:
            # Ctrl-C or a failed query: drop the queued work instead of finishing the whole
            # search first (what `with ThreadPoolExecutor` would do). Searches already running
            # end on their own; their drivers stop at the next submit.
            for pool in pools:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        for pool in pools:
            pool.shutdown()
