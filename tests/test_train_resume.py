"""Training faults (issue 11, items 3-7): a killed run resumes bit-identically with each metrics
line once, one run per out-dir, stop_after fails clearly and keeps its checkpoint, every setting
is checked, a non-finite loss stops the run and keeps the last good checkpoint."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import BAD, write_bad

import protprof.train.loop
from protprof.cli import main
from protprof.model.checkpoint import load_checkpoint
from protprof.train.config import load_config

PROTPROF = Path(sys.executable).parent / "protprof"
PUBLISHED = ["checkpoint.pt", "curves.png", "metrics.jsonl"]  # all a finished out-dir holds
# 40 steps of the tiny model with dropout (so RNG state matters), validation every step.
SETTINGS = [
    "max_steps=40",
    "checkpoint_every=10",
    "eval_every=1",
    "max_tokens=2048",
    "max_len=128",
    "warmup_steps=2",
    "model_overrides={dropout: 0.1}",
]


def _train(store: Path, out: Path, *extra: str, resume: bool = False) -> int:
    return main(
        [
            "train",
            *(["--resume"] if resume else []),
            "--store",
            str(store),
            "--out-dir",
            str(out),
            "--set",
            *SETTINGS,
            *extra,
        ]
    )


def _steps(metrics: Path) -> list[int]:
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines()]


def _wait_for_step(process: subprocess.Popen, metrics: Path, step: int) -> None:
    """Poll until the run has logged `step` (its metrics file is rewritten at start)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if any(s >= step for s in _steps(metrics)):
                return
        except (OSError, ValueError):
            pass  # not there yet, or a line being written
        time.sleep(0.02)
    raise AssertionError(f"the run never reached step {step} (exit {process.poll()})")


@pytest.fixture(scope="module")
def killed(small_store, tmp_path_factory):
    """A `protprof train` process SIGKILLed after step 12 (its last checkpoint: step 10), and
    what a second run on its out-dir said meanwhile (the first held still by SIGSTOP, so it
    cannot finish during the second's start-up)."""
    out = tmp_path_factory.mktemp("killed") / "run"
    with open(out.parent / "train.log", "w") as log:
        process = subprocess.Popen(
            [
                str(PROTPROF),
                "train",
                "--resume",
                "--store",
                str(small_store),
                "--out-dir",
                str(out),
                "--set",
                *SETTINGS,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # its own process group, killed as a whole
        )
    try:
        _wait_for_step(process, out / "last-metrics.jsonl", 12)
        os.killpg(process.pid, signal.SIGSTOP)
        second = _second_run(small_store, out)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return {"out": out, "second": second}


def _second_run(store: Path, out: Path) -> tuple[int, list[str]]:
    """`protprof train` on a busy out-dir, in a process of its own (the lock is per process)."""
    run = subprocess.run(
        [
            str(PROTPROF),
            "-q",
            "train",
            "--resume",
            "--store",
            str(store),
            "--out-dir",
            str(out),
            "--set",
            *SETTINGS,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run.returncode, run.stderr.strip().splitlines()


@pytest.mark.integration
def test_second_run_on_one_out_dir_is_refused(killed):
    """Item 6: one line from the second run; it changed nothing of the first's files."""
    out = killed["out"]
    code, err = killed["second"]
    lock = out / ".checkpoint.pt.lock"
    assert code == 1
    assert err == [
        f"protprof train: error: {out / 'checkpoint.pt'}: another protprof run is "
        f"writing it (lock {lock} is held); wait for it to finish or choose another "
        "output"
    ]


@pytest.mark.integration
def test_killed_run_leaves_its_rolling_checkpoint_and_nothing_published(killed):
    out = killed["out"]
    step = load_checkpoint(out / "last.pt")["step"]
    assert step == 10, f"the run was killed after step 20 (checkpoint {step}): too late"
    assert max(_steps(out / "last-metrics.jsonl")) > 10  # lines the resumed run must drop
    assert not any((out / name).exists() for name in PUBLISHED)


@pytest.mark.integration
def test_killed_run_resumes_bit_identical_with_each_metrics_line_once(
    killed, small_store, tmp_path, caplog
):
    """Items 3 and 5: the stale lock does not block the rerun, which logs where it resumed,
    ends with the uninterrupted run's weights bit for bit and writes each step's line once."""
    out = killed["out"]
    caplog.set_level(logging.INFO, logger="protprof.train.loop")
    assert _train(small_store, out, resume=True) == 0
    assert f"resumed from {out / 'last.pt'} at step 10" in caplog.messages
    assert _train(small_store, tmp_path / "whole") == 0
    resumed = load_checkpoint(out / "checkpoint.pt")
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert resumed["step"] == whole["step"] == 40
    for name, weight in whole["model"].items():
        assert torch.equal(resumed["model"][name], weight), name
    assert _steps(out / "metrics.jsonl") == list(range(1, 41))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [
        json.loads(line)
        for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    ]
    for row, want in zip(rows, expected, strict=True):  # same losses; the speed differs
        assert {k: v for k, v in row.items() if k != "tokens_per_s"} == {
            k: v for k, v in want.items() if k != "tokens_per_s"
        }
    assert (out / "curves.png").stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == PUBLISHED


@pytest.mark.integration
@pytest.mark.parametrize(("stop", "workers"), [(signal.SIGTERM, 1), (signal.SIGUSR1, 0)])
def test_signal_saves_at_the_step_boundary_and_resume_is_bit_identical(
    small_store, tmp_path, stop, workers
):
    """SLURM's SIGTERM at the time limit (or SIGUSR1 from --signal=USR1@...), sent to the whole
    process group as SLURM does: the step under way ends, last.pt is saved at that step (not
    the last multiple of checkpoint_every), the exit status is 75, and --resume ends bit for
    bit where an uninterrupted run ends."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        [str(PROTPROF), "train", "--store", str(small_store), "--out-dir", str(out)]
        + ["--set", *SETTINGS, f"num_workers={workers}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_step(process, out / "last-metrics.jsonl", 12)
        os.killpg(process.pid, stop)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 75, stderr[-2000:]
    step = load_checkpoint(out / "last.pt")["step"]
    assert 12 <= step < 40
    assert stderr.strip().splitlines()[-1] == (
        f"protprof train: error: stopped by {stop.name} at step {step}; saved "
        f"{out / 'last.pt'}; rerun with --resume to continue"
    )
    assert _steps(out / "last-metrics.jsonl") == list(range(1, step + 1))
    assert _train(small_store, out, resume=True) == 0
    assert _train(small_store, tmp_path / "whole") == 0
    resumed = load_checkpoint(out / "checkpoint.pt")["model"]
    for name, weight in load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"].items():
        assert torch.equal(resumed[name], weight), name


@pytest.mark.integration
def test_stop_after_fails_clearly_keeps_the_checkpoint_and_a_rerun_continues(
    small_store, tmp_path, capsys
):
    """Item 4: stop_after counts the steps of one invocation; the stop is exit 1 with one
    line, the rolling checkpoint stays, nothing is published until max_steps."""
    out = tmp_path / "run"
    short = ["max_steps=6", "stop_after=4"]
    assert _train(small_store, out, *short) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"protprof train: error: stopped at step 4 (stop_after); rerun with "
        f"--resume to continue from {out / 'last.pt'}"
    )
    assert not any(line.startswith("Traceback") for line in err)
    assert load_checkpoint(out / "last.pt")["step"] == 4
    assert _steps(out / "last-metrics.jsonl") == [1, 2, 3, 4]
    assert not (out / "checkpoint.pt").exists() and not (out / "curves.png").exists()
    assert _train(small_store, out, *short, resume=True) == 0  # steps 5-6: done
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 6
    assert _steps(out / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in out.iterdir()) == PUBLISHED  # rolling files gone


@pytest.mark.integration
def test_existing_checkpoint_without_resume_and_other_settings_are_refused(
    small_store, tmp_path, capsys
):
    out = tmp_path / "run"
    assert _train(small_store, out, "max_steps=2") == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert _train(small_store, out, "max_steps=4") == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"protprof train: error: {out / 'checkpoint.pt'} exists: pass --resume to continue it, "
        "or remove it to start over"
    )
    assert _train(small_store, out, "max_steps=4", "lr=0.01", resume=True) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"protprof train: error: {out / 'checkpoint.pt'}: cannot resume, it was trained with "
        "other settings (lr 0.001 -> 0.01); remove it to start over"
    )
    rebuilt = tmp_path / "rebuilt.zarr"  # the same data, rebuilt: a new store_id
    shutil.copytree(small_store, rebuilt)
    root = json.loads((rebuilt / "zarr.json").read_text())
    old_id, root["attributes"]["store_id"] = root["attributes"]["store_id"], "0" * 32
    (rebuilt / "zarr.json").write_text(json.dumps(root))
    assert _train(rebuilt, out, "max_steps=4", resume=True) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"protprof train: error: {out / 'checkpoint.pt'}: cannot resume, it was trained on "
        f"another store (store_id {old_id}; {rebuilt} is now {'0' * 32}); remove it to start over"
    )
    assert (out / "checkpoint.pt").read_bytes() == before
    assert _train(small_store, out, "max_steps=4", resume=True) == 0  # train on: allowed
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    assert _steps(out / "metrics.jsonl") == [1, 2, 3, 4]
    done = (out / "checkpoint.pt").read_bytes()
    assert _train(small_store, out, "max_steps=4", resume=True) == 0  # nothing left to do
    assert (out / "checkpoint.pt").read_bytes() == done
    assert sorted(p.name for p in out.iterdir()) == PUBLISHED


BAD_SETTINGS = {  # --set value: the one line
    "grad_clip=-1": "train.grad_clip must be > 0, got -1.0",
    "grad_clip=0": "train.grad_clip must be > 0, got 0.0",
    "max_steps=3.5": "train.max_steps must be an integer >= 1, got 3.5",
    "max_steps=0": "train.max_steps must be >= 1, got 0",
    "max_steps=true": "train.max_steps must be an integer >= 1, got True",
    "lr=.inf": "train.lr must be a finite number in (0, 1], got inf",
    "lr=.nan": "train.lr must be a finite number in (0, 1], got nan",
    "lr=nan": "train.lr must be a finite number in (0, 1], got nan",
    "lr=0": "train.lr must be in (0, 1], got 0.0",
    "lr=1e38": "train.lr must be in (0, 1], got 1e+38",
    "lr=fast": "train.lr must be a finite number in (0, 1], got 'fast'",
    "weight_decay=-5": "train.weight_decay must be >= 0, got -5.0",
    "min_lr_ratio=50": "train.min_lr_ratio must be in [0, 1], got 50.0",
    "num_workers=-1": "train.num_workers must be >= 0, got -1",
    "mask_prob=1": "train.mask_prob must be in (0, 1), got 1.0",
    "mlm_weight=-1": "train.mlm_weight must be >= 0, got -1.0",
    "warmup_steps=-2": "train.warmup_steps must be >= 0, got -2",
    "seed=-1": "train.seed must be >= 0, got -1",
    "eval_batches=2.0": "train.eval_batches must be an integer >= 0, got 2.0",
    "compile=2": "train.compile must be a bool, got 2",
    "device=gpu": "train.device must be one of ('auto', 'cpu', 'cuda'), got 'gpu'",
    "objective=both": "train.objective must be one of ('mlm', 'profile', 'multitask'), got 'both'",
    "model_overrides={dropout: 1.5}": "train.model_overrides.dropout must be in [0, 1), got 1.5",
    "model_overrides={n_layers: 2.5}": "train.model_overrides.n_layers must be an integer >= 1, "
    "got 2.5",
    "model_overrides={rope_base: .nan}": "train.model_overrides.rope_base must be a finite "
    "number > 0, got nan",
}


@pytest.mark.parametrize("item", list(BAD_SETTINGS))
def test_bad_setting_is_one_line_naming_key_and_value(tmp_path, capsys, item):
    """Item 7, through --set and through the YAML file (the same values)."""
    key, _, value = item.partition("=")
    config = tmp_path / "train.yaml"
    config.write_text(f"{key}: {value}\n")
    for argv in (["--set", item], ["--config", str(config)]):
        out = tmp_path / "run"
        assert (
            main(["train", "--store", str(tmp_path / "unused.zarr"), "--out-dir", str(out), *argv])
            == 1
        )
        assert capsys.readouterr().err.strip().splitlines() == [
            f"protprof train: error: {BAD_SETTINGS[item]}"
        ]
        assert not out.exists()  # refused before anything was made


def test_usual_float_notation_is_accepted(tmp_path):
    """PyYAML reads `1e-3` (no dot) as a string: it is a number for a float setting."""
    config = tmp_path / "train.yaml"
    config.write_text("lr: 1e-3\nweight_decay: 0\nmax_steps: 7\n")
    settings = load_config(config, ["store=s.zarr", "mlm_weight=2e-1", "grad_clip=1E+0"])
    assert (settings.lr, settings.weight_decay, settings.max_steps) == (0.001, 0.0, 7)
    assert (settings.mlm_weight, settings.grad_clip) == (0.2, 1.0)
    assert isinstance(settings.weight_decay, float)
    assert load_config(None, ["store=2024", "out_dir=0001"]).out_dir == "0001"


@pytest.mark.integration
def test_infinite_loss_at_the_first_step_is_one_line(small_store, tmp_path, capsys):
    """A real overflow (a loss weight of 1e39 makes the float32 loss inf): the inputs were
    sound, so the learning rate is the advice."""
    out = tmp_path / "run"
    assert _train(small_store, out, "mlm_weight=1e39") == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"protprof train: error: the loss is inf at step 1 \(micro-batch 1 of 1: \d+ "
        r"sequences, \d+ residues, \d+ masked positions\); its inputs were sound: training "
        r"stopped; no checkpoint was written yet; try a lower lr",
        line,
    ), line
    assert not (out / "last.pt").exists() and not (out / "checkpoint.pt").exists()


@pytest.mark.integration
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    small_store, tmp_path, capsys, monkeypatch
):
    """The loss turns NaN at step 14 (a NaN weight, injected); the checkpoint of step 10 stays,
    its weights finite, and nothing is published."""
    real = protprof.train.loop.objective_weights
    calls = []

    def nan_from_step_14(*args):
        calls.append(1)
        return (float("nan"), 1.0) if len(calls) >= 14 else real(*args)

    monkeypatch.setattr(protprof.train.loop, "objective_weights", nan_from_step_14)
    out = tmp_path / "run"
    assert _train(small_store, out) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("protprof train: error: the loss is nan at step 14 (micro-batch")
    assert line.endswith(
        f"its inputs were sound: training stopped; the last good checkpoint is "
        f"{out / 'last.pt'} (step 10); try a lower lr"
    )
    assert load_checkpoint(out / "last.pt")["step"] == 10  # loads: its weights are finite
    assert _steps(out / "last-metrics.jsonl") == list(range(1, 14))
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.integration
def test_nan_from_damaged_targets_names_the_term_and_not_the_learning_rate(
    small_store, tmp_path, capsys, monkeypatch
):
    """Profile targets holding NaN (as a damaged store would give) make the profile loss NaN:
    the message names the term and the inputs, and does not blame the learning rate."""
    real = protprof.train.loop.profile_targets

    def damaged(quantised):
        targets = real(quantised)
        targets[0, 1, 0] = float("nan")
        return targets

    monkeypatch.setattr(protprof.train.loop, "profile_targets", damaged)
    assert _train(small_store, tmp_path / "run") == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("protprof train: error: the profile loss is nan at step 1 (")
    assert "its profile targets hold NaN or inf" in line and "lower lr" not in line


@pytest.mark.integration
def test_full_disk_during_training_keeps_the_last_checkpoint(small_store, small_disk, capsys):
    """The tiny model's checkpoint with its optimizer is 1.3 MB: the first fits on the 2 MiB
    disk, the second (written beside it before the rename) does not."""
    out = small_disk / "run"
    code = main(
        [
            "-q",
            "train",
            "--store",
            str(small_store),
            "--out-dir",
            str(out),
            "--set",
            "max_steps=4",
            "checkpoint_every=2",
            "eval_every=2",
            "max_tokens=2048",
            "max_len=128",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [
        f"protprof train: error: {out / 'last.pt'}: cannot write, the disk is full "
        f"({out}); nothing was replaced"
    ]
    assert load_checkpoint(out / "last.pt")["step"] == 2  # the previous one, intact
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.integration
def test_resume_from_a_foreign_last_checkpoint_is_one_line(small_store, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copyfile(write_bad("tensor", tmp_path / "t.pt"), out / "last.pt")
    code = main(
        [
            "-q",
            "train",
            "--resume",
            "--store",
            str(small_store),
            "--out-dir",
            str(out),
            "--set",
            "max_steps=2",
            "max_tokens=2048",
            "max_len=128",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"protprof train: error: {out / 'last.pt'}: {BAD['tensor']}"]
    assert (out / "last.pt").exists()


@pytest.mark.integration
def test_a_damaged_optimizer_state_is_not_called_the_last_good_checkpoint(
    small_store, tmp_path, capsys, monkeypatch
):
    """Resumed from a checkpoint whose optimizer state is damaged, training diverged and named
    that same file as the last good checkpoint."""
    from protprof.model.checkpoint import save_checkpoint

    real = protprof.train.loop.objective_weights
    calls = []

    def nan_at_step_14(*args):
        calls.append(1)
        return (float("nan"), 1.0) if len(calls) == 14 else real(*args)

    monkeypatch.setattr(protprof.train.loop, "objective_weights", nan_at_step_14)
    out = tmp_path / "run"
    assert _train(small_store, out) == 1  # stops at step 14, last.pt of step 10 kept
    monkeypatch.setattr(protprof.train.loop, "objective_weights", real)
    last = out / "last.pt"
    good = torch.load(last, weights_only=True)
    # finite but impossible: a negative second moment makes every update NaN
    damaged = {
        **good,
        "optimizer": {**good["optimizer"], "state": dict(good["optimizer"]["state"])},
    }
    first = dict(damaged["optimizer"]["state"][0])
    first["exp_avg_sq"] = -first["exp_avg_sq"] - 1.0
    damaged["optimizer"]["state"][0] = first
    save_checkpoint(last, damaged)
    capsys.readouterr()
    assert _train(small_store, out, resume=True) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the last good checkpoint" not in line, line
    assert line.endswith(
        f"no checkpoint was written since resuming from {last} (step 10), which may itself be "
        "damaged (its optimizer state or weights): resume from an earlier copy or start over"
    ), line
    # NaN or inf in the optimizer state: refused when resuming, in one line.
    first["exp_avg_sq"] = torch.full_like(first["exp_avg_sq"], float("inf"))
    save_checkpoint(last, damaged)
    assert _train(small_store, out, resume=True) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"protprof train: error: {last}: cannot resume, its optimizer state holds NaN or inf "
        "(exp_avg_sq of parameter 0); the file is damaged or was saved after training "
        "diverged: resume from an earlier copy or start over"
    ), err
