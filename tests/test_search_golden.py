"""Agreement with HMMER's own jackhmmer program (pip `hmmer`, HMMER 3.4) on real queries.

Same parameters and Z: the same included target sequences in the final iteration, and our
profile equal to the one built from the program's own final alignment (`-A`).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import DEMO_DB, DEMO_QUERIES
from pyhmmer.easel import MSAFile
from pyhmmer.plan7 import HMM, Background, Builder

from protprof.alignments.profiles import ProfileParams, build_hmm, hmm_profile, profile_from_msa
from protprof.jackhmmer import AMINO, JackhmmerSearch, SearchParams
from protprof.queries.fasta import read_fasta

JACKHMMER = shutil.which("jackhmmer", path=str(Path(sys.executable).parent)) or shutil.which(
    "jackhmmer"
)
# Real demo queries with 1 to ~300 included targets. Query 60 has 77 targets included on their
# whole-sequence E-value but only 73 in the alignment (4 have no domain passing incdomE):
# n_hits must count the alignment's rows, as the program's -A alignment holds them.
QUERY_INDICES = [0, 2, 5, 7, 12, 60]
PARAMS = SearchParams(iterations=3)


@pytest.fixture(scope="module")
def plain_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("db") / "db.fasta"  # jackhmmer needs a rewindable file
    path.write_bytes(gzip.decompress(DEMO_DB.read_bytes()))
    return path


def hmmbuild(msa) -> HMM:
    """HMMER's own model of an alignment (`hmmbuild --hand`), fully calibrated."""
    return Builder(AMINO, architecture="hand").build_msa(msa.copy(), Background(AMINO))[0]


def run_program(query, db: Path, tmp: Path) -> tuple[set[str], object]:
    query_file, alignment = tmp / f"{query.id.replace('|', '_')}.fa", tmp / "final.sto"
    query_file.write_text(f">{query.id}\n{query.sequence}\n")
    p = PARAMS
    subprocess.run(
        [
            JACKHMMER,
            "--cpu",
            "1",
            "-N",
            str(p.iterations),
            "-E",
            str(p.E),
            "--domE",
            str(p.domE),
            "--incE",
            str(p.incE),
            "--incdomE",
            str(p.incdomE),
            "--F1",
            str(p.F1),
            "--F2",
            str(p.F2),
            "--F3",
            str(p.F3),
            "-Z",
            "5000",
            "--seed",
            str(p.seed),
            "-A",
            str(alignment),
            "-o",
            "/dev/null",
            str(query_file),
            str(db),
        ],
        check=True,
    )
    with MSAFile(str(alignment), digital=True, alphabet=AMINO) as handle:
        msa = handle.read()
    # Rows are "name/start-end"; the query's row is not always first in the program's output.
    targets = {name.rsplit("/", 1)[0] for name in msa.names} - {query.id}
    return targets, msa


@pytest.mark.slow
@pytest.mark.skipif(JACKHMMER is None, reason="HMMER's jackhmmer program is not installed")
def test_same_hits_and_profiles_as_jackhmmer_program(tmp_path, demo_database, plain_db):
    queries = [read_fasta(DEMO_QUERIES)[i] for i in QUERY_INDICES]
    ours = JackhmmerSearch(demo_database.block, PARAMS, threads=2, z=5000).run(queries)
    n_with_hits = 0
    for query, result in zip(queries, ours, strict=True):
        targets, program_msa = run_program(query, plain_db, tmp_path)
        assert result.msa.names[0] == query.id
        our_targets = {name.rsplit("/", 1)[0] for name in result.msa.names[1:]}
        assert our_targets == targets, query.id
        assert result.n_hits == len(program_msa.sequences) - 1  # its rows besides the query's
        n_with_hits += bool(targets)
        profile, _ = profile_from_msa(
            result.msa, query.id, len(query.sequence), ProfileParams(), result.hmm
        )
        reference = hmm_profile(hmmbuild(program_msa))
        # Same alignment -> same model: agreement to float32 rounding.
        np.testing.assert_allclose(profile, reference, atol=1e-5)
    assert n_with_hits >= 3  # the comparison is not vacuous


@pytest.mark.integration
def test_profile_shortcuts_are_exact(demo_database):
    """The two ways protprof avoids HMMER builder work give HMMER's model bit for bit: the
    profile builder's minimal E-value calibration, and reusing the search's last model when the
    last two alignments are identical."""
    # 13 and 23 converge at iteration 2 with unchanged alignments; the others do not.
    queries = [read_fasta(DEMO_QUERIES)[i] for i in [*QUERY_INDICES, 13, 23]]
    results = JackhmmerSearch(demo_database.block, PARAMS, threads=2, z=5000).run(queries)
    reused = [r for r in results if r.hmm is not None]
    assert reused and len(reused) < len(results)  # both paths are exercised
    for r in results:
        full = hmmbuild(r.msa)
        for model in [build_hmm(r.msa, r.id, len(r.sequence))] + ([r.hmm] if r.hmm else []):
            np.testing.assert_array_equal(
                np.asarray(model.match_emissions), np.asarray(full.match_emissions)
            )
            assert model.nseq_effective == full.nseq_effective


@pytest.mark.integration
def test_failed_minimal_calibration_falls_back_to_hmmer_builder(demo_database):
    """One simulated sequence per fit makes HMMER's calibration fail ("failed to determine msv
    mu"); the profile builder then builds again with HMMER's full calibration."""
    query = read_fasta(DEMO_QUERIES)[QUERY_INDICES[1]]
    (result,) = JackhmmerSearch(demo_database.block, PARAMS, threads=2, z=5000).run([query])
    one = {"EmL": 1, "EmN": 1, "EvL": 1, "EvN": 1, "EfL": 1, "EfN": 1}
    with pytest.raises(ValueError, match="failed to determine"):
        Builder(AMINO, architecture="hand", **one).build_msa(result.msa.copy(), Background(AMINO))
    model = build_hmm(result.msa, query.id, len(query.sequence), calibration=one)
    full = hmmbuild(result.msa)
    np.testing.assert_array_equal(
        np.asarray(model.match_emissions), np.asarray(full.match_emissions)
    )
    # calibrated in full: the same MSV, Viterbi and Forward statistics as hmmbuild
    assert list(model.evalue_parameters.as_vector()) == list(full.evalue_parameters.as_vector())
