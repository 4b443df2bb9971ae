"""Family-scale search: one whole-database search per family, members searched against their
representative's homolog pool (`pool`) or labelled with its family HMM (`family`).

Grouping is greedy by length, from the representatives' own searches (the scheme the pilot in
docs/family-search.md measured best): queries are taken longest first; a query no
representative covers becomes a representative and is searched against the whole database (its
profile is exactly the per-query one); then its final model (the model its last iteration
searched with) is scored against the queries not yet decided, and every query it *covers*
becomes its member.
Covered means: sequence E-value <= incE with Z the whole database's size, and the included
domains (domZ = the representative's own final domZ) span >= `coverage` of the member's length.
An all-against-all phmmer of the queries first was measured too (docs/family-search.md): it
cost more per query and found fewer families.

- `pool`: the member is searched with jackhmmer against its pool, Z fixed to the whole
  database's size. A representative's pool is every target its search reported in any
  iteration; a member's is the union of the pools of its representative and of every earlier
  representative whose final model includes it at any coverage (a multi-domain member's other
  domains: alone, the covering representative's pool gave fewer members their own included set
  on the family-rich benchmark set, docs/family-search.md).
  domZ stays HMMER's default, the number of targets the search reports:
  every pool target gets its whole-database E-value, so this equals the whole-database domZ
  whenever the pool holds every target the member's own search would report, and it never
  depends on how many other targets the pool holds.
- `family`: no member search. The member is aligned to its representative's family HMM
  (the model of the representative's final alignment) and labelled with its emissions
  (`profiles.family_profile`), as Sturmfels et al. 2020 labelled Pfam families.

Representatives are decided one after another (a later query's role depends on every earlier
representative), so they run one at a time, split over the database chunks on all cores;
members' pool searches and the audit's searches fill the cores meanwhile. The roles depend only
on the queries and the settings, never on timing.

Audit: a fraction of members (chosen by a hash of the sequence, at least `audit_min`) is also
searched against the whole database; identical included sets and the mean Jensen-Shannon
divergence of the profiles say what reuse cost (provenance, log, a warning below
`WARN_WITHIN`).

The parts: `greedy_groups` decides the roles (bookkeeping only, given a coverage callback:
testable without searches or threads); `ReuseScheduler` runs the searches on one engine
session; `audit_extra` and `audit_summary` choose and score the audit. What a store records
(roles, summaries) is `protprof.store.reuse_records`'s.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyhmmer.easel import DigitalSequenceBlock, TextSequence
from pyhmmer.plan7 import HMM, Pipeline, TopHits

from protprof import mmseqs
from protprof.alignments.profiles import Profiled, ProfileParams, family_profile, profile_result
from protprof.errors import ConfigError, SearchError
from protprof.jackhmmer import AMINO, Database, JackhmmerSearch, SearchParams
from protprof.params import check_params, param
from protprof.queries.fasta import Record
from protprof.store.reuse_records import JS_TOLERANCE, MEMBER

log = logging.getLogger(__name__)
MODES = ("none", "pool", "family")
LOOKAHEAD = 8  # how far ahead of the next representative a search may start speculatively
# Speculation pays only where a search's single-threaded part (building each iteration's
# model, ~half of a search against 20,000 targets) leaves cores idle; against a large database
# the representative's search keeps every core busy on database chunks, and a discarded
# speculative search would cost core-hours.
SPECULATE_BELOW = 1_000_000  # database sequences
WARN_WITHIN = 0.9  # warn when fewer audited members than this agree


@dataclass(frozen=True)
class ReuseParams:
    """How queries share whole-database searches (`none`: each query searches alone). The
    CLI options and the workflow's `search:` reuse keys come from these fields."""

    mode: str = param(
        "none",
        help="none: search every query; pool: search family members against their "
        "representative's homolog pool; family: label members with the family HMM",
        flag="--reuse",
        key="reuse",
        choices=MODES,
    )
    coverage: float = param(
        0.8,
        help="a representative's final model must cover this fraction of a member",
        bounds="(0, 1]",
    )
    audit: float = param(
        0.02,
        help="fraction of members also searched against the whole database, to measure "
        "what reuse costs",
        bounds="[0, 1]",
    )
    audit_min: int = param(
        3,
        help="audit at least this many members (or every member, if fewer)",
        bounds="[0, inf)",
    )

    def __post_init__(self) -> None:
        check_params(self, "search")


