"""Loader: masking, sampler determinism / DDP / resume, collation, spawn workers."""

from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np
import pytest
import torch

from protprof.alphabet import CLS, EOS, FIRST_RESIDUE, IGNORE, MASK, PAD
from protprof.store.zarr_store import open_store
from protprof.train.data import (
    ProfileDataset,
    TokenBudgetBatchSampler,
    collate,
    loader,
    mask_tokens,
    profile_targets,
)


def _tokens(b: int = 64, t: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(FIRST_RESIDUE, FIRST_RESIDUE + 20, (b, t), generator=g)
    tokens[:, 0], tokens[:, -1], tokens[::2, 200:] = CLS, EOS, PAD
    return tokens


def test_masking_rate_specials_and_determinism():
    tokens = _tokens()
    inputs, labels = mask_tokens(tokens, 0.15, torch.Generator().manual_seed(1))
    residue = tokens >= FIRST_RESIDUE
    chosen = labels != IGNORE
    assert not chosen[~residue].any()  # never specials or padding
    assert (inputs[~residue] == tokens[~residue]).all()
    assert abs(chosen.sum().item() / residue.sum().item() - 0.15) < 0.01
    assert (labels[chosen] == tokens[chosen]).all()
    masked = (inputs == MASK)[chosen].float().mean().item()
    unchanged = (inputs == tokens)[chosen].float().mean().item()
    assert abs(masked - 0.8) < 0.03 and 0.08 < unchanged < 0.16  # 10% kept + 1/20 of random
    again = mask_tokens(tokens, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_dataset_matches_store_and_pickles_small(small_store):
    store = open_store(small_store)
    data = ProfileDataset(small_store, "all", max_len=10_000)
    tokens, profile = data[3]
    np.testing.assert_array_equal(tokens, store.tokens(3))
    np.testing.assert_array_equal(profile, store.quantised_profile(3))
    assert len(pickle.dumps(data)) < 20_000  # settings and the store's identity, no arrays


def test_crop_is_deterministic_per_epoch(small_store):
    data = ProfileDataset(small_store, "all", max_len=50, seed=3)
    long = int(np.argmax(data.full_lengths))
    first = data[long][0].copy()
    assert len(first) == 50 and np.array_equal(first, data[long][0])
    starts = set()
    for epoch in range(6):
        data.set_epoch(epoch)
        starts.add(data[long][0].tobytes())
    assert len(starts) > 1


def test_sampler_budget_determinism_ddp_and_resume():
    lengths = np.random.default_rng(0).integers(20, 500, size=400)
    s = TokenBudgetBatchSampler(lengths, 4096, seed=5)
    batches = list(s)
    assert all((lengths[b].max() + 2) * len(b) <= 4096 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(400))
    assert batches == list(TokenBudgetBatchSampler(lengths, 4096, seed=5))
    s.set_epoch(1)
    assert list(s) != batches
    padded = sum((lengths[b].max() + 2) * len(b) for b in batches)
    assert 1 - (lengths + 2).sum() / padded < 0.10  # padding waste
    ranks = [
        list(TokenBudgetBatchSampler(lengths, 4096, 5, num_replicas=2, rank=r)) for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1])
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}
    resumed = TokenBudgetBatchSampler(lengths, 4096, seed=5)
    resumed.load_state_dict({"epoch": 0, "start_batch": 7, "seed": 5})  # an older checkpoint
    assert list(resumed) == batches[7:]


def test_stream_reads_every_batch_once_per_epoch_on_any_world_size():
    """Training's stream: 2 ranks, then (resumed mid-epoch) 3, then 1, read together every
    batch of each epoch exactly once, in order, none dropped at an epoch's end."""
    lengths = np.random.default_rng(1).integers(20, 500, size=105)
    single = TokenBudgetBatchSampler(lengths, 2048, seed=2)
    epochs = [single.epoch_batches(e) for e in range(3)]
    assert len(epochs[0]) % 2 == 1  # an odd epoch: a per-epoch split would drop a batch
    read: list[list[tuple[int, int]]] = []
    position = None
    for world, steps in ((2, 7), (3, 5), (1, 9)):
        ranks = [
            TokenBudgetBatchSampler(lengths, 2048, 2, num_replicas=world, rank=r)
            for r in range(world)
        ]
        for s in ranks:
            if position is not None:
                s.load_state_dict(position)
        streams = [s.stream() for s in ranks]
        for _ in range(steps):  # a step: one batch per rank, in rank order
            read += [next(stream) for stream in streams]
            for s in ranks:
                s.advance(world)
        position = ranks[0].state_dict()
        assert all(s.state_dict() == position for s in ranks)
    assert position["consumed"] == len(read) == 2 * 7 + 3 * 5 + 9
    expected = [[(e, int(i)) for i in b] for e, batches in enumerate(epochs) for b in batches]
    assert read == expected[: len(read)]
    assert position["epoch"] == 1 and position["offset"] == len(read) - len(epochs[0])


