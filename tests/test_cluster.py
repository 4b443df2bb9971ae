"""Training at cluster scale: the precision setting, resuming on another world size with exact
sample accounting, several nodes through torchrun's c10d rendezvous, the global batch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT

from protprof import workflow_params
from protprof.cli import main
from protprof.errors import ConfigError
from protprof.model.checkpoint import load_checkpoint, load_model
from protprof.model.config import PRESETS
from protprof.model.encoder import ProteinEncoder
from protprof.train.config import load_config
from protprof.train.data import ProfileDataset, TokenBudgetBatchSampler
from protprof.train.loop import Trainer, resolve_precision

# The tiny model on the small store, one micro-batch per step.
BASE = ["max_tokens=1024", "max_len=128", "warmup_steps=0", "eval_every=1000"]


def _trainer(store, out, *extra: str) -> Trainer:
    return Trainer(load_config(None, [f"store={store}", f"out_dir={out}", *BASE, *extra]))


def test_precision_defaults_to_bf16_on_cuda_and_fp32_on_cpu():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert resolve_precision("fp16", torch.device("cpu")) == "fp16"


def test_a_bad_precision_is_refused_in_one_line(small_store, tmp_path, capsys):
    args = ["train", "--store", str(small_store), "--out-dir", str(tmp_path / "o")]
    assert main([*args, "--set", "precision=fp8"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "protprof train: error: train.precision must be one of "
        "('auto', 'bf16', 'fp16', 'fp32'), got 'fp8'"
    ]
    assert not (tmp_path / "o").exists()  # refused before anything is written
    bad = tmp_path / "train.yaml"
    bad.write_text("precision: 16\n")
    with pytest.raises(ConfigError, match=r"train.precision must be a str, got 16"):
        load_config(bad, [f"store={small_store}"])


@pytest.mark.integration
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_train_close_to_fp32_but_not_equal(small_store, tmp_path, precision):
    """One step in each precision from the same weights and batch: the low-precision loss is
    within 2 % of fp32's (so autocast ran the same model) and not equal to it (so it ran)."""
    exact = _trainer(small_store, tmp_path / "a", "precision=fp32")
    low = _trainer(small_store, tmp_path / "b", f"precision={precision}")
    assert not exact.scaler.is_enabled() and low.scaler.is_enabled() == (precision == "fp16")
    reference, stats = exact.train_step(exact._batches()), low.train_step(low._batches())
    assert stats["loss"] != reference["loss"]
    assert stats["loss"] == pytest.approx(reference["loss"], rel=0.02)
    for _ in range(3):
        assert torch.isfinite(torch.tensor(low.train_step(low._batches())["loss"]))
    assert low.step == 4
    state = low.state_dict()
    if precision == "fp16":  # the scaler's state travels with the checkpoint
        assert state["scaler"]["scale"] == low.scaler.get_scale() > 0
    else:
        assert state["scaler"] == {}


@pytest.mark.integration
def test_auto_precision_on_cpu_is_the_fp32_run_bit_for_bit(small_store, tmp_path):
    auto = _trainer(small_store, tmp_path / "a")
    fp32 = _trainer(small_store, tmp_path / "b", "precision=fp32")
    batches = auto._batches(), fp32._batches()
    for _ in range(2):
        assert auto.train_step(batches[0]) == fp32.train_step(batches[1])
    for (name, a), (_, b) in zip(
        auto.model.state_dict().items(), fp32.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


# --- resuming on another world size -------------------------------------------------------

# `protprof train` with every batch a rank reads appended to TRACE.<rank> (one JSON line of
# (epoch, item) pairs per batch): the data each process saw, in order.
TRACING = """
import json, os, sys
import protprof.train.data as data

original = data.TokenBudgetBatchSampler.stream

def stream(self):
    with open(f"{os.environ['TRACE']}.{os.environ.get('RANK', '0')}", "a") as trace:
        for batch in original(self):
            trace.write(json.dumps(batch) + "\\n")
            trace.flush()
            yield batch

data.TokenBudgetBatchSampler.stream = stream
from protprof.cli import main
sys.exit(main(sys.argv[1:]))
"""
# 12 steps of 2 x 512 tokens over a ~17-sequence train split: about 5 epochs.
RESUME = ["max_steps=12", "max_tokens=512", "max_len=128", "eval_every=1", "warmup_steps=2"]
TORCHRUN = Path(sys.executable).parent / "torchrun"


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # Own process group: on a timeout the workers die with their launcher.
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def _traced_train(tmp: Path, name: str, processes: int, out: Path, *settings: str):
    script = tmp / "traced.py"
    script.write_text(TRACING)
    launch = [sys.executable, str(script)]
    if processes > 1:
        launch = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(processes), str(script)]
    args = ["train", "--resume", "--out-dir", str(out), "--set", *RESUME, *settings]
    return _run([*launch, *args], {"TRACE": str(tmp / name)})


