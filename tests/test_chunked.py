"""A database split into K chunks, searched one iteration at a time, gives exactly the
in-memory search's hits and profiles (real demo queries, K = 1 and K = 3)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from helpers import DEMO_DB, DEMO_QUERIES

from protprof.alignments.profiles import ProfileParams, profile_from_msa
from protprof.jackhmmer import JackhmmerSearch, SearchParams, read_block
from protprof.queries.fasta import read_fasta
from protprof.search import chunked

PARAMS = SearchParams(iterations=3)


@pytest.fixture(scope="module")
def queries():
    return read_fasta(DEMO_QUERIES)[:8]


@pytest.fixture(scope="module")
def in_memory(queries, demo_database):
    return JackhmmerSearch(demo_database.block, PARAMS, threads=2, z=5000).run(queries)


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 3])
def test_chunked_equals_in_memory(tmp_path, queries, in_memory, k):
    paths = [tmp_path / f"chunk{c}.fasta" for c in range(k)]
    counts = chunked.split_database(DEMO_DB, paths)
    assert sum(counts) == 5000 and all(counts)
    chunks = [read_block(p) for p in paths]
    for states in chunked.run_chunked(queries, chunks, PARAMS, z=5000, threads=2):
        states = pickle.loads(pickle.dumps(states))  # what crosses job boundaries
    ours = chunked.results(queries, states)
    assert sum(r.n_hits > 0 for r in ours) >= 4
    for a, b in zip(ours, in_memory, strict=True):
        assert (a.id, a.n_hits, a.iterations) == (b.id, b.n_hits, b.iterations)
        assert list(a.msa.names) == list(b.msa.names)
        pa, na = profile_from_msa(a.msa, a.id, len(a.sequence), ProfileParams())
        pb, nb = profile_from_msa(b.msa, b.id, len(b.sequence), ProfileParams())
        np.testing.assert_array_equal(pa, pb)
        assert na == nb


def test_balanced_bounds_exact():
    from protprof.jackhmmer import balanced_bounds

    assert balanced_bounds([5, 5, 5, 5], 2) == [(0, 2), (2, 4)]
    assert balanced_bounds([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2) == [(0, 1), (1, 11)]
    assert balanced_bounds([3, 3], 3) == [(0, 1), (1, 2), (2, 2)]
    assert balanced_bounds([7], 1) == [(0, 1)]


def test_damaged_or_foreign_state_files_are_refused_in_one_line(tmp_path, queries, capsys):
    from protprof.cli import main
    from protprof.errors import InputFormatError

    state = tmp_path / "state"
    chunked.save(state, chunked.initial_states(queries[:2], PARAMS))
    good = state.read_bytes()
    assert set(chunked.load(state)) == {q.id for q in queries[:2]}
    flipped = [bytearray(good) for _ in range(3)]
    for k, at in enumerate([len(good) // 3, len(good) // 2, len(good) - 1]):
        flipped[k][at] ^= 0x10  # inside the pickled models: unpickled fine without a checksum
    cases = {
        "garbage": b"\x80\x04garbage",
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "pickle": pickle.dumps({"version": 1, "data": {}}),  # an older state file
        **{f"flipped-{k}": bytes(b) for k, b in enumerate(flipped)},
    }
    for name, content in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(InputFormatError, match=f"{bad}: (damaged|not a) search state"):
            chunked.load(bad)
    argv = ["search-chunk", "q.fasta", "--state", str(tmp_path / "garbage"), "--chunk", "c"]
    assert main([*argv, "--fingerprint", "f", "--out", str(tmp_path / "hits")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "not a search state of this protprof version" in err
