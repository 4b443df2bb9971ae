"""Model losses, objectives, trainer resume (bit-identical), DDP on gloo, config errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch
from helpers import DEMO_DB

import protprof.train.loop
from protprof.alignments.profiles import ProfileParams
from protprof.alphabet import IGNORE
from protprof.cli import main
from protprof.errors import ConfigError, TrainingError
from protprof.jackhmmer import SearchParams
from protprof.model.checkpoint import load_checkpoint, load_model
from protprof.model.config import PRESETS
from protprof.model.encoder import ProteinEncoder, mlm_loss, profile_kl, total_loss
from protprof.queries.fasta import read_fasta
from protprof.queries.ingest import IngestParams, select_records
from protprof.stages import build
from protprof.train.config import load_config
from protprof.train.data import (
    ProfileDataset,
    TokenBudgetBatchSampler,
    loader,
    mask_tokens,
    profile_targets,
)
from protprof.train.loop import Trainer, lr_factor, train


def test_profile_kl_is_zero_at_target_and_positive_elsewhere():
    target = torch.softmax(torch.randn(2, 7, 20), -1)
    mask = torch.ones(2, 7, dtype=torch.bool)
    assert profile_kl(target.log(), target, mask).abs() < 1e-5
    assert profile_kl(torch.zeros(2, 7, 20), target, mask) > 0.01
    mask[:, 3:] = False  # padding never counts
    garbage = torch.randn(2, 7, 20) * 50
    garbage[:, :3] = target[:, :3].log()
    assert profile_kl(garbage, target, mask).abs() < 1e-5


def test_mlm_loss_of_a_batch_without_masked_positions_is_zero_not_nan():
    """cross_entropy's mean over no position is 0/0; the loss's mean is 0, its gradient 0."""
    logits = torch.randn(2, 5, 33, requires_grad=True)
    labels = torch.full((2, 5), IGNORE)
    for reduction in ("mean", "sum"):
        loss = mlm_loss(logits, labels, reduction)
        loss.backward()
        assert loss.item() == 0.0 and logits.grad is not None
        assert torch.equal(logits.grad, torch.zeros_like(logits))
    labels[0, 1] = 7  # one masked position: mean == sum == its cross-entropy
    expected = torch.nn.functional.cross_entropy(logits[0, 1:2], labels[0, 1:2])
    torch.testing.assert_close(mlm_loss(logits, labels), expected)
    torch.testing.assert_close(mlm_loss(logits, labels, "sum"), expected)


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
def test_two_process_gloo_ddp_sees_disjoint_data(small_store, tmp_path):
    script = tmp_path / "ddp_check.py"
    script.write_text(
        "import torch.distributed as dist, sys\n"
        "from protprof.train.loop import Trainer\n"
        "from protprof.train.config import load_config\n"
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
        "s = t.train_step(t._batches())\n"
        "L = [None, None]; dist.all_gather_object(L, s['loss'])\n"
        "assert L[0] == L[1], L  # the step's token-weighted loss over both ranks\n"
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


@pytest.mark.integration
def test_gradient_accumulation_weighs_micro_batches_by_their_residues(small_store, tmp_path):
    """accum_steps=2 takes one optimizer step on the profile KL summed over both micro-batches'
    residues divided by their count: the same update as computed by hand (profile objective:
    no masking randomness)."""
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
    residues = [int(b["residue_mask"].sum()) for b in (first, second)]
    assert residues[0] != residues[1]  # else token and micro-batch weighting agree
    by_hand.network.train()
    sums = [
        by_hand.network(**by_hand._inputs(b, None), reduction="sum")["profile_loss"]
        for b in (first, second)
    ]
    ((sums[0] + sums[1]) / sum(residues)).backward()
    torch.nn.utils.clip_grad_norm_(by_hand.model.parameters(), 1.0)
    by_hand.optimizer.step()
    expected = (sums[0].item() + sums[1].item()) / sum(residues)
    assert stats["loss"] == pytest.approx(expected, rel=1e-6)
    assert stats["tokens"] == sum(residues)
    assert accumulated.step == 1 and accumulated.sampler.state_dict()["consumed"] == 2
    for (name, a), (_, b) in zip(
        accumulated.model.state_dict().items(), by_hand.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


@pytest.fixture(scope="module")
def short_store(tmp_path_factory, demo_database):
    """A real store of 12 short UniProtKB sequences (20-26 residues) from the demo database,
    searched against it: masking 15 % draws no position in such a sequence 1.5-4 % of the time."""
    records = [r for r in read_fasta(DEMO_DB) if 20 <= len(r.sequence) <= 26][:12]
    assert len(records) == 12
    tmp = tmp_path_factory.mktemp("short")
    queries = tmp / "short.fasta"
    queries.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    params = IngestParams(valid_fraction=0.0, test_fraction=0.0)
    return build(
        select_records([queries], params),
        demo_database,
        tmp / "short.zarr",
        1,
        params,
        SearchParams(iterations=1),
        ProfileParams(),
    )


@pytest.mark.integration
@pytest.mark.parametrize("objective", ["mlm", "multitask"])
def test_training_through_micro_batches_without_masked_positions(
    short_store, tmp_path, monkeypatch, objective
):
    """Single-sequence micro-batches (max_tokens=28: a 20-26-residue sequence is 22-28 tokens
    with its specials, two are more) over 150 steps draw several empty masks; training goes
    through them with finite losses instead of stopping with NaN."""
    empty = []
    real = protprof.train.loop.mask_tokens

    def counting(tokens, p, generator):
        inputs, labels = real(tokens, p, generator)
        empty.append(bool((labels == IGNORE).all()))
        return inputs, labels

    monkeypatch.setattr(protprof.train.loop, "mask_tokens", counting)
    settings = [
        f"store={short_store}",
        f"out_dir={tmp_path}",
        f"objective={objective}",
        "max_tokens=28",
        "max_len=64",
        "max_steps=150",
        "eval_every=50",
        "checkpoint_every=150",
        "warmup_steps=10",
        "seed=1",
    ]
    trainer = train(load_config(None, settings))
    assert trainer.step == 150 and len(empty) == 150
    assert sum(empty) >= 2, sum(empty)  # the case that used to stop training
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train_loss"]) for r in rows)