def _read_trace(tmp: Path, name: str, processes: int) -> list[list[tuple[int, int]]]:
    """The global batch order: rank 0's k-th batch, rank 1's k-th, ... (how the stream
    deals them out)."""
    per_rank = [
        [
            [tuple(p) for p in json.loads(line)]
            for line in (tmp / f"{name}.{r}").read_text().splitlines()
        ]
        for r in range(processes)
    ]
    return [batch for group in zip(*per_rank, strict=True) for batch in group]


@pytest.mark.slow
@pytest.mark.parametrize(("first", "second"), [(2, 1), (1, 2)])
def test_resume_on_another_world_size_reads_every_sample_once(
    small_store, tmp_path, first, second
):
    """Saved with `first` processes after 5 steps, finished with `second`, global_tokens
    keeping 2 x 512 tokens per step (2 / processes micro-batches per rank): together they
    read exactly the batches an uninterrupted single process reads, each epoch's samples
    once, and metrics.jsonl counts samples and tokens on across the resume. The losses agree
    with the single process's within float tolerance only: DDP's all-reduce sums the ranks'
    gradients in another order than one process accumulating them."""
    store = f"store={small_store}"
    reference = tmp_path / "reference"
    assert (
        main(
            [
                "train",
                "--store",
                str(small_store),
                "--out-dir",
                str(reference),
                "--set",
                *RESUME,
                "accum_steps=2",
            ]
        )
        == 0
    )
    out = tmp_path / "moved"
    cut = _traced_train(tmp_path, "a", first, out, store, "global_tokens=1024", "stop_after=5")
    assert cut.returncode == 1 and "stopped at step 5 (stop_after)" in cut.stderr, cut.stderr[
        -2000:
    ]
    assert not (out / "metrics.jsonl").exists()
    rest = _traced_train(tmp_path, "b", second, out, store, "global_tokens=1024")
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert f"resumed on {second} processes (saved on {first})" in rest.stderr
    assert f"up to 1024 tokens per step (512 x {2 // second} micro-batches" in rest.stderr
    assert "global batch changed" not in rest.stderr
    read = _read_trace(tmp_path, "a", first) + _read_trace(tmp_path, "b", second)

    # Exactly the uninterrupted order of batches: 2 per step, 12 steps.
    sampler = TokenBudgetBatchSampler(
        ProfileDataset(small_store, "train", 128).lengths, 512, seed=0
    )
    train_size = len(ProfileDataset(small_store, "train", 128))
    expected = []
    for epoch in range(10):
        expected += [[(epoch, int(i)) for i in b] for b in sampler.epoch_batches(epoch)]
    assert read == expected[:24]
    epochs = {}
    for batch in read:
        for epoch, item in batch:
            epochs.setdefault(epoch, []).append(item)
    finished = [e for e in epochs if e < read[-1][0][0]]
    assert len(finished) >= 2
    for epoch in finished:  # every sample of a finished epoch, once
        assert sorted(epochs[epoch]) == list(range(train_size)), epoch

    # metrics.jsonl: one line per step, samples and tokens seen counted on over the resume.
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    lengths = ProfileDataset(small_store, "train", 128).lengths
    for row, step in zip(rows, range(1, 13), strict=True):
        batches = read[: 2 * step]
        assert row["samples_seen"] == sum(len(b) for b in batches)
        assert row["tokens_seen"] == sum(int(lengths[i]) for b in batches for _, i in b)
    for mine, theirs in zip(rows, ref, strict=True):
        assert (mine["samples_seen"], mine["tokens_seen"]) == (
            theirs["samples_seen"],
            theirs["tokens_seen"],
        )
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
    weights = load_checkpoint(out / "checkpoint.pt")["model"]
    for name, value in load_checkpoint(reference / "checkpoint.pt")["model"].items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5, msg=name)


