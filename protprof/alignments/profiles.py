"""Per-residue profiles (L x 20 distributions over `ACDEFGHIKLMNPQRSTVWY`) from an alignment.

`hmm` (default): the match emissions of the HMM HMMER builds from the final jackhmmer alignment
with the hand architecture (consensus columns = the query's residues): position-based weights,
entropy-weighted effective sequence number, Dirichlet-mixture priors (HMMER 3.4 `hmmbuild`).
`frequency`: Henikoff position-based weighted column frequencies plus a pseudocount spread by
HMMER's background frequencies, for raw MSA statistics.

`neff` is, for both methods, HMMER's entropy-weighted effective sequence number of the alignment.

Family targets (`family_profile`, the Profile Prediction paper's construction): a member of a
family is aligned to the family's HMM (hmmalign's trace alignment) and each residue is labelled
with the emission distribution of the state that emits it: the match emissions at match states,
the insert emissions at insert states, HMMER's background at the flanks (its N and C states emit
the background distribution).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pyhmmer.easel import Alphabet, DigitalMSA, DigitalSequenceBlock, TextSequence
from pyhmmer.plan7 import HMM, Background, Builder, TraceAligner

from protprof.alignments.filters import FilterParams, filter_msa
from protprof.errors import SearchError
from protprof.jackhmmer import HMMER_SEED
from protprof.params import check_params, param

if TYPE_CHECKING:
    from protprof.jackhmmer import QueryResult

AMINO = Alphabet.amino()
METHODS = ("hmm", "frequency")
_GAP = 20  # HMMER amino digital codes: 0-19 ACDEFGHIKLMNPQRSTVWY, 20 gap, 21+ degenerate


@dataclass(frozen=True)
class ProfileParams:
    """How profiles are computed from the final alignment (the CLI options, the workflow's
    `profile:` keys and their schema come from these fields)."""

    method: str = param(
        "hmm",
        help="hmm: the emissions of HMMER's model of the alignment; frequency: its weighted "
        "column frequencies plus a pseudocount",
        flag="--profile-method",
        choices=METHODS,
    )
    pseudocount: float = param(
        1.0,
        help="frequency method only: weight of the background, in sequences",
        bounds="(0, inf)",
    )
    seed: int = param(HMMER_SEED, help="HMMER's builder seed", cli=False, config=False)

    def __post_init__(self) -> None:
        check_params(self, "profile")


# A profile needs the model's emissions and effective sequence number only. HMMER's builder
# then calibrates the model's E-value statistics on 600 simulated sequences (~30 % of its time);
# calibration runs after the emissions are set and never changes them, so the profile builder
# simulates as little as HMMER's fits accept. A fit that fails falls back to the full builder.
_MINIMAL_CALIBRATION = {"EmL": 10, "EmN": 10, "EvL": 10, "EvN": 10, "EfL": 10, "EfN": 10}


def build_hmm(
    msa: DigitalMSA[Any],
    query_id: str,
    query_length: int,
    seed: int = HMMER_SEED,
    calibration: Mapping[str, int] = _MINIMAL_CALIBRATION,
) -> HMM:
    """Build HMMER's model of an alignment whose consensus columns are the query's residues.

    The emissions and `nseq_effective` are HMMER's (`hmmbuild --hand`); the E-value
    calibration (`evalue_parameters`) is a minimal one, not fit for searching with.

    Raises:
        SearchError: if the model length differs from the query length.
    """
    # The builder edits the alignment it is given (it marks fragments), so it gets a copy: the
    # alignment kept beside the store stays the one the search made.
    background = Background(AMINO)
    try:
        options: dict[str, Any] = dict(calibration)
        builder = Builder(AMINO, architecture="hand", seed=seed, **options)
        hmm, _, _ = builder.build_msa(msa.copy(), background)
    except (ValueError, RuntimeError):  # e.g. "failed to determine msv mu": a fit failed
        builder = Builder(AMINO, architecture="hand", seed=seed)
        hmm, _, _ = builder.build_msa(msa.copy(), background)
    return check_length(hmm, query_id, query_length)


def check_length(hmm: HMM, query_id: str, query_length: int) -> HMM:
    """Return `hmm`; raise SearchError if its length differs from the query's."""
    if hmm.M != query_length:
        raise SearchError(
            f"query {query_id!r}: the model of its alignment has {hmm.M} match states but the "
            f"query has {query_length} residues"
        )
    return hmm


def hmm_profile(hmm: HMM) -> np.ndarray:
    """Match emissions rows 1..M (row 0 is a dummy in HMMER), float32 (M, 20)."""
    return np.asarray(hmm.match_emissions, dtype=np.float32)[1:]  # type: ignore[attr-defined]


def henikoff_weights(columns: np.ndarray) -> np.ndarray:
    """Position-based sequence weights (Henikoff & Henikoff 1994) summing to the row count.

    Args:
        columns: (n_seq, n_col) digital codes of the consensus columns; gaps are not counted.
    """
    n_seq = columns.shape[0]
    weights = np.zeros(n_seq)
    for col in columns.T:
        residues = col < _GAP
        if not residues.any():
            continue
        counts = np.bincount(col[residues], minlength=_GAP)
        kinds = np.count_nonzero(counts)
        weights[residues] += 1.0 / (kinds * counts[col[residues]])
    if weights.sum() == 0:
        return np.ones(n_seq)
    return weights * n_seq / weights.sum()


