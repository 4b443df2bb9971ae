"""The workflow's training job resumes after a kill (issue 11, item 3): SIGKILL of the job's
process group mid-run, `snakemake --unlock`, a rerun that continues from the rolling checkpoint
and ends bit-identical to an uninterrupted run (slow: about two minutes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import BIN, ROOT, SNAKEMAKE, job_counts, snakemake, write_config

from protprof.cli import main
from protprof.model.checkpoint import load_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed"),
]

# The tiny model with dropout (RNG state matters), validation every step, a checkpoint every 20.
TRAIN = {
    "max_steps": 50,
    "eval_every": 1,
    "checkpoint_every": 20,
    "max_tokens": 1024,
    "max_len": 200,
    "warmup_steps": 2,
    "model_overrides": {"dropout": 0.1},
}
RUN = Path("results/train/multitask/seed0")


def _steps(metrics: Path) -> list[int]:
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines()]


def _start(workdir: Path, log: Path) -> subprocess.Popen:
    """Snakemake in a process group of its own: locally, the jobs it runs are in that group."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    with open(log, "w") as handle:
        return subprocess.Popen(
            [
                SNAKEMAKE,
                "-s",
                str(ROOT / "Snakefile"),
                "--directory",
                str(workdir),
                "--cores",
                "2",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _kill_after_step(process: subprocess.Popen, metrics: Path, step: int) -> None:
    """SIGKILL the whole process group once the training job has logged `step`."""
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if any(s >= step for s in _steps(metrics)):
                    return
            except (OSError, ValueError):
                pass  # not started yet, or a line being written
            time.sleep(0.02)
        raise AssertionError(
            f"training never reached step {step} (snakemake exit {process.poll()})"
        )
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_killed_training_job_resumes_bit_identical(tmp_path):
    train = tmp_path / "train.yaml"
    train.write_text(yaml.safe_dump(TRAIN))
    write_config(tmp_path, train={"config": str(train), "objectives": ["multitask"]})
    out = tmp_path / RUN
    _kill_after_step(_start(tmp_path, tmp_path / "first.log"), out / "last-metrics.jsonl", 22)

    # Killed mid-run: the rolling checkpoint (step 20) survives, nothing looks finished.
    step = load_checkpoint(out / "last.pt")["step"]
    assert step == 20, f"killed after step 40 (checkpoint {step}): too late for this test"
    assert max(_steps(out / "last-metrics.jsonl")) >= 22
    assert not any(
        (out / name).exists() for name in ("checkpoint.pt", "metrics.jsonl", "curves.png")
    )
    # Snakemake itself was killed: its lock stays until `snakemake --unlock` (README).
    locked = snakemake(tmp_path)
    assert locked.returncode != 0 and "--unlock" in locked.stderr + locked.stdout
    assert snakemake(tmp_path, "--unlock").returncode == 0

    rerun = snakemake(tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    plan = job_counts(rerun.stdout + rerun.stderr)
    assert plan.get("train_model") == 1 and "search_shard" not in plan, plan
    log = (tmp_path / "results/logs/train_model/multitask-seed0.log").read_text()
    assert f"resumed from {RUN / 'last.pt'} at step 20" in log
    assert _steps(out / "metrics.jsonl") == list(range(1, 51))  # steps 21-22 once
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "curves.png",
        "metrics.jsonl",
    ]

    # The same training, uninterrupted, with the settings the workflow passes.
    whole = tmp_path / "whole"
    assert (
        main(
            [
                "-q",
                "train",
                "--config",
                str(train),
                "--store",
                str(tmp_path / "results/store/profiles.zarr"),
                "--out-dir",
                str(whole),
                "--set",
                "devices=0",
                "objective=multitask",
                "seed=0",
            ]
        )
        == 0
    )
    resumed, uninterrupted = (
        load_checkpoint(out / "checkpoint.pt"),
        load_checkpoint(whole / "checkpoint.pt"),
    )
    assert resumed["step"] == uninterrupted["step"] == 50
    for name, weight in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], weight), name
    for key in ("exp_avg", "exp_avg_sq"):
        for i, state in uninterrupted["optimizer"]["state"].items():
            assert torch.equal(resumed["optimizer"]["state"][i][key], state[key]), (i, key)
