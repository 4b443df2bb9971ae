"""Profiles from a committed real alignment (tests/data/alignment.sto, see make_alignment.py),
so no live search is needed: the HMM method against HMMER's own hmmbuild program, the
frequency method against hand-computed Henikoff weights."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pyhmmer.easel import MSAFile
from pyhmmer.plan7 import HMMFile

from protprof.alignments.profiles import (
    ProfileParams,
    consensus_columns,
    frequency_profile,
    henikoff_weights,
    profile_from_msa,
)
from protprof.errors import SearchError
from protprof.jackhmmer import AMINO

ALIGNMENT = Path(__file__).parent / "data" / "alignment.sto"
QUERY, LENGTH = "tr|A2BGT9|A2BGT9_DANRE", 361
HMMBUILD = shutil.which("hmmbuild", path=str(Path(sys.executable).parent)) or shutil.which(
    "hmmbuild"
)


@pytest.fixture(scope="module")
def msa():
    with MSAFile(str(ALIGNMENT), digital=True, alphabet=AMINO) as handle:
        return handle.read()


@pytest.mark.integration
@pytest.mark.skipif(HMMBUILD is None, reason="HMMER's hmmbuild program is not installed")
def test_hmm_profile_equals_hmmbuild_program(msa, tmp_path):
    out = tmp_path / "model.hmm"
    subprocess.run(
        [
            HMMBUILD,
            "--hand",
            "--amino",
            "--seed",
            "42",
            "-o",
            "/dev/null",
            str(out),
            str(ALIGNMENT),
        ],
        check=True,
    )
    with HMMFile(str(out)) as handle:
        reference = handle.read()
    profile, neff = profile_from_msa(msa, QUERY, LENGTH, ProfileParams())
    expected = np.asarray(reference.match_emissions, dtype=np.float32)[1:]
    assert profile.shape == (LENGTH, 20)
    # hmmbuild's text format keeps 5 decimals of -ln(p): agreement to that rounding
    np.testing.assert_allclose(profile, expected, atol=2e-5)
    assert neff == pytest.approx(reference.nseq_effective, abs=1e-4)
    assert 1 < neff < len(msa.sequences)  # the alignment's rows are related, so neff < rows


def test_henikoff_weights_by_hand():
    # Three sequences, two columns: (A, A, C) and (D, D, D); 0 = A, 1 = C, 2 = D in HMMER's codes.
    # Column 1: 2 kinds, A twice -> 1/4, 1/4; C once -> 1/2. Column 2: 1 kind, 3 copies -> 1/3.
    # Raw 7/12, 7/12, 10/12 (sum 2) scaled to sum 3: 0.875, 0.875, 1.25.
    columns = np.array([[0, 2], [0, 2], [1, 2]], dtype=np.uint8)
    np.testing.assert_allclose(henikoff_weights(columns), [0.875, 0.875, 1.25])
    profile = frequency_profile(columns, pseudocount=1e-9)
    np.testing.assert_allclose(profile[0, :3], [1.75 / 3, 1.25 / 3, 0], atol=1e-6)
    np.testing.assert_allclose(profile[1, 2], 1, atol=1e-6)


def test_frequency_profile_of_the_real_alignment(msa):
    profile, neff = profile_from_msa(msa, QUERY, LENGTH, ProfileParams(method="frequency"))
    hmm_profile, hmm_neff = profile_from_msa(msa, QUERY, LENGTH, ProfileParams())
    assert profile.shape == (LENGTH, 20) and neff == hmm_neff
    np.testing.assert_allclose(profile.sum(1), 1, atol=1e-5)
    # Both methods read one alignment: their most likely residues agree on most columns
    # (82 % here; HMMER's Dirichlet-mixture priors and entropy weighting explain the rest).
    assert (profile.argmax(1) == hmm_profile.argmax(1)).mean() > 0.75
    # A huge pseudocount drowns the alignment in the background frequencies.
    flat = frequency_profile(consensus_columns(msa), pseudocount=1e9)
    np.testing.assert_allclose(flat, np.broadcast_to(flat[0], flat.shape), atol=1e-6)


def test_profile_length_must_equal_the_query(msa):
    with pytest.raises(SearchError, match="360"):
        profile_from_msa(msa, QUERY, LENGTH - 1, ProfileParams())