# --- several nodes ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "tokens_per_s"} for row in rows]


@pytest.mark.slow
def test_two_nodes_of_one_process_end_bit_identical_to_one_node_of_two(small_store, tmp_path):
    """The workflow's multi-node torchrun line, run twice on this machine as two 'nodes' that
    meet through c10d at 127.0.0.1, trains exactly what `--standalone` with two processes
    trains: the same weights, optimizer state and metrics, bit for bit. One thread per
    process in both: torchrun sets OMP_NUM_THREADS=1 only when it starts several processes per
    node, and CPU kernels sum in another order on another thread count."""
    threads = {"OMP_NUM_THREADS": "1"}
    settings = ["--set", "max_steps=6", "eval_every=3", "max_tokens=512", "max_len=128"]
    train = ["train", "--store", str(small_store), *settings, "--out-dir"]
    one = tmp_path / "one-node"
    single = _run(
        [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "protprof.cli"]
        + [*train, str(one)],
        threads,
    )
    assert single.returncode == 0, single.stderr[-3000:]

    two = tmp_path / "two-nodes"
    command = workflow_params.torchrun_command(2, 1, f"127.0.0.1:{_free_port()}", "pytest").split()
    assert command[0] == "torchrun"
    command[0] = str(TORCHRUN)
    with ThreadPoolExecutor(2) as pool:
        nodes = list(pool.map(lambda _: _run([*command, *train, str(two)], threads), range(2)))
    for node in nodes:
        assert node.returncode == 0, node.stderr[-3000:]
    mine, theirs = load_checkpoint(two / "checkpoint.pt"), load_checkpoint(one / "checkpoint.pt")
    assert mine["world"] == theirs["world"] == 2 and mine["step"] == 6
    for name, value in theirs["model"].items():
        assert torch.equal(mine["model"][name], value), name
    for index, state in theirs["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(mine["optimizer"]["state"][index][key], value), (index, key)
    assert _metrics(two) == _metrics(one) and len(_metrics(one)) == 2


@pytest.mark.slow
def test_dry_run_of_a_multi_node_job_shows_nodes_and_the_srun_torchrun_line(tmp_path):
    overlay = tmp_path / "nodes.yaml"
    overlay.write_text(
        f"results: {tmp_path / 'plan'}\n"
        "train:\n  config: workflow/train-demo.yaml\n  devices: 4\n  nodes: 2\n"
    )
    run = _run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile")]
        + ["--directory", str(ROOT), "-n", "-p", "--profile", str(ROOT / "profiles/slurm")]
        + ["--configfile", str(ROOT / "config.yaml"), str(overlay)]
    )
    assert run.returncode == 0, run.stderr[-3000:]
    job = run.stdout[run.stdout.index("rule train_model:") :]
    job = job[: job.index("\n\n")]
    assert "nodes=2, tasks=2, mpi=srun" in job
    assert "slurm_extra='--signal=USR1@600 --ntasks-per-node=1 --gpus-per-node=4'" in job
    assert (
        "Shell command: srun --nodes 2 --ntasks-per-node 1 torchrun --nnodes 2 "
        "--nproc-per-node 4 --rdzv-backend c10d --rdzv-id $SLURM_JOB_ID --rdzv-endpoint "
        '$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p):29500 -m protprof.cli '
        "train --resume"
    ) in job
    assert "--set devices=4 nodes=2 " in job


def test_launcher_resources_and_slurm_options_by_node_and_gpu_count():
    def train(devices: int, nodes: int) -> dict:
        return {"train": {"devices": devices, "nodes": nodes}}

    assert (
        workflow_params.train_launcher(train(0, 1))
        == workflow_params.train_launcher(train(1, 1))
        == "protprof"
    )
    assert workflow_params.train_launcher(train(4, 1)) == (
        "torchrun --standalone --nproc-per-node 4 -m protprof.cli"
    )
    assert workflow_params.train_resources(train(4, 1)) == {"nodes": 1, "gpu": 4}
    assert workflow_params.train_slurm_extra(train(4, 1)) == "'--signal=USR1@600 --gpus=4'"
    # CPU nodes: one process each
    assert workflow_params.train_launcher(train(0, 3)).startswith(
        "srun --nodes 3 --ntasks-per-node 1 torchrun --nnodes 3 --nproc-per-node 1 "
    )
    assert workflow_params.train_resources(train(0, 3)) == {
        "nodes": 3,
        "tasks": 3,
        "mpi": "srun",
        "gpu": 0,
    }
    assert (
        workflow_params.train_slurm_extra(train(0, 3)) == "'--signal=USR1@600 --ntasks-per-node=1'"
    )
    assert workflow_params.train_slurm_extra(train(8, 2)) == (
        "'--signal=USR1@600 --ntasks-per-node=1 --gpus-per-node=8'"
    )


# --- sharded training ---------------------------------------------------------------------


