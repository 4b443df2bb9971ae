"""The real Snakemake workflow, end to end on tiny real data (slow: about a minute)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import (
    ROOT,
    SHARED_DATA,
    SNAKEMAKE,
    assert_same_rows,
    esm_directory,
    job_counts,
    snakemake,
    write_config,
)

from protprof.cli import main
from protprof.model.checkpoint import load_checkpoint, load_model
from protprof.model.config import PRESETS
from protprof.model.encoder import ProteinEncoder
from protprof.store.zarr_store import open_store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed"),
]


# With the benchmark data beside the project: the leakage guard filters the queries, and two
# objectives are trained and evaluated on small samples of three tasks, then compared.
GUARDED = (
    {"leakage_guard": {"enabled": True, "data": str(SHARED_DATA)}} if SHARED_DATA.is_dir() else {}
)
EVALUATED = (
    {
        "evaluation": {
            "data": str(SHARED_DATA),
            "tasks": ["ss", "variants", "profile"],
            "max_train": 30,
            "max_test": 20,
        }
    }
    if SHARED_DATA.is_dir()
    else {}
)


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("workflow")
    write_config(
        tmp_path,
        objectives=("mlm", "multitask"),
        profile={"keep_msa": True},
        **GUARDED,
        **EVALUATED,
    )
    run = snakemake(tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    # Read now: the resume test removes the store afterwards.
    return tmp_path, open_store(tmp_path / "results/store/profiles.zarr").read_all()


def test_workflow_end_to_end_and_resume(workflow_run):
    tmp_path, _ = workflow_run
    store = open_store(tmp_path / "results/store/profiles.zarr")
    n = 10
    if GUARDED:
        guard = json.loads((tmp_path / "results/queries/guard_report.json").read_text())
        assert guard["n_queries"] == 10 and guard["n_kept"] + guard["n_dropped"] == 10
        n = guard["n_kept"]
        assert not {d["id"] for d in guard["dropped"]} & set(store.ids)
    assert len(store) == n and store.attrs["cache"]["searched"] == n
    assert store.attrs["search"]["iterations"] == 2 and store.attrs["search"]["Z"] == 5000
    assert all(store.profile(i).shape == (len(store.sequence(i)), 20) for i in range(n))
    # profile.keep_msa: each shard's final alignments, listed in its index
    listed = [
        line.split("\t")
        for index in sorted((tmp_path / "results/msas").glob("*/index.tsv"))
        for line in index.read_text().splitlines()[1:]
    ]
    assert sorted(query for query, _ in listed) == sorted(map(str, store.ids))
    assert all(list((tmp_path / "results/msas").glob(f"*/{name}")) for _, name in listed)
    checkpoint = tmp_path / "results/train/multitask/seed0/checkpoint.pt"
    model = load_model(checkpoint)
    assert model.config == PRESETS["tiny"]  # the demo trainer settings' model
    assert model.n_parameters() == ProteinEncoder(PRESETS["tiny"]).n_parameters()
    # The trained model embeds any sequences.
    out = tmp_path / "embeddings.npz"
    assert (
        main(["embed", str(checkpoint), str(tmp_path / "queries.fasta"), "--out", str(out)]) == 0
    )
    embedded = np.load(out)
    assert embedded["offsets"][-1] == embedded["per_residue"].shape[0]
    assert embedded["mean"].shape == (10, model.config.d_model)
    np.testing.assert_allclose(embedded["profiles"].sum(1), 1, atol=1e-5)
    assert (tmp_path / "results/train/mlm/seed0/curves.png").exists()
    if EVALUATED:
        table = (tmp_path / "results/evaluation/comparison.md").read_text().splitlines()
        assert table[0] == "| task | metric | mlm | multitask |"
        assert any(line.startswith("| secondary structure (CB513) | Q3 |") for line in table)
        report = json.loads((tmp_path / "results/evaluation/mlm/seed0/report.json").read_text())
        # ss 1, variants 6 assays x 3 scorers + 3 means, profile 1 or 3 (no test split).
        assert report["objective"] == "mlm" and len(report["results"]) in (23, 25)
        reference = [r for r in report["results"] if r["metric"].endswith("alignment profile")]
        assert len(reference) == 7 and all(np.isfinite(r["value"]) for r in reference)
        assert (tmp_path / "results/evaluation/alignment_reference.npz").exists()
        assert (tmp_path / "results/evaluation/comparison.png").stat().st_size > 5000
    for rule in ("search_shard", "train_model", "assemble_store"):
        assert list((tmp_path / "results/benchmarks" / rule).glob("*.tsv")), rule
    # An interrupted run (killed while searching shard 1, before assembling) resumes by
    # searching shard 1 alone; shard 0's finished search is not repeated.
    shutil.rmtree(tmp_path / "results/search/0001.zarr")
    for later in ("results/store", "results/train"):
        shutil.rmtree(tmp_path / later)
    plan = job_counts(snakemake(tmp_path, "--dry-run").stdout)
    assert plan["search_shard"] == 1 and plan["assemble_store"] == 1
    assert "ingest_queries" not in plan and "prepare_database" not in plan


def test_chunked_database_workflow_gives_the_same_store(workflow_run, tmp_path):
    """database_chunks: 3 -> 3 search jobs per shard and iteration, then merges: same store."""
    write_config(tmp_path, test="chunked", **GUARDED)
    run = snakemake(tmp_path, "results/store/profiles.zarr")
    assert run.returncode == 0, run.stderr[-4000:]
    assert len(list((tmp_path / "results/benchmarks/search_chunk").glob("*.tsv"))) == 2 * 2 * 3
    # the per-iteration pickles are temporary: gone once the shard stores exist
    assert not list((tmp_path / "results/iterations").rglob("*.pkl"))
    chunked = open_store(tmp_path / "results/store/profiles.zarr").read_all()
    whole = workflow_run[1]
    assert chunked.ids == whole.ids
    for name in ("tokens", "profiles", "offsets", "n_hits", "neff", "split"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name), name)
    assert (whole.n_hits > 0).sum() >= 5


def test_workflow_without_the_cache_gives_the_same_complete_store(workflow_run, tmp_path, capsys):
    """cache: false: no profile cache is planned, filled or read; every query is searched in
    its shard and the store is assembled from the shard stores. It holds every query, verifies
    and equals the cached run's store; training reads it."""
    write_config(tmp_path, cache=False, **GUARDED)
    plan = job_counts(snakemake(tmp_path, "--dry-run").stdout)
    assert "plan_searches" not in plan and plan["search_shard"] == 2
    run = snakemake(tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert not (tmp_path / "results/cache").exists()
    path = tmp_path / "results/store/profiles.zarr"
    store = open_store(path)
    whole = workflow_run[1]
    assert sorted(store.ids) == sorted(whole.ids) and len(store) == len(whole.ids)
    assert all(store.profile(i).shape == (len(store.sequence(i)), 20) for i in range(len(store)))
    assert_same_rows(store.read_all(), whole)
    capsys.readouterr()
    assert main(["verify", str(path)]) == 0
    assert f"{path}: intact" in capsys.readouterr().out
    assert load_model(tmp_path / "results/train/multitask/seed0/checkpoint.pt")


def test_bad_config_key_fails_at_dry_run(tmp_path):
    write_config(tmp_path, serch={"iterations": 2})
    run = snakemake(tmp_path, "--dry-run")
    assert run.returncode != 0
    assert "serch" in run.stderr + run.stdout


def test_bad_config_value_fails_at_dry_run(tmp_path):
    write_config(tmp_path, search={"iterations": 0})
    run = snakemake(tmp_path, "--dry-run")
    assert run.returncode != 0
    assert "iterations" in run.stderr + run.stdout


def test_bad_training_yaml_fails_at_dry_run_before_any_search(tmp_path):
    bad = tmp_path / "train.yaml"
    bad.write_text("max_steps: 10\nlerning_rate: 0.01\n")
    write_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["train"]["config"] = str(bad)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "--dry-run")
    assert run.returncode != 0
    assert "unknown setting 'lerning_rate'" in run.stderr + run.stdout


def test_uniref90_plan_dry_run_requests_sane_resources_and_gpus(tmp_path):
    """The documented UniRef90 plan: chunked search jobs of ~11 GB, GPUs and torchrun."""
    run = subprocess.run(
        [
            SNAKEMAKE,
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(ROOT),
            "-n",
            "--profile",
            str(ROOT / "profiles/slurm"),
            "--cores",
            "64",
            "--configfile",
            str(ROOT / "config.yaml"),
            str(ROOT / "workflow/plans/uniref90.yaml"),
            "--config",
            f"results={tmp_path / 'plan'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    plan = job_counts(run.stdout)
    assert plan["search_chunk"] == 100 * 3 * 16 and plan["merge_iteration"] == 300
    chunk = run.stdout[run.stdout.index("rule search_chunk:") :]
    chunk = chunk[: chunk.index("Shell command")]
    # 5.5e10 residues / 16 chunks x 3 bytes + 1 GiB working set
    assert "mem_mb=11336," in chunk and "runtime=564" in chunk
    train = run.stdout[run.stdout.index("rule train_model:") :]
    assert "gpu=4" in train and "--signal=USR1@600 --gpus=4" in train
    assert "torchrun --standalone --nproc-per-node 4 -m protprof.cli train" in train


def test_workflow_trains_from_an_esm_directory(tmp_path):
    """`train.init_from`: checked at dry run (a shape that is not the model's fails, naming
    both), then the training job starts from the directory's weights."""
    wrong = esm_directory(tmp_path / "esm-wide", width=128)
    write_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["train"]["init_from"] = str(wrong)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "--dry-run")
    assert run.returncode != 0
    assert "2 layers x 128, 4 heads, d_ff 512" in run.stderr + run.stdout
    # The tiny preset's shape (token dropout off, as protprof's own presets have it).
    directory = esm_directory(tmp_path / "esm dir", token_dropout=False)
    config["train"]["init_from"] = str(directory)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/train/multitask/seed0/checkpoint.pt"
    run = snakemake(tmp_path, target)
    assert run.returncode == 0, run.stderr[-4000:]
    assert load_checkpoint(tmp_path / target)["config"]["init_from"] == str(directory)
    log = (tmp_path / "results/logs/train_model/multitask-seed0.log").read_text()
    assert f"starting from {directory} (a fresh profile head)" in log
    # Another directory retrains: its config.json is an input of the training job.
    other = shutil.copytree(directory, tmp_path / "esm2")
    config["train"]["init_from"] = str(other)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert "train_model" in job_counts(snakemake(tmp_path, "--dry-run", target).stdout)
