"""The committed tiny store (tests/data/tiny.zarr) that tests about reading a store use: intact,
in the current format, and what tests/data/make_tiny_store.py builds."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers import TEST_DATA, TINY_STORE, assert_same_arrays

from protprof.store.zarr_store import FORMAT_VERSION, open_store, verify

REGENERATE = "regenerate it: python tests/data/make_tiny_store.py"


def test_the_tiny_store_is_intact_and_in_the_current_format():
    assert verify(TINY_STORE) == []
    store = open_store(TINY_STORE)
    assert store.attrs["format_version"] == FORMAT_VERSION, REGENERATE
    assert len(store) == 24 and set(np.unique(store.split)) == {0, 1, 2}
    assert (store.n_hits > 0).sum() >= 12  # real searches: most queries found homologs


@pytest.mark.integration
def test_the_script_rebuilds_the_same_store(tmp_path):
    sys.path.insert(0, str(TEST_DATA))
    try:
        from make_tiny_store import make_tiny_store
    finally:
        sys.path.remove(str(TEST_DATA))
    rebuilt = make_tiny_store(tmp_path / "tiny.zarr")
    assert_same_arrays(rebuilt, TINY_STORE)
    same = ("search", "profile", "ingest", "database", "format_version")
    assert {k: open_store(rebuilt).attrs[k] for k in same} == {
        k: open_store(TINY_STORE).attrs[k] for k in same
    }, REGENERATE
