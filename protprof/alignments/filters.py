"""Alignment filters with hhfilter's meaning (HH-suite 3), applied the same way to a search's
final alignment and to an imported one: any alignment whose row 0 is the query.

Definitions, over the consensus columns (the columns where the query, row 0, has a residue;
L of them):

- coverage of a row: the fraction of the L columns where it has a residue;
- identity of two rows: the fraction of identical residues among the consensus columns where
  both have a residue (0 when there is no such column), as hhfilter counts it.

Rows are kept by, in this order: `min_coverage` (coverage >= it), `min_identity` (identity to
the query >= it); then `max_identity`, greedy in file order: a row is dropped if its identity
to the query or to a row kept before it is greater than `max_identity`; then `max_seqs`, the
first `max_seqs` rows left besides the query. The query is always kept. A filtered alignment
loses the insert columns left with no residue, as HMMER would have built it from the kept rows
alone.

Reference: HH-suite 3 `hhfilter` (-cov, -qid, -id, -maxseq; Steinegger et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pyhmmer.easel import DigitalMSA

from protprof.alignments.formats import GAP, Alignment, msa_matrix, select_rows
from protprof.params import check_params, param

_FRACTION = "[0, 1]"


@dataclass(frozen=True)
class FilterParams:
    """Which rows of an alignment build the profile; every filter is off by default. The CLI
    options, the workflow's `filters:` keys and their schema come from these fields."""

    max_seqs: int | None = param(
        None,
        help="keep at most this many rows besides the query (-maxseq)",
        bounds="[0, inf)",
    )
    min_coverage: float | None = param(
        None, help="drop rows covering less of the query (-cov, 0-1)", bounds=_FRACTION
    )
    min_identity: float | None = param(
        None, help="drop rows less identical to the query (-qid, 0-1)", bounds=_FRACTION
    )
    max_identity: float | None = param(
        None,
        help="drop rows more identical than this to the query or a kept row (-id, 0-1)",
        bounds=_FRACTION,
    )

    def __post_init__(self) -> None:
        check_params(self, "filters")

    @property
    def active(self) -> bool:
        """Whether any filter is on."""
        return any(v is not None for v in vars(self).values())


NO_FILTERS = FilterParams()


def identities(matrix: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Identity of each row of `matrix` to `reference`, both restricted to consensus columns
    (see the module docstring). (n,) float64."""
    both = (matrix != GAP) & (reference != GAP)
    aligned = both.sum(axis=1)
    same = (both & (matrix == reference)).sum(axis=1)
    return np.divide(same, aligned, out=np.zeros(len(matrix)), where=aligned > 0)


def kept_rows(matrix: np.ndarray, params: FilterParams) -> np.ndarray:
    """Indices of the rows the filters keep, in order, row 0 (the query) first.

    Args:
        matrix: (n_rows, n_columns) digital codes of an alignment whose row 0 is the query.
    """
    columns = matrix[:, matrix[0] != GAP]  # (n, L) the consensus columns
    keep = np.ones(len(columns), dtype=bool)
    if params.min_coverage is not None:
        keep &= (columns != GAP).mean(axis=1) >= params.min_coverage
    if params.min_identity is not None:
        keep &= identities(columns, columns[0]) >= params.min_identity
    keep[0] = True
    rows = np.flatnonzero(keep)
    if params.max_identity is not None:
        rows = _nonredundant(columns, rows, params.max_identity)
    if params.max_seqs is not None:
        rows = rows[: params.max_seqs + 1]
    return rows


def _nonredundant(columns: np.ndarray, rows: np.ndarray, max_identity: float) -> np.ndarray:
    """Greedy in order: keep a row unless its identity to a kept row exceeds `max_identity`.
    Kept rows are stacked in a buffer whose gaps can never equal a residue or a gap, so one
    comparison and one product per row count the identical and the jointly aligned columns."""
    residues = (columns != GAP).astype(np.float32)  # (n, L)
    kept = np.empty((len(rows), columns.shape[1]), dtype=np.uint8)  # kept rows, gaps -> 254
    kept_residues = np.empty((len(rows), columns.shape[1]), dtype=np.float32)
    out = [int(rows[0])]
    kept[0] = np.where(columns[rows[0]] == GAP, 254, columns[rows[0]])
    kept_residues[0] = residues[rows[0]]
    for i in rows[1:]:
        k = len(out)
        # a gap never counts: row i's gap (GAP) never equals a kept row's (254)
        same = (kept[:k] == columns[i]).view(np.int8).sum(axis=1, dtype=np.int32)
        aligned = kept_residues[:k] @ residues[i]
        if (same > max_identity * aligned).any():
            continue
        kept[k] = np.where(columns[i] == GAP, 254, columns[i])
        kept_residues[k] = residues[i]
        out.append(int(i))
    return np.array(out)


def filter_msa(msa: DigitalMSA[Any], params: FilterParams) -> DigitalMSA[Any]:
    """The rows of `msa` (row 0: the query) the filters keep; `msa` itself if none is on."""
    if not params.active:
        return msa
    return select_rows(msa, kept_rows(msa_matrix(msa), params))


def filter_alignment(alignment: Alignment, params: FilterParams) -> Alignment:
    """An imported alignment with its rows filtered (`filter_msa`)."""
    if not params.active:
        return alignment
    return replace(alignment, msa=filter_msa(alignment.msa, params))
