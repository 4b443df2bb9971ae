"""Loader and training throughput on the demo store.

1. Per-item random-order reads: `ProfileDataset[i]` vs a bare numpy memmap slicing loop over
   the same chunk files (the peer), and vs reading through zarr-python. Target >= 50% of memmap.
2. The whole path (Dataset + token-budget sampler + collate + MLM masking), one process.
   Target >= 20,000 sequences/s.
3. Padding waste of the sampler on the demo store (target <= 10% of tokens).
4. Training tokens/s on CPU for the tiny and tape-base presets, and model FLOPs utilisation
   against this machine's measured float32 matmul peak.
5. The cost of the readers' checksum checks: the whole path, and one epoch from a freshly
   opened Dataset (open, then every item once: every chunk is checked on first touch), with
   the checks against the same code with the checks switched off (target <= 5%).

Usage: python bench/bench_loader.py [STORE]   (default: results/store/profiles.zarr)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from _results import record  # noqa: E402

from protprof.model.config import PRESETS  # noqa: E402
from protprof.model.encoder import ProteinEncoder, total_loss  # noqa: E402
from protprof.store.zarr_store import ProfileStore  # noqa: E402
from protprof.train.data import (
    ProfileDataset,
    TokenBudgetBatchSampler,
    collate,  # noqa: E402
    mask_tokens,
    profile_targets,
)

ROOT = Path(__file__).resolve().parents[1]


def per_item(store_path: Path, n: int = 20_000) -> dict[str, float]:
    data = ProfileDataset(store_path, "all", max_len=100_000)
    order = np.random.default_rng(0).integers(0, len(data), n)
    data[0]  # open the maps
    start = time.perf_counter()
    for i in order:
        data[int(i)]
    ours = (time.perf_counter() - start) / n
    # The peer: the same chunk files, memory-mapped by hand, sliced per item.
    size = int(data.store.attrs["chunk_rows"])
    n_res = int(data.store.attrs["n_residues"])
    rows = min(size, n_res)
    tokens = np.memmap(store_path / "tokens/c/0", dtype=np.uint8, mode="r", shape=(rows,))
    profiles = np.memmap(store_path / "profiles/c/0/0", dtype=np.uint8, mode="r", shape=(rows, 20))
    offsets = data.store.offsets
    start = time.perf_counter()
    for i in order:
        a, b = offsets[i], offsets[i + 1]
        tokens[a:b], profiles[a:b]
    bare = (time.perf_counter() - start) / n
    z_tokens, z_profiles = (
        zarr.open_array(store_path / "tokens"),
        zarr.open_array(store_path / "profiles"),
    )
    start = time.perf_counter()
    for i in order[:300]:
        a, b = offsets[i], offsets[i + 1]
        z_tokens[a:b], z_profiles[a:b]
    via_zarr = (time.perf_counter() - start) / 300
    return {"dataset": ours, "memmap": bare, "zarr": via_zarr}


def whole_path(store_path: Path, seconds: float = 5.0) -> tuple[float, float]:
    data = ProfileDataset(store_path, "all", max_len=512)
    sampler = TokenBudgetBatchSampler(data.lengths, 8192, seed=0)
    generator = torch.Generator().manual_seed(0)
    sequences, epoch, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        for batch_ids in sampler:
            batch = collate([data[i] for i in batch_ids])
            mask_tokens(batch["tokens"], 0.15, generator)
            profile_targets(batch["profiles"])
            sequences += len(batch_ids)
        epoch += 1
    rate = sequences / (time.perf_counter() - start)
    lengths = data.lengths + 2
    padded = sum(int(lengths[b].max()) * len(b) for b in sampler.batches())
    return rate, 1 - lengths.sum() / padded


@contextmanager
def checks_off() -> Iterator[None]:
    """The readers without their checksum checks (the peer of the checks' cost)."""
    with (
        mock.patch("protprof.store.zarr_store._array_problems", lambda *a, **k: []),
        mock.patch.object(ProfileStore, "_check_chunk", lambda *a: None),
    ):
        yield


def fresh_items(store_path: Path, n: int = 20_000) -> float:
    """Seconds to open a Dataset and read `n` items in random order: the open and the check
    of each chunk at first touch included."""
    order = np.random.default_rng(1).integers(0, len(ProfileDataset(store_path, "all")), n)
    start = time.perf_counter()
    data = ProfileDataset(store_path, "all", max_len=100_000)
    for i in order:
        data[int(i)]
    return time.perf_counter() - start


def first_epoch(store_path: Path) -> float:
    """Seconds to open a Dataset and read every item once (every chunk checked once)."""
    start = time.perf_counter()
    data = ProfileDataset(store_path, "all", max_len=100_000)
    for i in np.random.default_rng(0).permutation(len(data)):
        data[int(i)]
    return time.perf_counter() - start


def checking_cost(store_path: Path) -> dict[str, float]:
    """Checks on vs off, interleaved, best of each."""
    runs: dict[str, list[float]] = {}
    for _ in range(3):
        for on in (True, False):
            with checks_off() if not on else nullcontext():
                suffix = "on" if on else "off"
                for name, measure in (
                    ("items", fresh_items),
                    ("epoch", first_epoch),
                    ("path", lambda p: 1 / whole_path(p, seconds=3.0)[0]),
                ):
                    runs.setdefault(f"{name}_{suffix}", []).append(measure(store_path))
    return {key: min(values) for key, values in runs.items()}


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def train_rate(preset: str, store_path: Path, steps: int) -> tuple[float, float]:
    """Tokens/s and achieved FLOP/s (6 x parameters x tokens, plus attention) of train steps."""
    torch.manual_seed(0)
    model = ProteinEncoder(PRESETS[preset])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = ProfileDataset(store_path, "all", max_len=256)
    sampler = TokenBudgetBatchSampler(data.lengths, 4096, seed=0)
    batches = [collate([data[i] for i in b]) for b in sampler.batches()[: steps + 1]]
    generator = torch.Generator().manual_seed(0)
    tokens = flops = 0.0
    c = model.config
    for k, batch in enumerate(batches):
        if k == 1:  # first step is warm-up
            start = time.perf_counter()
        inputs, labels = mask_tokens(batch["tokens"], 0.15, generator)
        out = model(inputs, labels, profile_targets(batch["profiles"]), batch["residue_mask"])
        total_loss(out, "multitask", 1.0, 1.0).backward()
        optimizer.step()
        optimizer.zero_grad()
        if k >= 1:
            b, t = batch["tokens"].shape
            tokens += b * t
            flops += 6 * model.n_parameters() * b * t + 12 * c.n_layers * b * t * t * c.d_model
    elapsed = time.perf_counter() - start
    return tokens / elapsed, flops / elapsed


def main() -> None:
    store = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results/store/profiles.zarr"
    if not store.exists():
        sys.exit(f"{store} is missing: run `make demo` first (or pass a store)")
    torch.set_num_threads(2)
    item = per_item(store)
    rate, waste = whole_path(store)
    peak = matmul_peak()
    cost = checking_cost(store)
    lines = [
        f"Store: `{store.relative_to(ROOT) if store.is_relative_to(ROOT) else store}`",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| Dataset per item (random order) | {item['dataset'] * 1e6:.1f} µs | |",
        f"| bare numpy memmap slicing (peer) | {item['memmap'] * 1e6:.1f} µs | |",
        f"| zarr-python per item (context) | {item['zarr'] * 1e6:.0f} µs | |",
        f"| Dataset speed / memmap speed | **{item['memmap'] / item['dataset']:.0%}** | >= 50% |",
        f"| whole path, 1 process (seq/s) | **{rate:,.0f}** | >= 20,000 |",
        f"| sampler padding waste | **{waste:.1%}** | <= 10% |",
        f"| measured fp32 matmul peak | {peak / 1e9:.1f} GFLOP/s | |",
        *(
            f"| {what}, checks on / off | {cost[f'{key}_on'] * scale:.3g} / "
            f"{cost[f'{key}_off'] * scale:.3g} {unit}: "
            f"**{cost[f'{key}_on'] / cost[f'{key}_off'] - 1:+.1%}** | {target} |"
            for what, key, scale, unit, target in (
                ("open + 20,000 random items", "items", 1e3, "ms", "<= 5%"),
                ("whole path, time per sequence", "path", 1e6, "µs", "<= 5%"),
                ("open + every item once (context)", "epoch", 1e3, "ms", ""),
            )
        ),
    ]
    for preset, steps in (("tiny", 20), ("tape-base", 3)):
        tok_s, achieved = train_rate(preset, store, steps)
        lines.append(
            f"| train {preset}, CPU (tokens/s; MFU) | {tok_s:,.0f}; {achieved / peak:.0%} | |"
        )
    record("loader and training throughput", lines)


if __name__ == "__main__":
    main()