@pytest.mark.slow
def test_fsdp_matches_ddp_and_its_checkpoint_loads_on_any_world_size(
    small_store, tmp_path, capsys
):
    """Two gloo processes: FSDP2 (with activation checkpointing) and DDP train the same losses
    within float tolerance (the sharded gradients are reduce-scattered, DDP's all-reduced: other
    summation orders). The FSDP run, saved on 2 processes at step 3, resumes on 1 (its
    checkpoint holds whole tensors) and ends where DDP ends; embed and export read it."""
    settings = ["max_steps=6", "eval_every=1", "max_tokens=512", "max_len=128"]
    train = ["-m", "protprof.cli", "train", "--store", str(small_store), "--set", *settings]
    two = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *train]
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    run = _run([*two, "strategy=ddp", "--out-dir", str(ddp)])
    assert run.returncode == 0, run.stderr[-3000:]
    sharded = ["strategy=fsdp", "activation_checkpointing=true"]
    run = _run([*two, *sharded, "stop_after=3", "--out-dir", str(fsdp)])
    assert run.returncode == 1 and "stopped at step 3" in run.stderr, run.stderr[-3000:]
    assert "; 2 processes sharded (fsdp); up to 1024 tokens per step" in run.stderr
    saved = load_checkpoint(fsdp / "last.pt")
    reference = ProteinEncoder(PRESETS["tiny"]).state_dict()
    assert {k: v.shape for k, v in saved["model"].items()} == {
        k: v.shape for k, v in reference.items()
    }  # whole tensors under the unsharded names
    one = [sys.executable, *train, *sharded, "accum_steps=2", "--out-dir", str(fsdp), "--resume"]
    run = _run(one)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resumed on 1 processes (saved on 2)" in run.stderr

    mine, theirs = _metrics(fsdp), _metrics(ddp)
    assert [r["step"] for r in mine] == [r["step"] for r in theirs] == list(range(1, 7))
    for a, b in zip(mine, theirs, strict=True):
        assert (a["samples_seen"], a["tokens_seen"]) == (b["samples_seen"], b["tokens_seen"])
        for key in ("train_loss", "train_mlm_loss", "train_profile_loss", "valid_profile_kl"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)
    weights = load_model(fsdp / "checkpoint.pt").state_dict()
    for name, value in load_model(ddp / "checkpoint.pt").state_dict().items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5, msg=name)

    fasta = tmp_path / "two.fasta"
    fasta.write_text(">a\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nMSTNPKPQRKTKRNTNRRPQDVKFPGG\n")
    embedded = tmp_path / "e.npz"
    assert main(["embed", str(fsdp / "checkpoint.pt"), str(fasta), "--out", str(embedded)]) == 0
    assert main(["export", str(fsdp / "checkpoint.pt"), "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").stat().st_size > 1000
    capsys.readouterr()


def test_fp16_with_fsdp_is_refused_in_one_line(small_store):
    with pytest.raises(ConfigError, match="precision fp16 does not work with train.strategy"):
        load_config(None, [f"store={small_store}", "strategy=fsdp", "precision=fp16"])
    with pytest.raises(ConfigError, match=r"train.strategy must be one of \('ddp', 'fsdp'\)"):
        load_config(None, [f"store={small_store}", "strategy=zero3"])


def test_global_tokens_derive_the_accumulation_from_the_world_size(small_store, tmp_path):
    config = load_config(None, [f"store={small_store}", "max_tokens=1024", "global_tokens=4096"])
    assert [config.accumulation(w) for w in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(ConfigError) as refused:
        config.accumulation(3)
    assert str(refused.value) == (
        "train.global_tokens 4096 is not a multiple of max_tokens 1024 x 3 processes (3072): "
        "choose a multiple, or another max_tokens"
    )
    # The workflow's nodes x devices are checked with the settings (its dry run):
    with pytest.raises(ConfigError, match=r"x 8 processes \(8192\)"):
        load_config(
            None,
            [
                f"store={small_store}",
                "max_tokens=1024",
                "global_tokens=4096",
                "devices=4",
                "nodes=2",
            ],
        )
    with pytest.raises(ConfigError, match="global_tokens 4096 and train.accum_steps 2 both set"):
        load_config(None, [f"store={small_store}", "global_tokens=4096", "accum_steps=2"])
    trainer = _trainer(small_store, tmp_path, "global_tokens=4096")
    assert trainer.accum == 4
    trainer.train_step(trainer._batches())
    assert trainer.sampler.state_dict()["consumed"] == 4
    assert trainer.layout() == (
        "1 process; up to 4096 tokens per step (1024 x 4 micro-batches per rank)"
    )


def test_gpu_plans_load_and_state_their_estimates(small_store):
    """The GPU plans' trainer YAMLs load for 4 and 8 GPUs with one global batch, and the
    GPU-hours their comments state are what protprof.workflow_params computes from the anchor."""
    for preset in ("tiny", "esm2-8m", "esm2-35m"):  # the count the estimate rests on
        assert workflow_params.model_parameters(PRESETS[preset]) == (
            ProteinEncoder(PRESETS[preset]).n_parameters()
        )
    # The anchor itself runs at the anchor's rate.
    anchor = PRESETS[workflow_params.ANCHOR_MODEL]
    assert workflow_params.train_gpu_hours(anchor, 42_700 * 3600) == pytest.approx(1.0)
    for name, hours, gpus in (("esm2-35m", "0.27 GPU-hours", 4), ("esm2-150m", "4.9 GPU", 4)):
        path = ROOT / "workflow" / "plans" / f"train-{name}.yaml"
        config = load_config(path, [f"store={small_store}", f"devices={gpus}"])
        assert config.model == name
        accumulations = [config.accumulation(g) for g in (gpus, 2 * gpus)]
        assert accumulations[0] == 2 * accumulations[1] >= 2
        tokens = config.max_steps * config.global_tokens
        estimate = workflow_params.train_gpu_hours(config.model_config(), tokens)
        assert f"{estimate:.2g}".rstrip("0") in hours and hours in path.read_text()
    plan = yaml.safe_load((ROOT / "workflow" / "plans" / "uniref90.yaml").read_text())
    assert plan["train"] == {
        "config": "workflow/plans/train-esm2-35m.yaml",
        "devices": 4,
        "nodes": 1,
    }


# --- the GPU check --------------------------------------------------------------------------


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_check_and_writes_its_table(small_store, tmp_path):
    """bench/gpu_check.sh --cpu-smoke: the correctness checks pass on CPU and the report has
    a row per smoke preset, so the script still works the day a GPU is lent."""
    report = tmp_path / "smoke.md"
    script = ROOT / "bench" / "gpu_check.sh"
    run = _run(
        ["bash", str(script), "--cpu-smoke", "--store", str(small_store), "--out", str(report)],
        {"PROTPROF_PYTHON": sys.executable},
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    text = report.read_text()
    assert text.startswith("# protprof GPU check: cpu-smoke\n")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    checks = {row.split(" | ")[0][2:]: row.split(" | ")[1] for row in rows[1:4]}
    assert checks == {
        "CPU vs device forward (esm2-8m, fp32)": "PASS",
        "finite bfloat16 training loss": "PASS",
        "20-step DDP run on 2 cpu processes": "PASS",
    }
    presets = [row.split(" | ")[0][2:] for row in rows[5:]]
    assert presets == ["tiny", "esm2-8m"]
    assert "esm2-150m at >= 45% MFU" in text
