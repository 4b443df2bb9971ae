"""Ingest's stable hashing, search presets and the MSA depth cap, assemble's refusals: real
demo queries through the real CLI."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest
from helpers import DEMO_DB, write_queries
from pyhmmer.easel import MSAFile

from protprof.alignments.folder import msa_filename
from protprof.cli import COMMANDS, HIDDEN, main
from protprof.jackhmmer import AMINO
from protprof.queries.ingest import SPLITS, read_shard
from protprof.store.zarr_store import open_store


@pytest.mark.integration
def test_adding_queries_moves_no_old_query_to_another_shard_or_split(tmp_path):
    old, new = write_queries(tmp_path / "old.fasta", 60), write_queries(tmp_path / "new.fasta", 90)
    placement = {}
    for name, queries in (("old", old), ("new", new)):
        shards = [tmp_path / name / f"{k}.fasta" for k in range(4)]
        assert main(["-q", "ingest", str(queries), "--out", *map(str, shards)]) == 0
        placement[name] = {
            r.id: (k, split)
            for k, shard in enumerate(shards)
            for r, split in zip(*read_shard(shard), strict=True)
        }
    assert len(placement["old"]) >= 55 and len(placement["new"]) >= 85  # a few are too short
    assert all(placement["new"][q] == where for q, where in placement["old"].items())
    # every shard and every split is used: the hash spreads the queries
    used = {where for where in placement["new"].values()}
    assert {k for k, _ in used} == set(range(4))
    assert {SPLITS[s] for _, s in used} == set(SPLITS)


def build(queries, out, *options) -> None:
    assert (
        main(
            [
                "-q",
                "build",
                str(queries),
                "--database",
                str(DEMO_DB),
                "--out",
                str(out),
                "--threads",
                "2",
                *options,
            ]
        )
        == 0
    )


@pytest.mark.integration
def test_alphafold_preset_and_the_msa_depth_cap(tmp_path):
    queries = write_queries(tmp_path / "q.fasta", 8)
    build(queries, tmp_path / "af.zarr", "--preset", "alphafold")
    search = open_store(tmp_path / "af.zarr").attrs["search"]
    assert (
        search["iterations"],
        search["E"],
        search["incE"],
        search["F1"],
        search["F2"],
        search["F3"],
        search["max_hits"],
    ) == (1, 1e-4, 1e-4, 5e-4, 5e-5, 5e-7, 10_000)
    for name, cap in (("free", ()), ("capped", ("--max-hits", "3"))):
        msas = ("--msa-dir", str(tmp_path / f"{name}-msa"))
        build(queries, tmp_path / f"{name}.zarr", "-N", "1", *msas, *cap)
    free, capped = open_store(tmp_path / "free.zarr"), open_store(tmp_path / "capped.zarr")
    assert list(free.ids) == list(capped.ids)
    # The cap counts targets; n_hits counts the alignment's rows (one per included domain).
    targets = {name: _aligned_targets(tmp_path / f"{name}-msa", free.ids) for name in _CAPPED}
    assert max(len(t) for t in targets["free"]) > 3  # the cap has something to cut
    assert [len(t) for t in targets["capped"]] == [min(3, len(t)) for t in targets["free"]]
    assert list(capped.n_hits) == [sum(t.values()) for t in targets["capped"]]
    assert list(free.n_hits) == [sum(t.values()) for t in targets["free"]]
    assert capped.attrs["search"]["max_hits"] == 3


_CAPPED = ("free", "capped")


def _aligned_targets(msa_dir: Path, ids) -> list[Counter]:
    """Each query's alignment rows per target name (the query's own row left out)."""
    counts = []
    for query_id in map(str, ids):
        path = msa_dir / msa_filename(query_id, "stockholm")
        with MSAFile(str(path), digital=True, alphabet=AMINO) as handle:
            names = [name.rsplit("/", 1)[0] for name in handle.read().names]
        names.remove(query_id)
        counts.append(Counter(names))
    return counts


@pytest.mark.integration
@pytest.mark.parametrize("section", ["search", "profile", "database"])
def test_assemble_refuses_shards_made_with_different_settings(tmp_path, capsys, section):
    queries = [write_queries(tmp_path / f"q{k}.fasta", 2, start=10 * k) for k in range(2)]
    build(queries[0], tmp_path / "a.zarr", "-N", "1")
    other = {
        "search": ["-N", "2"],
        "profile": ["-N", "1", "--profile-method", "frequency"],
        "database": ["-N", "1"],
    }[section]
    database = DEMO_DB
    if section == "database":  # the same records compressed again: another fingerprint
        database = tmp_path / "db.fasta.gz"
        database.write_bytes(gzip.compress(gzip.decompress(DEMO_DB.read_bytes()), mtime=1))
    assert (
        main(
            [
                "-q",
                "build",
                str(queries[1]),
                "--database",
                str(database),
                "--out",
                str(tmp_path / "b.zarr"),
                "--threads",
                "2",
                *other,
            ]
        )
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "all.zarr"
    assert (
        main(
            [
                "-q",
                "assemble",
                str(tmp_path / "a.zarr"),
                str(tmp_path / "b.zarr"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"its {section} settings differ" in err[0] and "b.zarr" in err[0]
    assert not out.exists()


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    section = out[out.index("  COMMAND\n") : out.index("\noptions:")]
    listed = [line.split()[0] for line in section.splitlines()[1:] if line[4:5].strip()]
    # the chunked search's internal steps keep their own --help but stay out of the list
    assert listed == [name for name in COMMANDS if name not in HIDDEN]
    assert HIDDEN == {"init-state", "search-chunk", "merge-iteration", "finish-shard"}
    assert set(COMMANDS) == {
        "ingest",
        "prepare-db",
        "search",
        "split-db",
        "init-state",
        "search-chunk",
        "merge-iteration",
        "finish-shard",
        "assemble",
        "build",
        "inspect",
        "verify",
        "train",
        "embed",
        "export",
        "guard",
        "evaluate",
        "reference",
        "compare",
        "plan",
        "cache",
        "import",
        "combine",
        "fetch",
    }