def test_collate_lines_up_profiles_with_tokens():
    items = [
        (np.array([5, 6, 7], np.uint8), np.full((3, 20), 255 // 20, np.uint8)),
        (np.array([8], np.uint8), np.eye(20, dtype=np.uint8)[[2]] * 255),
    ]
    batch = collate(items)
    assert batch["tokens"].tolist() == [[CLS, 5, 6, 7, EOS], [CLS, 8, EOS, PAD, PAD]]
    assert batch["residue_mask"].tolist() == [[0, 1, 1, 1, 0], [0, 1, 0, 0, 0]]
    assert batch["profiles"].shape == (2, 5, 20)
    targets = profile_targets(batch["profiles"])
    assert batch["profiles"].dtype == torch.uint8 and targets.dtype == torch.float32
    assert targets[1, 1, 2] == 1.0 and targets[1, 2].sum() == 0
    torch.testing.assert_close(targets[0, 1:4].sum(-1), torch.full((3,), 20 * (255 // 20) / 255))


@pytest.mark.integration
def test_loader_with_two_spawn_workers(small_store):
    data = ProfileDataset(small_store, "all", max_len=128)
    sampler = TokenBudgetBatchSampler(data.lengths, 2048, seed=0)
    serial = [b["tokens"] for b in loader(data, sampler)]
    spawned = [
        b["tokens"] for b in loader(data, sampler, num_workers=2, multiprocessing_context="spawn")
    ]
    assert len(serial) == len(spawned) > 1
    assert all(torch.equal(a, b) for a, b in zip(serial, spawned, strict=True))


def test_dataset_pickles_small_and_reopens_the_store(small_store):
    """A DataLoader worker receives settings and the store's identity, not index arrays
    (which grow with the store: ~80 MB per worker at a million sequences)."""
    data = ProfileDataset(small_store, "train", max_len=64, seed=3)
    data.set_epoch(2)
    payload = pickle.dumps(data)
    assert len(payload) < 4096 and data.store.offsets.tobytes() not in payload
    copy = pickle.loads(payload)
    assert (copy.epoch, copy.max_len, len(copy)) == (2, 64, len(data))
    for i in range(len(data)):
        for mine, theirs in zip(data[i], copy[i], strict=True):
            np.testing.assert_array_equal(mine, theirs)


@pytest.mark.integration
def test_a_loader_worker_survives_the_stop_signals(small_store):
    """SLURM signals every process of a job step; the trainer saves on SIGTERM or SIGUSR1, so
    its loader's workers must outlive them (a killed worker fails the next batch)."""
    data = ProfileDataset(small_store, "all", max_len=64)
    batches = iter(loader(data, TokenBudgetBatchSampler(data.lengths, 70, seed=0), 1))
    next(batches)
    for number in (signal.SIGTERM, signal.SIGUSR1):
        for worker in batches._workers:  # type: ignore[attr-defined]
            os.kill(worker.pid, number)
    time.sleep(0.5)  # the signals arrive
    assert len(list(batches)) == len(data) - 1  # one sequence per batch


def test_a_store_with_an_unknown_split_code_is_refused_not_dropped(small_store, tmp_path, capsys):
    """A row whose split code is none of train/valid/test was silently in no split."""
    import dataclasses

    from protprof.cli import main
    from protprof.store.zarr_store import write_stores

    source = open_store(small_store)
    data = source.read_all()
    split = data.split.copy()
    split[5] = 3
    bad = write_stores(
        tmp_path / "bad.zarr", [dataclasses.replace(data, split=split)], dict(source.attrs)
    )
    argv = ["train", "--store", str(bad), "--out-dir", str(tmp_path / "run")]
    assert main([*argv, "--set", "max_steps=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"{bad}: 1 sequences have a split code other than 0" in err[0]
    assert repr(data.ids[5]) in err[0] and not (tmp_path / "run" / "last.pt").exists()