def frequency_profile(columns: np.ndarray, pseudocount: float) -> np.ndarray:
    """Weighted column frequencies with a background pseudocount, float32 (n_col, 20)."""
    weights = henikoff_weights(columns)
    background = np.asarray(Background(AMINO).residue_frequencies, dtype=np.float64)[:_GAP]
    counts = np.zeros((columns.shape[1], _GAP))
    rows, cols = np.nonzero(columns < _GAP)
    np.add.at(counts, (cols, columns[rows, cols]), weights[rows])
    counts += pseudocount * background
    return (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)


def consensus_columns(msa: DigitalMSA[Any]) -> np.ndarray:
    """(n_seq, M) digital codes at the consensus (reference-annotated) columns."""
    reference = msa.textize().reference
    matrix = np.array([np.asarray(row, dtype=np.uint8) for row in msa.alignment])
    if reference is None:
        return matrix
    keep = np.frombuffer(reference.encode("ascii"), dtype=np.uint8) != ord(".")
    return matrix[:, keep]


def profile_from_msa(
    msa: DigitalMSA[Any],
    query_id: str,
    query_length: int,
    params: ProfileParams,
    hmm: HMM | None = None,
) -> tuple[np.ndarray, float]:
    """Return the (L, 20) float32 profile and neff of a query's final alignment.

    `hmm`, if given, is the model HMMER's builder already made of this very alignment (the
    search's, when its last two alignments are identical); it is not built again.
    """
    if hmm is None:
        hmm = build_hmm(msa, query_id, query_length, params.seed)
    else:
        hmm = check_length(hmm, query_id, query_length)
    if params.method == "hmm":
        profile = hmm_profile(hmm)
    else:
        profile = frequency_profile(consensus_columns(msa), params.pseudocount)
    neff = hmm.nseq_effective
    assert neff is not None  # set by every build
    return profile, float(neff)


@dataclass(frozen=True)
class Profiled:
    """One query's profile and how it was made.

    `result` is the search that made it (None for family targets, which need no search of
    their own); `hmm` is the model of its final alignment (a family's HMM, when the query
    represents a family).
    """

    id: str
    sequence: str
    values: np.ndarray  # (L, 20) float32
    neff: float
    n_hits: int
    hmm: HMM
    result: QueryResult | None = None


def profile_result(
    result: QueryResult, params: ProfileParams, filters: FilterParams | None = None
) -> Profiled:
    """The profile of a search's final alignment, after the alignment filters if any is on
    (then the model is built again from the rows they keep, and n_hits counts those)."""
    length = len(result.sequence)
    if filters is not None and filters.active:
        msa = filter_msa(result.msa, filters)
        hmm = build_hmm(msa, result.id, length, params.seed)
        values, neff = profile_from_msa(msa, result.id, length, params, hmm)
        depth = len(msa.sequences) - 1  # rows besides the query's, as `jackhmmer.alignment_depth`
        return Profiled(result.id, result.sequence, values, neff, depth, hmm, result)
    hmm = (
        build_hmm(result.msa, result.id, length, params.seed)
        if result.hmm is None
        else check_length(result.hmm, result.id, length)
    )
    values, neff = profile_from_msa(result.msa, result.id, length, params, hmm)
    return Profiled(result.id, result.sequence, values, neff, result.n_hits, hmm, result)


def family_profile(hmm: HMM, query_id: str, sequence: str) -> np.ndarray:
    """The family targets of one member sequence: (L, 20) float32, one row per residue, from
    its trace alignment to the family's `hmm` (see the module docstring)."""
    member = TextSequence(name=b"member", sequence=sequence).digitize(AMINO)
    block = DigitalSequenceBlock(AMINO, [member])
    aligner = TraceAligner()
    traces = aligner.compute_traces(hmm, block)
    msa: Any = aligner.align_traces(hmm, block, traces, all_consensus_cols=True)
    return family_labels(msa.reference, msa.alignment[0], hmm, query_id, len(sequence))


def family_labels(
    reference: str, row: str, hmm: HMM, query_id: str = "", length: int | None = None
) -> np.ndarray:
    """Label each residue of an aligned row (hmmalign's Stockholm conventions: `reference`
    marks consensus columns with a letter, inserts with `.`) with its state's emissions."""
    match = np.asarray(hmm.match_emissions, dtype=np.float32)[:, :_GAP]  # type: ignore[attr-defined]
    insert = np.asarray(hmm.insert_emissions, dtype=np.float32)[:, :_GAP]  # type: ignore[attr-defined]
    background = np.asarray(Background(AMINO).residue_frequencies, dtype=np.float32)[:_GAP]
    rows = []
    node = 0  # consensus columns passed so far: an insert after node k is emitted by I_k
    for ref, residue in zip(reference, row, strict=True):
        consensus = ref not in ".-~"
        node += consensus
        if not residue.isalpha():
            continue
        if consensus:
            rows.append(match[node])
        elif 1 <= node < hmm.M:
            rows.append(insert[node])
        else:  # before node 1 or after node M: the N and C states, which emit the background
            rows.append(background)
    labels = np.array(rows, dtype=np.float32).reshape(-1, _GAP)
    if length is not None and len(labels) != length:
        raise SearchError(
            f"query {query_id!r}: its alignment to the family model has {len(labels)} "
            f"residues, the query {length}"
        )
    return labels / labels.sum(axis=1, keepdims=True)