def js_bits(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over residues of the Jensen-Shannon divergence (bits) of two (L, 20) profiles."""
    p = p / p.sum(axis=1, keepdims=True)
    q = q / q.sum(axis=1, keepdims=True)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(a / m), 0.0)
        return terms.sum(axis=1)

    return float(np.mean((kl(p) + kl(q)) / 2)) if len(p) else 0.0


def audit_rank(sequence: str) -> float:
    """A stable pseudo-random number in [0, 1) per sequence: audited members are chosen by it."""
    return int.from_bytes(hashlib.sha256(sequence.encode()).digest()[:8], "big") / 2**64


def _kmers(sequence: str) -> np.ndarray:
    """The distinct 3-mers of a sequence, as integers."""
    codes = np.frombuffer(sequence.encode("ascii"), np.uint8).astype(np.int64)
    return np.unique(codes[:-2] << 16 | codes[1:-1] << 8 | codes[2:])


def _alike(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two sequences share clearly more 3-mers than unrelated ones (about
    |a| |b| / 20^3 by chance): a scheduling hint only, never a grouping decision."""
    shared = len(np.intersect1d(a, b, assume_unique=True))
    return shared > 2 * len(a) * len(b) / 8000 + 5


class TargetIndex:
    """Database positions by target name (sorted numpy, not a dict: cheap at 10^8 names).
    A name used by several targets maps to all of them."""

    def __init__(self, block: DigitalSequenceBlock) -> None:
        names = np.array([seq.name for seq in block], dtype=object).astype(bytes)
        self.order = np.argsort(names, kind="stable")
        self.names = names[self.order]

    def positions(self, names: Sequence[str]) -> np.ndarray:
        """Sorted database positions of these names."""
        wanted = np.array([n.encode() for n in names], dtype=self.names.dtype)
        lo = np.searchsorted(self.names, wanted, side="left")
        hi = np.searchsorted(self.names, wanted, side="right")
        hits = [self.order[a:b] for a, b in zip(lo, hi, strict=True) if b > a]
        return np.unique(np.concatenate(hits)) if hits else np.zeros(0, np.int64)


@dataclass
class Outcome:
    """Every query's profile (input order), its role, and the figures for provenance."""

    profiled: list[Profiled]
    roles: np.ndarray  # (n,) uint8: REPRESENTATIVE or MEMBER
    summary: dict[str, Any]


def covered(
    model: HMM,
    dom_z: int,
    candidates: list[int],
    sequences: DigitalSequenceBlock[Any],
    search: SearchParams,
    z: int,
    coverage: float,
) -> tuple[list[int], list[int]]:
    """The candidates (indices into `sequences`) the representative's final model covers, and
    those it includes at all (any coverage)."""
    if not candidates:
        return [], []
    block = DigitalSequenceBlock(AMINO, [sequences[i] for i in candidates])
    pipeline = Pipeline(AMINO, Z=z, domZ=max(dom_z, 1), seed=search.seed, **search.thresholds())
    hits: TopHits = pipeline.search_hmm(model, block)
    members, related = [], []
    for hit in hits:
        if not hit.included:
            continue
        position = int(hit.name)  # queries are named by their position
        related.append(position)
        length = len(sequences[position])
        span = np.zeros(length, bool)
        for domain in hit.domains:
            if domain.included:
                span[domain.alignment.target_from - 1 : domain.alignment.target_to] = True
        if span.mean() >= coverage:
            members.append(position)
    return sorted(members), sorted(related)


@dataclass
class Group:
    """A representative and the queries it covers, decided together."""

    representative: int
    members: list[int]  # undecided queries its final model covers
    # member -> every representative so far whose final model includes it (any coverage)
    relatives: dict[int, list[int]]


# cover(representative, later, ahead) -> (covered, included): the undecided queries after
# the representative (`later`; `ahead`: the first of them within LOOKAHEAD) that its final
# model covers, and those it includes at any coverage.
Cover = Callable[[int, list[int], list[int]], tuple[list[int], list[int]]]


def greedy_groups(order: Sequence[int], cover: Cover) -> Iterator[Group]:
    """The groups, one representative at a time, as `cover` decides them: a query of `order`
    (longest first) no earlier representative covers becomes a representative, and the
    undecided queries after it that it covers become its members. Pure bookkeeping: the
    searches are `cover`'s."""
    representative_of: dict[int, int] = {}
    relatives: dict[int, list[int]] = {}
    for position, i in enumerate(order):
        if i in representative_of:
            continue
        later = [j for j in order[position + 1 :] if j not in representative_of]
        window = order[position + 1 : position + 1 + LOOKAHEAD]
        members, related = cover(i, later, [j for j in window if j not in representative_of])
        for j in related:
            relatives.setdefault(j, []).append(i)
        for j in members:
            representative_of[j] = i
        yield Group(i, members, {j: list(relatives[j]) for j in members})


def audit_extra(
    members: Iterable[int], audited: Collection[int], sequences: Sequence[str], minimum: int
) -> list[int]:
    """The members to audit besides `audited` so that at least `minimum` are: the
    lowest-ranked others (`audit_rank`)."""
    others = sorted(
        (j for j in members if j not in audited), key=lambda j: audit_rank(sequences[j])
    )
    return others[: max(0, minimum - len(audited))]


class ReuseScheduler:
    """The searches of one reuse run, on one engine session: representatives' whole-database
    searches (and speculative ones while a representative runs), their coverage of the
    undecided queries, members' pool searches and audit searches."""

    def __init__(
        self,
        records: list[Record],
        database: Database,
        engine: JackhmmerSearch,
        submit: Callable[..., Future],
        search: SearchParams,
        profile: ProfileParams,
        reuse: ReuseParams,
        progress: Callable[[object], None] | None = None,
    ) -> None:
        self.records, self.database, self.engine, self.submit = records, database, engine, submit
        self.search, self.profile, self.reuse, self.progress = search, profile, reuse, progress
        self.z = engine.z
        self.pooled = reuse.mode == "pool"
        self.speculate = self.z < SPECULATE_BELOW
        # Queries digitised once, named by position, for the representatives' coverage.
        self.queries = DigitalSequenceBlock(
            AMINO,
            [
                TextSequence(name=str(i).encode(), sequence=r.sequence).digitize(AMINO)
                for i, r in enumerate(records)
            ],
        )
        self.kmers = [_kmers(r.sequence) for r in records]
        self.started: dict[int, Future] = {}  # whole-database searches, by query
        self.profiled: dict[int, Profiled] = {}
        self.member_jobs: dict[int, Future] = {}
        self.audit_jobs: dict[int, Future] = {}
        self.pools: dict[int, np.ndarray] = {}  # representative -> database positions
        self.member_pool_sizes: list[int] = []
        self.grouping_cpu = 0.0
        self._blocks: dict[tuple[int, ...], DigitalSequenceBlock] = {}
        self._index: TargetIndex | None = None  # built at the first pool (10^8 names: slow)

    def tick(self, item: object) -> None:
        """Report one finished query to the progress callback."""
        if self.progress is not None:
            self.progress(item)

    def cover(self, i: int, later: list[int], ahead: list[int]) -> tuple[list[int], list[int]]:
        """Search representative `i` in full, then the queries of `later` its final model
        covers and includes (a `Cover` for `greedy_groups`)."""
        rep = self.representative(i, ahead)
        self.tick(rep)
        result = rep.result
        assert result is not None and result.final_model is not None
        start = time.thread_time()
        found = covered(
            result.final_model,
            result.final_reported,
            later,
            self.queries,
            self.search,
            self.z,
            self.reuse.coverage,
        )
        self.grouping_cpu += time.thread_time() - start
        return found

    def representative(self, i: int, ahead: list[int]) -> Profiled:
        """Representative `i`'s whole-database search. While it runs, the undecided queries
        `ahead` that look unrelated to every running search are searched speculatively (a
        cheap 3-mer test); one an earlier representative turns out to cover is discarded, so
        the roles never depend on timing."""
        if i not in self.started:
            self._start(i)
        while self.speculate and not self.started[i].done():
            running = [
                j for j, f in self.started.items() if not f.done() and j not in self.profiled
            ]
            running = [i, *(j for j in running if j != i)]  # always waited on, below
            for j in ahead:
                if len(running) >= self.engine.threads:
                    break
                if j in self.started:
                    continue
                if not any(_alike(self.kmers[j], self.kmers[k]) for k in running):
                    self._start(j)
                    running.append(j)
            wait([self.started[j] for j in running], return_when=FIRST_COMPLETED)
        rep = self.started[i].result()
        self.profiled[i] = rep
        return rep

    def search_members(self, group: Group) -> None:
        """Start the members' pool searches (pool mode) and the audit searches of those
        whose rank falls within the audit fraction."""
        i = group.representative
        if self.pooled and group.members:
            self._pool(i)
        for j in group.members:
            if self.pooled:
                # The member's pool: the targets of every representative so far whose final
                # model includes it (a multi-domain member's other domains).
                block = self._pool_block(group.relatives[j])
                self.member_pool_sizes.append(len(block))
                self.member_jobs[j] = self.submit(self.records[j], self._profile_of, targets=block)
            if audit_rank(self.records[j].sequence) < self.reuse.audit:
                self.audit(j)

    def audit(self, j: int) -> None:
        """Search member `j` against the whole database too."""
        # A speculative search of this member is exactly its audit search.
        self.audit_jobs[j] = self.started.get(j) or self.submit(self.records[j], self._profile_of)

    def collect(self) -> dict[int, Profiled]:
        """Wait for the members' pool searches (into `profiled`); the audit searches' results."""
        for j, job in self.member_jobs.items():
            self.profiled[j] = job.result()
            self.tick(self.profiled[j])
        return {j: job.result() for j, job in self.audit_jobs.items()}

    def _profile_of(self, result: Any) -> Profiled:
        return profile_result(result, self.profile)

    def _start(self, i: int) -> None:
        self.started[i] = self.submit(
            self.records[i], self._profile_of, collect=self.pooled, lead=True
        )

    def _pool(self, r: int) -> np.ndarray:
        """Database positions of every target representative `r`'s search reported."""
        if r not in self.pools:
            result = self.profiled[r].result
            assert result is not None
            if self._index is None:
                self._index = TargetIndex(self.database.block)
            self.pools[r] = self._index.positions(sorted(result.reported))
        return self.pools[r]

    def _pool_block(self, reps: list[int]) -> DigitalSequenceBlock:
        key = tuple(reps)
        if key not in self._blocks:
            # An earlier relative that covered nobody gets its pool here.
            union = np.unique(np.concatenate([self._pool(r) for r in reps]))
            self._blocks[key] = DigitalSequenceBlock(
                AMINO, [self.database.block[int(p)] for p in union]
            )
        return self._blocks[key]


def search_with_reuse(
    records: list[Record],
    database: Database,
    search: SearchParams,
    profile: ProfileParams,
    reuse: ReuseParams,
    threads: int,
    progress: Callable[[object], None] | None = None,
) -> Outcome:
    """Search `records` sharing work within families (see the module docstring)."""
    if reuse.mode == "none":
        raise ConfigError("search_with_reuse needs reuse mode pool or family")
    z = int(database.fingerprint["n_sequences"])
    engine = JackhmmerSearch(database.block, search, threads, z)
    # Longest first; ties by sequence, so roles do not depend on the input order.
    order = sorted(
        range(len(records)), key=lambda i: (-len(records[i].sequence), records[i].sequence)
    )
    log.info(
        "reuse %s: %d queries, grouped greedily by length (coverage >= %.0f %%)",
        reuse.mode,
        len(records),
        100 * reuse.coverage,
    )
    representatives: list[int] = []
    representative_of: dict[int, int] = {}
    with engine.session() as submit:
        searches = ReuseScheduler(
            records, database, engine, submit, search, profile, reuse, progress
        )
        for group in greedy_groups(order, searches.cover):
            representatives.append(group.representative)
            representative_of.update(dict.fromkeys(group.members, group.representative))
            searches.search_members(group)
        sequences = [r.sequence for r in records]
        for j in audit_extra(representative_of, searches.audit_jobs, sequences, reuse.audit_min):
            searches.audit(j)
        discarded = [
            j for j in searches.started if j in representative_of and j not in searches.audit_jobs
        ]
        audited = searches.collect()

    family_cpu = 0.0
    if reuse.mode == "family":
        family_cpu = _family_targets(records, representative_of, searches)
    roles = np.zeros(len(records), np.uint8)
    roles[list(representative_of)] = MEMBER
    summary = _summary(
        reuse, representatives, representative_of, searches, audited, discarded, family_cpu
    )
    _log_summary(summary)
    return Outcome([searches.profiled[i] for i in range(len(records))], roles, summary)


def _family_targets(
    records: list[Record], representative_of: dict[int, int], searches: ReuseScheduler
) -> float:
    """Label every member with its representative's family HMM (family mode); CPU seconds."""
    start = time.thread_time()
    profiled = searches.profiled
    for j, i in representative_of.items():
        family = profiled[i]
        values = family_profile(family.hmm, records[j].id, records[j].sequence)
        profiled[j] = Profiled(
            records[j].id, records[j].sequence, values, family.neff, family.n_hits, family.hmm
        )
        searches.tick(profiled[j])
    return time.thread_time() - start


def _summary(
    reuse: ReuseParams,
    representatives: list[int],
    representative_of: dict[int, int],
    searches: ReuseScheduler,
    audited: dict[int, Profiled],
    discarded: list[int],
    family_cpu: float,
) -> dict[str, Any]:
    """The provenance figures of a reuse run (`attrs["reuse"]`)."""
    started, profiled, pools = searches.started, searches.profiled, searches.pools
    whole = [f.result() for f in started.values()]
    audit_only = [audited[j] for j in audited if j not in started]
    sizes = searches.member_pool_sizes

    def cpu(items: Sequence[Profiled]) -> float:
        return round(sum(p.result.cpu_seconds for p in items if p.result is not None), 2)

    return {
        "mode": reuse.mode,
        "coverage": reuse.coverage,
        "groups": len(representatives),
        "representatives": len(representatives),
        "members": len(representative_of),
        "full_searches": len(started) + len(set(audited) - set(started)),
        "discarded_speculative": len(discarded),
        "pool_searches": len(searches.member_jobs),
        "mean_pool_size": float(np.mean([len(p) for p in pools.values()])) if pools else None,
        "mean_member_pool_size": float(np.mean(sizes)) if sizes else None,
        "audit": audit_summary(profiled, audited, reuse),
        # Searches' CPU seconds (profiles' construction, the same in every mode, excluded).
        "cpu_seconds": {
            "whole_database": cpu(whole) + cpu(audit_only),
            "of_which_audit": cpu(list(audited.values())),
            "pool": cpu([profiled[j] for j in searches.member_jobs]),
            "grouping": round(searches.grouping_cpu, 2),
            "family_alignment": round(family_cpu, 2),
        },
    }


def audit_summary(
    reused: dict[int, Profiled], exact: dict[int, Profiled], reuse: ReuseParams
) -> dict[str, Any]:
    """How audited members' reused profiles compare with their whole-database searches."""
    js = [js_bits(reused[j].values, exact[j].values) for j in sorted(exact)]
    same = [
        reused[j].result is not None
        and exact[j].result is not None
        and reused[j].result.included == exact[j].result.included  # type: ignore[union-attr]
        for j in sorted(exact)
    ]
    n = len(js)
    return {
        "fraction": reuse.audit,
        "audited": n,
        # Family targets come from no search of the member's own: no included set to compare.
        "identical_included": (sum(same) / n if n and reuse.mode == "pool" else None),
        "within_js": JS_TOLERANCE,
        "fraction_within": sum(x <= JS_TOLERANCE for x in js) / n if n else None,
        "median_js_bits": float(np.median(js)) if n else None,
        "max_js_bits": float(np.max(js)) if n else None,
    }


def _log_summary(summary: dict[str, Any]) -> None:
    audit = summary["audit"]
    searched = summary["representatives"] + summary["members"]
    log.info(
        "reuse %s: %d groups; %d whole-database searches for %d queries (%d representatives, "
        "%d audited members, %d discarded speculative); %d pool searches",
        summary["mode"],
        summary["groups"],
        summary["full_searches"],
        searched,
        summary["representatives"],
        audit["audited"],
        summary["discarded_speculative"],
        summary["pool_searches"],
    )
    if audit["audited"]:
        log.info(
            "reuse audit: %d members also searched in full: %.0f %% within %.2f bits mean JS "
            "(median %.4f, max %.4f)%s",
            audit["audited"],
            100 * audit["fraction_within"],
            JS_TOLERANCE,
            audit["median_js_bits"],
            audit["max_js_bits"],
            ""
            if audit["identical_included"] is None
            else f", {100 * audit['identical_included']:.0f} % identical included sets",
        )
        # Family targets are another kind of target by design: their distance is reported,
        # not warned about.
        if summary["mode"] == "pool" and audit["fraction_within"] < WARN_WITHIN:
            log.warning(
                "reuse audit: only %.0f %% of audited members agree with their whole-database "
                "search within %.2f bits: reuse costs accuracy on this query set",
                100 * audit["fraction_within"],
                JS_TOLERANCE,
            )


def family_shards(sequences: Sequence[str], n_shards: int, threads: int = 1) -> list[int]:
    """A shard per sequence that keeps families together, for several search jobs with reuse
    (grouping runs within each job). MMseqs2 clusters the sequences (E <= 1e-3, the member
    covered >= 80 %, sensitivity 7.5); whole clusters go to the shard with the fewest residues,
    largest cluster first. A family split over two jobs only costs an extra representative."""
    if n_shards <= 1 or len(sequences) <= 1:
        return [0] * len(sequences)
    program = mmseqs.find(
        "search.reuse with more than one search job keeps families together with MMseqs2 "
        "clustering: install it (Debian: apt-get install mmseqs2) or use one job (shards: 1)",
        SearchError,
    )
    with mmseqs.scratch(sequences, "protprof-cluster-") as (tmp, fasta):
        command = [
            program,
            "easy-cluster",
            str(fasta),
            str(tmp / "out"),
            str(tmp / "work"),
            "-e",
            "1e-3",
            "-c",
            "0.8",
            "--cov-mode",
            "1",
            "-s",
            "7.5",
            "--threads",
            str(max(1, threads)),
            "-v",
            "1",
        ]
        mmseqs.run(command, SearchError)
        clusters: dict[int, list[int]] = {}
        for rep, member in mmseqs.index_pairs(tmp / "out_cluster.tsv"):
            clusters.setdefault(rep, []).append(member)
    load = [0] * n_shards
    shard = [0] * len(sequences)
    sizes = {rep: sum(len(sequences[m]) for m in members) for rep, members in clusters.items()}
    for rep in sorted(clusters, key=lambda r: (-sizes[r], r)):
        target = min(range(n_shards), key=lambda k: (load[k], k))
        load[target] += sizes[rep]
        for member in clusters[rep]:
            shard[member] = target
    return shard
