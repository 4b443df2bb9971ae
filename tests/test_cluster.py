"""Training at cluster scale: the precision setting, resuming on another world size with exact
sample accounting, several nodes through torchrun's c10d rendezvous, the global batch."""

from __future__ import annotations

import pytest
import torch

from protprof.cli import main
from protprof.errors import ConfigError
from protprof.train import Trainer, load_config, resolve_precision

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
