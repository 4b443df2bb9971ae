"""Nothing silently wrong: every array of a store is checked against its checksums, the cache
never copies a corrupt entry, and `n_hits` is the alignment's depth whatever the names."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import DEMO_DB, DEMO_QUERIES, write_queries

from protprof.alphabet import FIRST_RESIDUE, N_STANDARD
from protprof.cli import main
from protprof.errors import StoreError
from protprof.jackhmmer import JackhmmerSearch, SearchParams, load_database, read_block
from protprof.queries.fasta import read_fasta
from protprof.search import chunked
from protprof.store.cache import ProfileCache
from protprof.store.zarr_store import open_store, verify
from protprof.train.data import ProfileDataset


@pytest.fixture(scope="module")
def repeated_names_db(tmp_path_factory):
    """The demo database with every target renamed to one of 3 names (dumps can repeat)."""
    lines = gzip.decompress(DEMO_DB.read_bytes()).decode().splitlines()
    count = 0
    for i, line in enumerate(lines):
        if line.startswith(">"):
            lines[i] = f">dup{count % 3} renamed"
            count += 1
    path = tmp_path_factory.mktemp("db") / "repeated.fasta"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.integration
def test_n_hits_counts_alignment_rows_when_names_repeat(repeated_names_db, tmp_path):
    query = read_fasta(DEMO_QUERIES)[0]
    params = SearchParams(iterations=2)
    database = load_database(repeated_names_db)
    (result,) = JackhmmerSearch(database.block, params, threads=2, z=5000).run([query])
    rows = len(result.msa.sequences) - 1  # row 0 is the query
    targets = {name.rsplit("/", 1)[0] for name in result.msa.names[1:]}
    assert len(targets) <= 3 < rows  # names repeat: more rows than distinct names
    assert result.n_hits == rows
    # The chunked search (one iteration per job) counts the same rows.
    path = tmp_path / "chunk0.fasta"
    chunked.split_database(repeated_names_db, [path])
    *_, states = chunked.run_chunked([query], [read_block(path)], params, z=5000, threads=2)
    (ours,) = chunked.results([query], states)
    assert ours.n_hits == rows == len(ours.msa.sequences) - 1


# --- every array of a store is checked -------------------------------------------------------

ARCHIVE = Path(__file__).parent / "data"


def _copy(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    shutil.copytree(source, path)
    return path


def _run(capsys, *args: str) -> tuple[int, str, list[str]]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err.strip().splitlines()


def _change_value(path: Path, name: str) -> None:
    """Change one value through zarr, so each chunk is a valid encoding and every invariant
    still holds: only the checksums can tell."""
    array = zarr.open_array(str(path / name), mode="r+")
    if name == "offsets":
        array[1] = int(array[1]) + 1  # a residue moves from sequence 0 to sequence 1
    elif name == "ids":
        array[1] = str(array[1]) + "x"
    elif name == "n_hits":
        array[0] = int(array[0]) + 16
    elif name == "neff":
        array[0] = float(array[0]) + 1.0
    elif name == "split":
        array[0] = (int(array[0]) + 1) % 3
    elif name == "tokens":
        array[10] = FIRST_RESIDUE + (int(array[10]) - FIRST_RESIDUE + 1) % N_STANDARD
    else:
        array[10] = np.roll(array[10], 1)  # the row still sums to 255


def _refused_by_readers(path: Path, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        store = open_store(path)
        store.read_all()
    with pytest.raises(StoreError, match=match):
        data = ProfileDataset(path, "all")
        for i in range(len(data)):
            data[i]


ARRAY_NAMES = ["offsets", "ids", "n_hits", "neff", "split", "tokens", "profiles"]


@pytest.mark.parametrize("name", ARRAY_NAMES)
def test_a_value_changed_through_zarr_is_named_and_refused(small_store, tmp_path, capsys, name):
    path = _copy(small_store, tmp_path)
    _change_value(path, name)
    chunk = path / name / ("c/0/0" if name == "profiles" else "c/0")
    problems = verify(path)
    assert any(p.startswith(f"{chunk}: checksum mismatch") and f"'{name}'" in p for p in problems)
    code, out, err = _run(capsys, "verify", str(path))
    assert code == 1 and "intact" not in out
    assert str(chunk) in "\n".join(
        err
    ) and f"chunk {'0' if name in ('tokens', 'profiles') else 'c/0'} of '{name}'" in "\n".join(err)
    _refused_by_readers(path, "checksum mismatch")


DTYPE_SWAPS = {
    "offsets": "uint64",
    "n_hits": "uint32",
    "neff": "int32",
    "split": "int8",
    "tokens": "int8",
    "profiles": "int8",
}


@pytest.mark.parametrize("name", ARRAY_NAMES)
@pytest.mark.parametrize("edit", ["data_type", "shape"])
def test_changed_metadata_is_named_and_refused(small_store, tmp_path, capsys, name, edit):
    path = _copy(small_store, tmp_path)
    meta = path / name / "zarr.json"
    if edit == "shape":  # through zarr: a valid array, one value longer
        array = zarr.open_array(str(path / name), mode="r+")
        array.resize((array.shape[0] + 1, *array.shape[1:]))
        expected = "shape is"
    elif name == "ids":
        pytest.skip("ids are strings: no other data type reads their bytes")
    else:  # the bytes stay, their meaning changes (zarr reads them either way)
        values = json.loads(meta.read_text())
        values["data_type"] = DTYPE_SWAPS[name]
        meta.write_text(json.dumps(values))
        zarr.open_array(str(path / name), mode="r")[:1]  # zarr accepts it
        expected = f"data_type is '{DTYPE_SWAPS[name]}'"
    problems = verify(path)
    assert any(p.startswith(f"{meta}: metadata of '{name}' changed") for p in problems)
    assert any(expected in p for p in problems)
    code, out, err = _run(capsys, "verify", str(path))
    assert code == 1 and "intact" not in out and f"metadata of '{name}' changed" in "\n".join(err)
    _refused_by_readers(path, f"metadata of '{name}' changed")


def test_deleted_checksums_are_refused_never_intact(small_store, tmp_path, capsys):
    for version in ("1.2", "1.1"):
        path = tmp_path / version
        shutil.copytree(small_store if version == "1.2" else ARCHIVE / "store-v1.1.zarr", path)
        root = json.loads((path / "zarr.json").read_text())
        del root["attributes"]["checksums"]
        (path / "zarr.json").write_text(json.dumps(root))
        code, out, err = _run(capsys, "verify", str(path))
        assert code == 1 and out == "" and len(err) == 1
        assert f"{path}/zarr.json: format {version} stores carry checksums" in err[0]
        _refused_by_readers(path, "'checksums' attribute is missing")


@pytest.mark.parametrize(
    "version, unchecked",
    [
        ("1.0", "tokens, profiles, offsets, ids, n_hits, neff, split, the arrays' metadata"),
        ("1.1", "offsets, ids, n_hits, neff, split, the arrays' metadata"),
    ],
)
def test_older_stores_open_and_verify_as_unchecked(capsys, version, unchecked):
    path = ARCHIVE / f"store-v{version}.zarr"
    store = open_store(path)
    assert list(store.ids) == ["s0", "s1", "s2"] and store.attrs["format_version"] == version
    assert len(ProfileDataset(path, "all")) == 3
    code, out, _ = _run(capsys, "verify", str(path))
    assert code == 0 and "intact" not in out
    assert out.startswith(f"{path}: unchecked: format {version} has no checksums for {unchecked};")


def test_a_new_store_verifies_intact_with_every_array_checksummed(small_store, capsys):
    table = open_store(small_store).attrs["checksums"]
    assert table["algorithm"] == "crc32" and sorted(table["arrays"]) == sorted(ARRAY_NAMES)
    assert table["arrays"]["n_hits"]["data_type"] == "int32"
    assert table["arrays"]["offsets"]["shape"] == [len(open_store(small_store)) + 1]
    code, out, _ = _run(capsys, "verify", str(small_store))
    assert code == 0 and out.startswith(f"{small_store}: intact")


# --- the cache checks what it reads ----------------------------------------------------------


def _build(queries: Path, out: Path, *options: str) -> None:
    argv = ["-q", "build", str(queries), "--database", str(DEMO_DB), "--out", str(out)]
    assert main([*argv, "--threads", "2", "-N", "2", *options]) == 0


def _same_arrays(a: Path, b: Path) -> None:
    x, y = open_store(a).read_all(), open_store(b).read_all()
    assert x.ids == y.ids
    for name in ("tokens", "profiles", "offsets", "n_hits", "neff", "split"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), name)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A cache of 9 real queries in two segments (6, then 3), and the clean build of all 9."""
    tmp = tmp_path_factory.mktemp("cached")
    few, more = write_queries(tmp / "few.fa", 6), write_queries(tmp / "more.fa", 9)
    _build(few, tmp / "few.zarr", "--cache", str(tmp / "cache"))
    _build(more, tmp / "more.zarr", "--cache", str(tmp / "cache"))
    _build(more, tmp / "clean.zarr")
    return tmp


def _damage(segment: Path, what: str) -> None:
    if what == "keys.npy truncated":
        keys = segment / "keys.npy"
        keys.write_bytes(keys.read_bytes()[:-7])
    else:
        _change_value(segment, what)


@pytest.mark.integration
@pytest.mark.parametrize("what", ["n_hits", "neff", "profiles", "offsets", "keys.npy truncated"])
def test_a_corrupt_cache_entry_is_searched_again_never_copied(cached, tmp_path, capsys, what):
    cache = tmp_path / "cache"
    shutil.copytree(cached / "cache", cache)
    small, big = sorted(ProfileCache(cache).segments(), key=lambda p: len(open_store(p)))
    assert (len(open_store(small)), len(open_store(big))) == (3, 6)
    _damage(small, what)
    code, _, err = _run(capsys, "cache", "verify", str(cache))
    assert code == 1 and len(err) == 1 and str(small) in err[0] and big.name not in err[0]
    code, out, _ = _run(capsys, "cache", "stats", str(cache))
    if what == "profiles":  # stats reads no residue chunk: they are checked when entries are
        assert code == 0 and "9 entries" in out
    else:
        assert code == 0 and "6 entries" in out and f"{small}: corrupt" in out
    # Only the 3 entries of the bad segment are searched again; the store equals a clean build.
    _build(cached / "more.fa", tmp_path / "more.zarr", "--cache", str(cache))
    assert open_store(tmp_path / "more.zarr").attrs["cache"]["searched"] == 3
    _same_arrays(tmp_path / "more.zarr", cached / "clean.zarr")
    # The repaired entries were published; gc drops the bad segment and old temporaries only.
    old, young = cache / "segments" / ".x.zarr.tmp-0000", cache / "segments" / ".y.zarr.tmp-0001"
    old.mkdir()
    young.mkdir()
    os.utime(old, (time.time() - 2 * 3600,) * 2)
    code, out, _ = _run(capsys, "cache", "gc", str(cache), "--drop-corrupt", "--grace-hours", "1")
    assert code == 0 and "1 corrupt and 1 temporaries" in out
    assert not small.exists() and not old.exists() and young.exists() and big.exists()
    code, out, _ = _run(capsys, "cache", "verify", str(cache))
    assert code == 0 and out == f"{cache}: 2 segments intact\n"
    _build(cached / "more.fa", tmp_path / "again.zarr", "--cache", str(cache))
    assert open_store(tmp_path / "again.zarr").attrs["cache"]["searched"] == 0


@pytest.mark.integration
def test_a_truncated_key_file_is_one_line(cached, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(cached / "cache", cache)
    segment = ProfileCache(cache).segments()[0]
    keys = segment / "keys.npy"
    keys.write_bytes(keys.read_bytes()[:40])
    code, _, err = _run(capsys, "cache", "verify", str(cache))
    assert code == 1 and err == [
        f"protprof cache: error: {keys}: checksum mismatch, the file is corrupt "
        f"(bad segment {segment.name})"
    ]


@pytest.mark.integration
def test_the_cache_format_version_is_checked(cached, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(cached / "cache", cache)
    (cache / "cache.json").write_text('{"format": "protprof.cache", "format_version": "2.0"}')
    code, _, err = _run(capsys, "cache", "stats", str(cache))
    assert code == 1 and err == [
        f"protprof cache: error: {cache}/cache.json: cache format version '2.0' is not "
        "supported (this protprof reads 1.x)"
    ]
    (cache / "cache.json").write_text('{"format": "protprof.cache", "format_ver')
    code, _, err = _run(capsys, "cache", "stats", str(cache))
    assert code == 1 and len(err) == 1 and f"{cache}/cache.json: unreadable or not JSON" in err[0]
