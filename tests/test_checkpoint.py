"""Checkpoints apart from training: one clear error per bad file, non-finite weights refused,
a full disk keeps the previous checkpoint, and inference never imports the trainer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import BAD, ROOT, checkpoint_state, write_bad, write_queries

from protprof.cli import main
from protprof.errors import CheckpointError, OutputError
from protprof.model.checkpoint import (
    load_checkpoint,
    load_model,
    model_from_state,
    save_checkpoint,
)
from protprof.model.encoder import ProteinEncoder


def test_state_keys_are_as_documented():
    """The layout readers rely on (the trainer adds optimizer, scheduler, sampler, rng)."""
    assert set(checkpoint_state()) == {"config", "model_config", "model", "step"}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_checkpoint_is_one_line_naming_the_file(tmp_path, capsys, kind):
    bad = write_bad(kind, tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as error:
        load_model(bad)
    assert str(error.value).startswith(f"{bad}: {BAD[kind]}"), str(error.value)
    queries = write_queries(tmp_path / "q.fasta", 2)
    out = tmp_path / "e.npz"
    assert main(["-q", "embed", str(bad), str(queries), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"protprof embed: error: {error.value}"]
    assert not out.exists() and bad.exists()  # nothing written, the bad file left alone


def test_a_good_checkpoint_round_trips(tmp_path):
    state = checkpoint_state()
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 7 and loaded["config"] == {"objective": "mlm"}
    model = model_from_state(loaded)
    for name, weight in state["model"].items():
        assert torch.equal(model.state_dict()[name], weight), name
    assert not model.training


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(small_disk):
    path = small_disk / "checkpoint.pt"
    save_checkpoint(path, checkpoint_state(0))  # 0.4 MB
    before = path.read_bytes()
    big = {**checkpoint_state(1), "extra": torch.zeros(600_000)}  # 2.4 MB: more than the disk
    with pytest.raises(OutputError) as error:
        save_checkpoint(path, big)
    assert str(error.value) == (
        f"{path}: cannot write, the disk is full ({small_disk}); nothing was replaced"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["checkpoint.pt"]  # no temporaries


def test_untrained_baseline_checkpoint_is_the_trainers_step_zero(small_store, tmp_path):
    """experiments/comparison/untrained_baseline.py builds the model without a Trainer: the
    weights must be the initialisation every trained arm starts from."""
    from protprof.train.config import load_config
    from protprof.train.loop import Trainer

    config = load_config(
        ROOT / "experiments/comparison/train.yaml",
        [f"store={small_store}", f"out_dir={tmp_path}", "seed=0"],
    )
    torch.manual_seed(config.seed)
    baseline = ProteinEncoder(config.model_config())
    trainer = Trainer(config)
    for (name, a), (_, b) in zip(
        baseline.state_dict().items(), trainer.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def _imports(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.integration
def test_inference_does_not_import_the_trainer():
    """model/checkpoint.py and model/encoder.py: no trainer, torch.distributed, YAML or loader;
    embed, the evaluation package, the benchmark and the baseline: no trainer for models."""
    lean = {"protprof.train.loop", "torch.distributed", "yaml", "protprof.train.data"}
    for module in ("protprof/model/checkpoint.py", "protprof/model/encoder.py"):
        assert not _imports(ROOT / module) & lean, module
    inference = [
        ROOT / "protprof/model/embed.py",
        ROOT / "bench/bench_evaluate.py",
        *sorted((ROOT / "protprof/evaluation").glob("*.py")),
    ]
    for module in inference:
        assert "protprof.train.loop" not in _imports(module), module
    # The baseline reads the training YAML with train.load_config, but builds and saves its
    # model through the checkpoint module.
    baseline = (ROOT / "experiments/comparison/untrained_baseline.py").read_text()
    assert "Trainer" not in baseline and "save_checkpoint" in baseline
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, protprof.model.checkpoint, protprof.model.embed, "
            "protprof.evaluation.evaluate; print(sorted(m for m in sys.modules if "
            "m == 'protprof.train.loop'))",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr
