"""Model losses, objectives, trainer resume (bit-identical), DDP on gloo, config errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from protprof.cli import main
from protprof.data import (
    ProfileDataset,
    TokenBudgetBatchSampler,
    loader,
    mask_tokens,
    profile_targets,
)
from protprof.errors import ConfigError, TrainingError
from protprof.model import PRESETS, ProteinEncoder, profile_kl, total_loss
from protprof.train import Trainer, load_checkpoint, load_config, load_model, lr_factor, train


def test_profile_kl_is_zero_at_target_and_positive_elsewhere():
    target = torch.softmax(torch.randn(2, 7, 20), -1)
    mask = torch.ones(2, 7, dtype=torch.bool)
    assert profile_kl(target.log(), target, mask).abs() < 1e-5
    assert profile_kl(torch.zeros(2, 7, 20), target, mask) > 0.01
    mask[:, 3:] = False  # padding never counts
    garbage = torch.randn(2, 7, 20) * 50
    garbage[:, :3] = target[:, :3].log()
    assert profile_kl(garbage, target, mask).abs() < 1e-5


@pytest.mark.parametrize("objective", ["mlm", "profile", "multitask"])
def test_loss_falls_on_a_fixed_batch(small_store, objective):
    torch.manual_seed(0)
    data = ProfileDataset(small_store, "all", max_len=128)
    batch = next(iter(loader(data, TokenBudgetBatchSampler(data.lengths, 2048, seed=0))))
    model = ProteinEncoder(PRESETS["tiny"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    inputs, labels = mask_tokens(batch["tokens"], 0.15, torch.Generator().manual_seed(0))
    if objective == "profile":
        inputs, labels = batch["tokens"], None
    losses = []
    for _ in range(25):
        out = model(inputs, labels, profile_targets(batch["profiles"]), batch["residue_mask"])
        loss = total_loss(out, objective, 1.0, 1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def _config(store, out, **extra):
    values = {
        "store": str(store),
        "out_dir": str(out),
        "max_steps": 12,
        "eval_every": 4,
        "checkpoint_every": 4,
        "max_tokens": 2048,
        "max_len": 128,
        "warmup_steps": 2,
        "model_overrides": {"dropout": 0.1},
        **extra,
    }
    return load_config(None, [f"{k}={v}" for k, v in values.items()])


def test_interrupted_and_resumed_training_is_bit_identical(small_store, tmp_path):
    full = train(_config(small_store, tmp_path / "full"))
    with pytest.raises(TrainingError, match="stopped at step 6"):
        train(_config(small_store, tmp_path / "cut", stop_after=6))  # checkpointed at step 6
    resumed = train(_config(small_store, tmp_path / "cut"), resume=True)
    assert resumed.step == full.step == 12
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert (tmp_path / "full" / "curves.png").stat().st_size > 1000
    rows = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3 and "valid_profile_kl" in rows[-1]
    model = load_model(tmp_path / "full" / "checkpoint.pt")  # the trained weights, exactly
    for (name, a), (_, b) in zip(
        model.state_dict().items(), full.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_resume_with_another_model_is_refused(small_store, tmp_path):
    train(_config(small_store, tmp_path, max_steps=2))
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="model config differs.*n_layers"):
        train(
            _config(small_store, tmp_path, max_steps=4, model_overrides={"n_layers": 3}),
            resume=True,
        )
    with pytest.raises(ConfigError, match="pass --resume"):
        train(_config(small_store, tmp_path, max_steps=4))
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # nothing overwritten


def test_bad_training_config_is_one_clear_error(small_store, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective: multitask\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(bad), "--store", str(small_store)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown setting 'learning_rate'" in err[0]
    assert main(["train", "--store", str(small_store), "--set", "objective=both"]) == 1
    assert "objective must be one of" in capsys.readouterr().err
    assert (
        main(
            ["train", "--store", str(tmp_path / "missing.zarr"), "--out-dir", str(tmp_path / "o")]
        )
        == 1
    )
    assert "not a protprof store" in capsys.readouterr().err


def test_two_process_gloo_ddp_sees_disjoint_data(small_store, tmp_path):
    script = tmp_path / "ddp_check.py"
    script.write_text(
        "import torch.distributed as dist, sys\n"
        "from protprof.train import load_config, Trainer\n"
        f"c = load_config(None, ['store={small_store}', 'out_dir={tmp_path / 'o'}', "
        "'max_steps=3', 'eval_every=3', 'max_tokens=512', 'max_len=128'])\n"
        "t = Trainer(c)\n"
        "ids = sorted(i for b in t.sampler.batches() for i in b.tolist())\n"
        "t.fit()\n"
        "out = [None, None]\n"
        "dist.all_gather_object(out, ids)\n"
        "assert not set(out[0]) & set(out[1]) and len(out[0]) and len(out[1])\n"
        "w = [p.detach().clone() for p in t.model.parameters()]\n"
        "g = [None, None]; dist.all_gather_object(g, [x.sum().item() for x in w])\n"
        "assert g[0] == g[1]\n"
        "print('rank', dist.get_rank(), 'ok', len(ids))\n"
    )
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    # Own process group: on a timeout the workers die with torchrun instead of lingering.
    proc = subprocess.Popen(
        [torchrun, "--standalone", "--nproc-per-node", "2", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count("ok") == 2
    assert load_checkpoint(tmp_path / "o" / "last.pt")["step"] == 3  # Trainer.fit: rolling only


def test_lr_factor_warms_up_linearly_then_decays_by_cosine():
    assert [lr_factor(s, 4, 14, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 14, 0.1) == 1.0  # the peak, where the decay starts
    assert lr_factor(9, 4, 14, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way: cos = 0
    assert lr_factor(14, 4, 14, 0.1) == pytest.approx(0.1)  # the floor at max_steps
    assert lr_factor(99, 4, 14, 0.1) == pytest.approx(0.1)  # and after it
    assert lr_factor(0, 0, 10, 0.0) == 1.0  # no warmup


def test_gradient_accumulation_is_the_mean_of_the_micro_batch_losses(small_store, tmp_path):
    """accum_steps=2 takes one optimizer step on the mean loss of two micro-batches: the same
    update as summing both losses by hand (profile objective: no masking randomness)."""
    settings = [
        f"store={small_store}",
        "objective=profile",
        "max_tokens=1024",
        "max_len=128",
        "warmup_steps=0",
    ]
    accumulated = Trainer(load_config(None, [*settings, "accum_steps=2", f"out_dir={tmp_path}/a"]))
    by_hand = Trainer(load_config(None, [*settings, f"out_dir={tmp_path}/b"]))
    stats = accumulated.train_step(accumulated._batches())
    batches = by_hand._batches()
    first, second = next(batches), next(batches)
    by_hand.network.train()
    losses = [
        total_loss(by_hand.network(**by_hand._inputs(b, None)), "profile", 1.0, 1.0)
        for b in (first, second)
    ]
    ((losses[0] + losses[1]) / 2).backward()
    torch.nn.utils.clip_grad_norm_(by_hand.model.parameters(), 1.0)
    by_hand.optimizer.step()
    assert stats["loss"] == pytest.approx((losses[0].item() + losses[1].item()) / 2, rel=1e-6)
    assert stats["tokens"] == int(first["residue_mask"].sum() + second["residue_mask"].sum())
    assert accumulated.step == 1 and accumulated.sampler.state_dict()["start_batch"] == 2
    for (name, a), (_, b) in zip(
        accumulated.model.state_dict().items(), by_hand.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
