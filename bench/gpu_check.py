"""The work of bench/gpu_check.sh (see there): correctness checks and a speed table.

On a GPU: the speed of each preset is measured on cuda:0 in bf16 (fp16 where the GPU has no
bf16), protprof's `ProteinEncoder` and transformers' `EsmForMaskedLM` (SDPA attention, plus
the same profile head) alternating over rounds, on the same batches of a real profile store.
MFU = tokens/s x training FLOPs per token
(`protprof.workflow_params.train_flops_per_token`, attention at the batches' mean width) / the
GPU's dense bf16 peak (a table of common GPUs, or --peak-tflops). With --cpu-smoke every step
runs on CPU at a small scale (tiny and esm2-8m, two processes for the DDP run) so CI keeps the
script working; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 (fp16 for V100) tensor-core peaks, TFLOP/s, by a part of the device name.
PEAK_TFLOPS = {
    "H200": 989,
    "H100": 989,  # SXM; PCIe 756: pass --peak-tflops
    "GH200": 989,
    "A100": 312,
    "A800": 312,
    "L40S": 362,
    "L40": 181,
    "A40": 150,
    "A10": 125,
    "L4": 121,
    "V100": 125,
    "RTX 4090": 165,
    "RTX 3090": 71,
}
MFU_TARGET = ("esm2-150m", 0.45)  # on one H100-class GPU, bf16
PEER_TARGET = 0.9  # protprof tokens/s over transformers'
# preset: (timed steps per round, rounds); the smoke's are the code paths at a small scale
GPU_PLAN = {"tiny": (30, 3), "esm2-8m": (20, 3), "esm2-35m": (10, 3), "esm2-150m": (5, 3)}
SMOKE_PLAN = {"tiny": (2, 1), "esm2-8m": (1, 1)}


def _batches(store: Path, max_tokens: int, max_len: int, count: int) -> list[dict]:
    from protprof.train.data import ProfileDataset, TokenBudgetBatchSampler, collate

    data = ProfileDataset(store, "all", max_len=max_len)
    sampler = TokenBudgetBatchSampler(data.lengths, max_tokens, seed=0)
    return [collate([data[i] for i in b]) for b in sampler.batches()[:count]]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _step(model, batch, generator, device, dtype) -> float:
    from protprof.model.encoder import total_loss
    from protprof.train.data import mask_tokens, profile_targets

    inputs, labels = mask_tokens(batch["tokens"], 0.15, generator)
    args = [inputs, labels, profile_targets(batch["profiles"]), batch["residue_mask"]]
    with _autocast(device, dtype):
        out = model(*[a.to(device) for a in args])
        loss = total_loss(out, "multitask", 1.0, 1.0)
    loss.backward()
    return float(loss.detach())


def rate(model, batches, steps, device, dtype, warmup=2) -> float:
    """Padded tokens/s of `steps` multitask training steps (AdamW) after warm-up steps."""
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    tokens, start = 0, 0.0
    for k in range(steps + warmup):
        if k == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = batches[k % len(batches)]
        _step(model, batch, generator, device, dtype)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch["tokens"].numel() if k >= warmup else 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def check_forward(batch, device, dtype) -> list[tuple[str, bool, str]]:
    """CPU fp32 vs the device in fp32 (TF32 off), and a finite loss under low precision."""
    from protprof.model.config import PRESETS
    from protprof.model.encoder import ProteinEncoder
    from protprof.train.data import profile_targets

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = ProteinEncoder(PRESETS["esm2-8m"]).eval()
    args = [batch["tokens"], None, profile_targets(batch["profiles"]), batch["residue_mask"]]
    with torch.no_grad():
        cpu = model(*args)["profile_logits"]
        moved = model.to(device)(*[a.to(device) if a is not None else None for a in args])
    diff = float((moved["profile_logits"].float().cpu() - cpu).abs().max())
    checks = [("CPU vs device forward (esm2-8m, fp32)", diff < 1e-3, f"max abs diff {diff:.2e}")]
    low = dtype or torch.bfloat16  # the smoke runs bf16 autocast on CPU
    generator = torch.Generator().manual_seed(0)
    model.train()
    loss = _step(model, batch, generator, device, low)
    name = str(low).removeprefix("torch.")
    checks.append((f"finite {name} training loss", math.isfinite(loss), f"loss {loss:.4f}"))
    return checks


def check_ddp(store: Path, processes: int, device: str, smoke: bool) -> tuple[str, bool, str]:
    """20 steps of `protprof train` on `processes` ranks (torchrun, NCCL or gloo)."""
    settings = ["max_steps=20", "eval_every=20", "checkpoint_every=20", f"device={device}"]
    settings += ["max_tokens=1024", "max_len=128"] if smoke else ["max_tokens=8192"]
    with tempfile.TemporaryDirectory() as out:
        torchrun = Path(sys.executable).parent / "torchrun"
        command = [str(torchrun), "--standalone", "--nproc-per-node", str(processes)]
        command += ["-m", "protprof.cli", "train", "--store", str(store), "--out-dir", out]
        run = subprocess.run([*command, "--set", *settings], capture_output=True, text=True)
        metrics = Path(out) / "metrics.jsonl"
        ok = run.returncode == 0 and metrics.exists()
        last = metrics.read_text().splitlines()[-1] if ok else run.stderr.strip()[-300:]
    import json

    detail = f"train_loss {json.loads(last)['train_loss']:.4f}" if ok else last
    return (f"20-step DDP run on {processes} {device} processes", ok, detail)


def speed(store, plan, device, dtype, peak) -> list[str]:
    from bench_model import EsmWithProfileHead

    from protprof.model.config import PRESETS
    from protprof.model.encoder import ProteinEncoder
    from protprof.workflow_params import train_flops_per_token

    smoke = device.type == "cpu"
    batches = _batches(store, 1024, 128, 4) if smoke else _batches(store, 16384, 512, 16)
    width = statistics.mean(b["tokens"].shape[1] for b in batches)
    rows = []
    for preset, (steps, rounds) in plan.items():
        config = PRESETS[preset]
        rates: dict[str, list[float]] = {"protprof": [], "transformers": []}
        for _ in range(rounds):
            for name, build in (
                ("protprof", ProteinEncoder),
                ("transformers", EsmWithProfileHead),
            ):
                torch.manual_seed(0)
                model = build(config)
                rates[name].append(rate(model, batches, steps, device, dtype, 1 if smoke else 2))
                print(preset, name, f"{rates[name][-1]:,.0f} tokens/s", flush=True)
        ours, theirs = (statistics.median(rates[n]) for n in ("protprof", "transformers"))
        flops = train_flops_per_token(config, int(width))
        mfu = [f"{r * flops / (peak * 1e12):.1%}" if peak else "n/a" for r in (ours, theirs)]
        rows.append(
            f"| {preset} | {ours:,.0f} | {mfu[0]} | {theirs:,.0f} | {mfu[1]} | "
            f"**{ours / theirs:.2f}x** |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="the code paths on CPU, small")
    p.add_argument("--store", type=Path, help="a profile store (default: the demo store)")
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (for MFU)")
    p.add_argument("--out", type=Path, help="the markdown report (default bench/gpu_check-*.md)")
    args = p.parse_args(argv)
    gpus = torch.cuda.device_count()
    if not args.cpu_smoke and not gpus:
        print("gpu_check: no CUDA device here; --cpu-smoke runs the code paths on CPU")
        return 2
    if args.store is None:
        from bench_model import demo_store

        args.store = demo_store()
    if args.cpu_smoke:
        device, dtype, name, plan = torch.device("cpu"), None, "cpu-smoke", SMOKE_PLAN
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    else:
        device, plan = torch.device("cuda", 0), GPU_PLAN
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    started = time.perf_counter()
    batch = _batches(args.store, 2048, 256, 1)[0]
    checks = check_forward(batch, device, dtype)
    processes = gpus if not args.cpu_smoke else 2
    checks.append(check_ddp(args.store, processes, device.type, args.cpu_smoke))
    rows = speed(args.store, plan, device, dtype, peak)
    precision = str(dtype).removeprefix("torch.") if dtype else "fp32"
    lines = [
        f"# protprof GPU check: {name}",
        "",
        f"{gpus} GPU(s); torch {torch.__version__}; speed on {device} in {precision}; "
        f"peak {peak or 'unknown'} TFLOP/s; {time.perf_counter() - started:.0f} s in all.",
        "",
        "| check | result | detail |",
        "|---|---|---|",
        *[f"| {what} | {'PASS' if ok else 'FAIL'} | {detail} |" for what, ok, detail in checks],
        "",
        "| preset | protprof tokens/s | MFU | transformers tokens/s | MFU | protprof / "
        "transformers |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Targets: {MFU_TARGET[0]} at >= {MFU_TARGET[1]:.0%} MFU in bf16 on one H100-class GPU; "
        f"protprof >= {PEER_TARGET}x transformers' tokens/s. Padded tokens of the same "
        "batches (a real profile store, <= 16,384 tokens per batch on GPU, 1,024 on CPU); "
        "MLM + profile loss, AdamW; medians of rounds alternating the two.",
    ]
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    out = args.out or ROOT / "bench" / f"gpu_check-{slug}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
