"""`protprof import`: stores from existing alignments (real files: the demo's own searches,
OpenFold's per-chain alignments and ESM's HHblits a3m files in ../shared/data)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import DEMO_DB, SHARED_DATA, write_queries

from protprof.cli import main
from protprof.store.zarr_store import open_store

OPENFOLD = SHARED_DATA / "msa_openfold"
ESM = SHARED_DATA / "msa_examples_esm"
needs_shared = pytest.mark.skipif(not OPENFOLD.is_dir(), reason=f"{OPENFOLD} is not there")
ARRAYS = ("ids", "offsets", "tokens", "profiles", "n_hits", "neff", "split")


def _arrays(path: Path) -> dict[str, np.ndarray]:
    data = open_store(path).read_all()
    return {name: np.asarray(getattr(data, name)) for name in ARRAYS}


def _inspect(path: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["inspect", "--json", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """Eight real demo queries searched (-N 2) with their alignments kept, in each format."""
    tmp = tmp_path_factory.mktemp("searched")
    queries = write_queries(tmp / "q.fasta", 8)
    out = {}
    for fmt in ("stockholm", "a2m", "a3m"):
        store, msas = tmp / f"{fmt}.zarr", tmp / f"msas-{fmt}"
        args = ["-q", "build", str(queries), "--database", str(DEMO_DB), "-N", "2"]
        assert main([*args, "--out", str(store), "--msa-dir", str(msas), "--msa-format", fmt]) == 0
        out[fmt] = (store, msas)
    return out


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["stockholm", "a2m", "a3m"])
def test_importing_its_own_alignments_gives_the_searched_store_bit_for_bit(
    searched, tmp_path, fmt, capsys
):
    store, msas = searched[fmt]
    imported = tmp_path / "imported.zarr"
    assert main(["-q", "import", str(msas), "--out", str(imported)]) == 0
    want, got = _arrays(store), _arrays(imported)
    for name in ARRAYS:
        assert np.array_equal(want[name], got[name]), name
    info = _inspect(imported, capsys)
    assert info["sources"] == {"imported": 8, "searched": 0}
    assert _inspect(store, capsys)["sources"] == {"imported": 0, "searched": 8}


@pytest.mark.integration
@needs_shared
def test_openfold_layout_ids_provenance_and_pick(tmp_path, capsys):
    chains = sorted(p.name for p in OPENFOLD.iterdir() if p.is_dir())
    out = tmp_path / "of.zarr"
    assert main(["-q", "import", str(OPENFOLD), "--layout", "openfold", "--out", str(out)]) == 0
    store = open_store(out)
    assert sorted(store.ids) == chains
    rows = [line.split("\t") for line in (out / "sources.tsv").read_text().splitlines()[1:]]
    for chain, _, files, sha in rows:
        path = Path(files)
        assert path == OPENFOLD / chain / "uniref90_hits.sto"
        assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    # The depth is the alignment's rows besides the query's: sequence lines of the a3m.
    out = tmp_path / "bfd.zarr"
    args = ["-q", "import", str(OPENFOLD), "--layout", "openfold", "--out", str(out)]
    assert main([*args, "--pick", "bfd_uniclust_hits.a3m"]) == 0
    store = open_store(out)
    for i, chain in enumerate(store.ids):
        text = (OPENFOLD / str(chain) / "bfd_uniclust_hits.a3m").read_text()
        assert store.n_hits[i] == text.count("\n>") + text.startswith(">") - 1


@pytest.mark.integration
@needs_shared
def test_merge_takes_the_query_once_and_drops_repeated_rows(tmp_path):
    chain = sorted(p for p in OPENFOLD.iterdir() if p.is_dir())[0]
    depths = {}
    for pick in ("uniref90_hits.sto", "mgnify_hits.sto"):
        out = tmp_path / f"{pick}.zarr"
        args = ["-q", "import", str(chain), "--layout", "openfold", "--pick", pick]
        assert main([*args, "--out", str(out)]) == 0
        depths[pick] = int(open_store(out).n_hits[0])
    out = tmp_path / "merged.zarr"
    args = ["-q", "import", str(chain), "--layout", "openfold", "--combine", "merge"]
    assert main([*args, "--pick", "uniref90_hits.sto,mgnify_hits.sto", "--out", str(out)]) == 0
    merged = int(open_store(out).n_hits[0])
    assert max(depths.values()) <= merged <= sum(depths.values())


@pytest.mark.integration
@needs_shared
def test_esm_a3m_files_import(tmp_path):
    files = sorted(ESM.glob("*.a3m"))
    out = tmp_path / "esm.zarr"
    assert main(["-q", "import", *map(str, files), "--out", str(out)]) == 0
    store = open_store(out)
    # hhblits_uniclust_2017_10_X.a3m and X.a3m share their query: imported once.
    assert len(store) == len({f.name.removeprefix("hhblits_uniclust_2017_10_") for f in files})
    assert store.attrs["import_counts"]["repeated"]


def _fails(argv: list[str], capsys, *expected: str) -> None:
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(e in err[0] for e in expected), err


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "o.zarr"
    empty = tmp_path / "empty.a3m"
    empty.write_text("")
    _fails(["import", str(empty), "--out", str(out)], capsys, str(empty))
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "notes.txt").write_text("no alignment here\n")
    _fails(["import", str(folder), "--out", str(out)], capsys, str(folder), "no alignment")
    lower = tmp_path / "lower.a3m"
    lower.write_text(">q\nMKvLA\n>hit\nMK-LA\n")
    _fails(["import", str(lower), "--out", str(out)], capsys, str(lower))
    _fails(["import", str(tmp_path / "missing.sto"), "--out", str(out)], capsys, "missing.sto")
    _fails(["import", str(tmp_path / "*.sto"), "--out", str(out)], capsys, "matches no file")
    assert not out.exists() and not list(tmp_path.glob(".o.zarr*"))


@pytest.mark.integration
@needs_shared
def test_openfold_chain_without_the_picked_file(tmp_path, capsys):
    layout = tmp_path / "chains"
    for chain in sorted(p for p in OPENFOLD.iterdir() if p.is_dir())[:2]:
        shutil.copytree(chain, layout / chain.name)
    (layout / sorted(p.name for p in layout.iterdir())[1] / "uniref90_hits.sto").unlink()
    out = tmp_path / "o.zarr"
    argv = ["import", str(layout), "--layout", "openfold", "--pick", "uniref90_hits.sto"]
    _fails([*argv, "--out", str(out)], capsys, "uniref90_hits.sto", "--skip-missing")
    assert not out.exists()
    assert main([*argv, "--skip-missing", "--out", str(out)]) == 0
    assert len(open_store(out)) == 1


def _cache_counts(path: Path) -> dict:
    return dict(open_store(path).attrs["cache"])


@pytest.mark.integration
def test_the_cache_builds_an_unchanged_file_never_and_a_changed_one_again(searched, tmp_path):
    _, msas = searched["a3m"]
    folder = tmp_path / "msas"
    shutil.copytree(msas, folder)
    cache, first, second = tmp_path / "cache", tmp_path / "1.zarr", tmp_path / "2.zarr"
    assert main(["-q", "import", str(folder), "--out", str(first), "--cache", str(cache)]) == 0
    assert _cache_counts(first)["searched"] == 8
    # The same store as without the cache, sources.tsv included.
    plain = tmp_path / "plain.zarr"
    assert main(["-q", "import", str(folder), "--out", str(plain)]) == 0
    for name in ARRAYS:
        assert np.array_equal(_arrays(first)[name], _arrays(plain)[name]), name
    assert (first / "sources.tsv").read_bytes() == (plain / "sources.tsv").read_bytes()
    # One file loses its last row: the same query, another alignment, built again.
    changed = sorted(folder.glob("*.a3m"))[0]
    text = changed.read_text().rstrip("\n").split("\n")
    changed.write_text("\n".join(text[:-2]) + "\n")
    assert main(["-q", "import", str(folder), "--out", str(second), "--cache", str(cache)]) == 0
    assert _cache_counts(second) == {**_cache_counts(first), "searched": 1, "reused": 7}
    row = list(open_store(second).ids).index(changed.stem)
    assert open_store(second).n_hits[row] == open_store(first).n_hits[row] - 1


@pytest.mark.integration
def test_imported_and_searched_profiles_never_mix_in_the_cache(searched, tmp_path):
    """The same eight sequences, searched then imported (and the reverse) through one cache:
    neither is served for the other, although the profiles are bit-identical."""
    store, msas = searched["stockholm"]
    queries = write_queries(tmp_path / "q.fasta", 8)
    cache = tmp_path / "cache"
    build = ["-q", "build", str(queries), "--database", str(DEMO_DB), "-N", "2"]
    assert main([*build, "--out", str(tmp_path / "s.zarr"), "--cache", str(cache)]) == 0
    imported = tmp_path / "i.zarr"
    assert main(["-q", "import", str(msas), "--out", str(imported), "--cache", str(cache)]) == 0
    assert _cache_counts(imported)["searched"] == 8
    again = tmp_path / "s2.zarr"
    assert main([*build, "--out", str(again), "--cache", str(cache)]) == 0
    assert _cache_counts(again)["searched"] == 0


@pytest.mark.integration
def test_filters_apply_alike_to_searched_and_imported_alignments(searched, tmp_path, capsys):
    """A search with --max-seqs and --max-identity gives the profiles that importing its own
    unfiltered alignments with the same filters gives; without filters nothing changes."""
    _, msas = searched["stockholm"]
    queries = write_queries(tmp_path / "q.fasta", 8)
    filters = ["--max-seqs", "3", "--max-identity", "0.9", "--min-coverage", "0.5"]
    searched_out = tmp_path / "s.zarr"
    build = ["-q", "build", str(queries), "--database", str(DEMO_DB), "-N", "2", *filters]
    assert main([*build, "--out", str(searched_out)]) == 0
    imported = tmp_path / "i.zarr"
    assert main(["-q", "import", str(msas), "--out", str(imported), *filters]) == 0
    want, got = _arrays(searched_out), _arrays(imported)
    for name in ARRAYS:
        assert np.array_equal(want[name], got[name]), name
    assert (want["n_hits"] <= 3).all()
    unfiltered = _arrays(searched["stockholm"][0])
    assert (unfiltered["n_hits"] > want["n_hits"]).any()
    assert open_store(searched_out).attrs["filters"]["max_seqs"] == 3
    assert "filters" not in open_store(searched["stockholm"][0]).attrs


def test_filters_with_reuse_are_refused(tmp_path, capsys):
    queries = write_queries(tmp_path / "q.fasta", 4)
    argv = ["build", str(queries), "--database", str(DEMO_DB), "--reuse", "pool"]
    _fails([*argv, "--max-seqs", "3", "--out", str(tmp_path / "o.zarr")], capsys, "reuse")


@pytest.mark.integration
def test_import_jobs_and_a_search_combine_into_one_store(searched, tmp_path, capsys):
    """Alignments imported in two jobs plus a searched store: each sequence once, the imported
    profile preferred for a sequence given both ways (or the searched one), one split rule."""
    store, msas = searched["a3m"]
    files = sorted(msas.glob("*.a3m"))
    jobs = []
    for k in range(2):
        out = tmp_path / f"import{k}.zarr"
        assert (
            main(["-q", "import", *map(str, files[:5]), "--shard", f"{k}/2", "--out", str(out)])
            == 0
        )
        jobs.append(out)
    assert sum(len(open_store(j)) for j in jobs) == 5
    combined = tmp_path / "combined.zarr"
    argv = ["-q", "combine", *map(str, jobs), "--searched", str(store), "--out", str(combined)]
    assert main(argv) == 0
    info = _inspect(combined, capsys)
    assert info["sources"] == {"imported": 5, "searched": 3}
    assert open_store(combined).attrs["combined"]["given_both_ways"] == 5
    assert sorted(open_store(combined).ids) == sorted(open_store(store).ids)
    # The profiles are the searched ones either way here (the files are this search's own).
    want = _arrays(store)
    got = open_store(combined).read_all()
    order = [list(got.ids).index(i) for i in want["ids"]]
    assert np.array_equal(np.asarray(got.split)[order], want["split"])
    rows = (open_store(combined).path / "sources.tsv").read_text().splitlines()[1:]
    assert sorted(r.split("\t")[0] for r in rows) == sorted(f.stem for f in files[:5])
    prefer = tmp_path / "prefer-search.zarr"
    assert main([*argv[:-1], str(prefer), "--prefer", "search"]) == 0
    assert _inspect(prefer, capsys)["sources"] == {"imported": 0, "searched": 8}


@pytest.mark.integration
def test_combine_refuses_import_jobs_made_with_other_settings(searched, tmp_path, capsys):
    _, msas = searched["a3m"]
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    assert main(["-q", "import", str(msas), "--shard", "0/2", "--out", str(a)]) == 0
    assert (
        main(["-q", "import", str(msas), "--shard", "1/2", "--out", str(b), "--max-seqs", "2"])
        == 0
    )
    _fails(
        ["combine", str(a), str(b), "--out", str(tmp_path / "c.zarr")], capsys, str(b), "settings"
    )
