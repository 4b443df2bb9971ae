"""Paths with spaces reach every rule's command as one word: the queries, the results folder,
the profile cache (`--cache`) and the benchmark data (`--data`). Dry runs print every command;
the cheap first jobs (ingest, prepare the database, plan against the cache) run for real."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import SNAKEMAKE, commands, snakemake, write_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed"),
]
RESULTS = "results dir"


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_paths_with_spaces_are_one_word_in_every_command(tmp_path):
    workdir, data, cache = tmp_path / "work dir", tmp_path / "bench data", tmp_path / "a cache"
    queries = tmp_path / "query files" / "my queries.fasta"
    for folder in (workdir, data, queries.parent):
        folder.mkdir()
    write_config(workdir)  # the basic test config, then paths with spaces everywhere
    queries.write_text((workdir / "queries.fasta").read_text())
    settings = yaml.safe_load((workdir / "config.yaml").read_text())
    settings.update(
        queries=[str(queries)],
        results=RESULTS,
        cache=str(cache),
        profile={"keep_msa": True},
        evaluation={"data": str(data), "tasks": ["ss", "variants"]},
        leakage_guard={"enabled": True, "data": str(data)},
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(settings))

    run = snakemake(workdir, "-n", "-p")
    assert run.returncode == 0, run.stderr[-3000:]
    planned = commands(run.stdout)
    guard = planned["guard_queries"][0]
    assert guard[2] == str(queries) and option(guard, "--data") == str(data)
    assert option(guard, "--out") == f"{RESULTS}/queries/guarded.fasta"
    assert option(planned["plan_searches"][0], "--cache") == str(cache)
    assert option(planned["assemble_store"][0], "--cache") == str(cache)
    assert option(planned["alignment_reference"][0], "--data") == str(data)
    evaluate = planned["evaluate_model"][0]
    assert option(evaluate, "--data") == str(data)
    assert option(evaluate, "--reference") == f"{RESULTS}/evaluation/alignment_reference.npz"
    assert option(evaluate, "--out") == f"{RESULTS}/evaluation/multitask/seed0"

    # The first jobs for real (without the guard, which needs the benchmark data's files):
    # the plan reads the cache at its path with a space.
    settings["leakage_guard"] = {"enabled": False}
    (workdir / "config.yaml").write_text(yaml.safe_dump(settings))
    run = snakemake(workdir, f"{RESULTS}/plan")
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in (workdir / RESULTS / "plan/shards").iterdir()) == [
        "0000.fasta",
        "0001.fasta",
    ]
    # After the plan, the search jobs, whole and chunked (MSA folders kept).
    for chunks in ("0", "2"):
        run = snakemake(workdir, "-n", "-p", "--config", f"database_chunks={chunks}")
        assert run.returncode == 0, run.stderr[-3000:]
        planned = commands(run.stdout)
        searches = planned["finish_shard" if chunks != "0" else "search_shard"]
        assert len(searches) == 2
        for words in searches:
            shard = Path(words[2]).stem
            assert words[2] == f"{RESULTS}/plan/shards/{shard}.fasta"
            assert option(words, "--msa-dir") == f"{RESULTS}/msas/{shard}"
        assembled = planned["assemble_store"][0]
        assert option(assembled, "--cache") == str(cache)
        assert f"{RESULTS}/search/0000.zarr" in assembled
        for words in [w for rule in planned.values() for w in rule]:
            # a path split at its space would leave a word beginning "dir/"
            assert not any(word.startswith("dir/") for word in words), words
