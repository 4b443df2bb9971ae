"""Store round trip, quantisation bound, refusals, and the archived v1.0 store."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from protprof.alphabet import encode
from protprof.cli import main
from protprof.errors import StoreError
from protprof.store.zarr_store import StoreData, dequantise, open_store, quantise, write_stores

ARCHIVED = Path(__file__).parent / "data" / "store-v1.0.zarr"


def make_part(seqs: list[str], rng: np.random.Generator, names: str = "s") -> StoreData:
    lengths = [len(s) for s in seqs]
    profiles = rng.dirichlet(np.full(20, 0.3), size=sum(lengths))
    return StoreData(
        ids=[f"{names}{i}" for i in range(len(seqs))],
        tokens=np.concatenate([encode(s) for s in seqs]),
        profiles=quantise(profiles),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        n_hits=np.arange(len(seqs), dtype=np.int32),
        neff=np.linspace(0.5, 3, len(seqs)).astype(np.float32),
        split=np.array([i % 3 for i in range(len(seqs))], dtype=np.uint8),
    )


def test_quantisation_error_bound_and_sums():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(20, 0.2), size=5000)
    q = quantise(p)
    assert q.dtype == np.uint8 and (q.astype(int).sum(1) == 255).all()
    assert np.abs(dequantise(q) - p).max() < 1 / 255


def test_round_trip_across_chunks(tmp_path):
    rng = np.random.default_rng(1)
    seqs = ["MKV", "ACDEFGHIKLMNPQRSTVWYXBZJUO", "W" * 40, "GG"]
    parts = [make_part(seqs[:2], rng, "a"), make_part(seqs[2:], rng, "b")]
    store = open_store(write_stores(tmp_path / "s.zarr", parts, {"note": "x"}, chunk_rows=16))
    assert len(store) == 4 and list(store.ids) == ["a0", "a1", "b0", "b1"]
    assert [store.sequence(i) for i in range(4)] == seqs  # row 29..69 crosses chunk bounds
    expected = np.concatenate([p.profiles for p in parts])
    for i in range(4):
        got = store.quantised_profile(i)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected[store.offsets[i] : store.offsets[i + 1]])
        assert store.profile(i).dtype == np.float32
        np.testing.assert_allclose(store.profile(i).sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(store.n_hits, [0, 1, 0, 1])
    assert store.n_hits.dtype == np.int32 and store.neff.dtype == np.float32
    np.testing.assert_array_equal(store.split, [0, 1, 0, 1])
    assert store.attrs["note"] == "x" and store.attrs["format_version"] == "1.2"


def _set_attr(path: Path, key: str, value) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"][key] = value
    (path / "zarr.json").write_text(json.dumps(meta))


def test_unknown_format_version_is_refused(tmp_path, capsys):
    path = tmp_path / "s.zarr"
    shutil.copytree(ARCHIVED, path)
    _set_attr(path, "format_version", "2.0")
    with pytest.raises(StoreError, match="format version '2.0' is not supported"):
        open_store(path)
    assert main(["inspect", str(path)]) == 1
    assert "not supported" in capsys.readouterr().err


def test_corrupt_offsets_and_missing_arrays_are_refused(tmp_path):
    path = tmp_path / "s.zarr"
    shutil.copytree(ARCHIVED, path)
    _set_attr(path, "n_residues", 3)
    with pytest.raises(StoreError, match="corrupt offsets"):
        open_store(path)
    shutil.rmtree(path)
    shutil.copytree(ARCHIVED, path)
    shutil.rmtree(path / "offsets")
    with pytest.raises(StoreError, match="'offsets' is missing"):
        open_store(path)
    with pytest.raises(StoreError, match="not a protprof store"):
        open_store(tmp_path / "nowhere.zarr")


def test_archived_v1_store_still_opens():
    store = open_store(ARCHIVED)
    assert len(store) == 3
    assert store.sequence(0) == "MKV" and store.profile(1).shape == (26, 20)


def test_real_store_inspect_and_size(small_store, capsys):
    store = open_store(small_store)
    assert main(["inspect", str(small_store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_sequences"] == len(store) == 24
    assert info["bytes_per_residue"] <= 25
    assert info["provenance"]["search"]["Z"] == 5000
    assert info["provenance"]["database"]["n_sequences"] == 5000
    assert (store.n_hits > 0).sum() >= 10


def test_assemble_streams_shards_and_refuses_duplicate_ids(tmp_path, capsys):
    rng = np.random.default_rng(2)
    seqs = ["MKV", "W" * 40, "ACDEFGHIK", "GG", "P" * 25]
    attrs = {"database": {"sha256": "x"}, "search": {"N": 1}, "profile": {"method": "hmm"}}
    parts = [
        make_part(seqs[:2], rng, "a"),
        make_part(seqs[2:3], rng, "b"),
        make_part(seqs[3:], rng, "c"),
    ]
    shards = [
        write_stores(tmp_path / f"{i}.zarr", [p], attrs, chunk_rows=16)
        for i, p in enumerate(parts)
    ]
    out = tmp_path / "all.zarr"
    assert main(["-q", "assemble", *map(str, shards), "--out", str(out)]) == 0
    store = open_store(out)
    assert list(store.ids) == ["a0", "a1", "b0", "c0", "c1"] and store.attrs["n_shards"] == 3
    assert [store.sequence(i) for i in range(5)] == seqs
    np.testing.assert_array_equal(
        store.read_all().profiles, np.concatenate([p.profiles for p in parts])
    )
    np.testing.assert_array_equal(store.n_hits, [0, 1, 0, 0, 1])

    again = tmp_path / "dup.zarr"
    assert (
        main(
            ["-q", "assemble", str(shards[0]), str(shards[1]), str(shards[0]), "--out", str(again)]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'a0'" in err[0] and str(shards[0]) in err[0]
    assert not again.exists()


def _corrupt_copy(source: Path, tmp_path: Path, name: str = "s.zarr") -> Path:
    path = tmp_path / name
    shutil.copytree(source, path)
    return path


def _flip(path: Path, offset: int, value: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[offset] = (data[offset] + 1) % 256 if value is None else value
    path.write_bytes(bytes(data))


def _run(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err.strip().splitlines()


def test_intact_store_verifies(small_store, capsys):
    assert main(["verify", str(small_store)]) == 0
    assert "intact" in capsys.readouterr().out
    assert open_store(small_store).attrs["checksums"]["algorithm"] == "crc32"


@pytest.mark.parametrize("array, key", [("profiles", "0/0"), ("tokens", "0")])
def test_flipped_bytes_are_found_by_verify_and_refused_by_readers(
    small_store, tmp_path, capsys, array, key
):
    path = _corrupt_copy(small_store, tmp_path)
    chunk = path / array / "c" / key
    # A NUL token (what a flipped byte made a training IndexError of), or a profile entry + 1.
    _flip(chunk, 1000, 0 if array == "tokens" else None)
    code, err = _run(capsys, "verify", str(path))
    assert code == 1 and len(err) == 2  # the checksum and the invariant, each named
    assert all(str(chunk) in line and f"chunk 0 of '{array}'" in line for line in err)
    store = open_store(path)  # opening is cheap and does not read chunks
    with pytest.raises(StoreError, match=f"checksum mismatch, chunk 0 of '{array}'"):
        store.profile(0) if array == "profiles" else store.sequence(0)
    with pytest.raises(StoreError, match="checksum mismatch"):
        store.read_all()  # assemble reads this way: a corrupt shard stops it


def test_archived_v1_store_without_checksums_is_checked_by_invariants(tmp_path, capsys):
    path = _corrupt_copy(ARCHIVED, tmp_path)
    _flip(path / "profiles" / "c" / "0" / "0", 20 * 2 + 3)  # row 2 now sums to 256
    code, err = _run(capsys, "verify", str(path))
    assert code == 1 and err == [
        f"protprof verify: error: {path}/profiles/c/0/0: chunk 0 of "
        "'profiles' is corrupt: row 2 has a profile row that does not "
        "sum to 255"
    ]
    with pytest.raises(StoreError, match="row 2 has a profile row"):
        open_store(path).profile(0)


def test_truncated_and_missing_chunks_are_reported_by_inspect(small_store, tmp_path, capsys):
    path = _corrupt_copy(small_store, tmp_path)
    chunk = path / "profiles" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    code, err = _run(capsys, "inspect", str(path))
    assert code == 1 and len(err) == 1 and str(chunk) in err[0] and "truncated" in err[0]
    (path / "tokens" / "c" / "0").unlink()
    code, err = _run(capsys, "inspect", str(path))
    assert code == 1 and len(err) == 2 and "'tokens' is missing" in err[0]
    code, err = _run(capsys, "verify", str(path))
    assert code == 1 and "2 problems" in err[-1]
    with pytest.raises(StoreError, match="missing or truncated"):
        open_store(path).profile(0)


@pytest.mark.parametrize(
    "damage",
    ["truncated offsets chunk", "malformed array zarr.json", "array zarr.json without shape"],
)
def test_damaged_metadata_is_one_line(small_store, tmp_path, capsys, damage):
    path = _corrupt_copy(small_store, tmp_path)
    if damage == "truncated offsets chunk":
        chunk = path / "offsets" / "c" / "0"
        chunk.write_bytes(chunk.read_bytes()[:10])
    elif damage == "malformed array zarr.json":
        (path / "neff" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "arr')
    else:
        meta = json.loads((path / "profiles" / "zarr.json").read_text())
        del meta["shape"]
        (path / "profiles" / "zarr.json").write_text(json.dumps(meta))
    code, err = _run(capsys, "inspect", str(path))
    assert code == 1 and len(err) == 1 and str(path) in err[0]


def test_a_store_replaced_while_in_use_is_refused(small_store, tmp_path):
    path = _corrupt_copy(small_store, tmp_path)
    reader = open_store(path)
    worker_copy = pickle.loads(pickle.dumps(reader))  # as a DataLoader worker receives it
    rng = np.random.default_rng(0)
    write_stores(path, [make_part(["MKV", "W" * 40], rng, "new")], {})  # replaced meanwhile
    for store in (reader, worker_copy):
        with pytest.raises(StoreError, match="replaced while in use"):
            store.profile(0)
    assert len(open_store(path)) == 2  # a fresh reader sees the new store
