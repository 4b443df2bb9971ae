"""Sharded (FSDP2) against replicated (DDP) training on CPU: two gloo processes, the same
batches, the trainer's own step (`Trainer.train_step`: token-weighted multitask loss, clipping,
AdamW).

For each preset, rounds alternate the strategies; each round builds a fresh trainer, runs 2
warm-up steps, then times `steps` steps. Reports the median seconds per step of each strategy
and FSDP/DDP (target for `tiny`: <= 1.5x). FSDP gathers every block's parameters before its
forward and again before its backward and reduce-scatters its gradients; DDP all-reduces the
gradients once, in buckets: on a model this small, the extra collectives are FSDP's cost.

Usage: python bench/bench_fsdp.py [STORE]   (default: bench_model.py's 48-query demo store)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import record  # noqa: E402

# preset: (timed steps per round, rounds per strategy)
PLAN = {"tiny": (20, 3), "esm2-8m": (4, 2)}
STRATEGIES = ("ddp", "fsdp")


def worker(store: str) -> None:
    """Under torchrun: time both strategies; rank 0 prints the seconds per step as JSON."""
    import torch.distributed as dist

    from protprof.train.config import load_config
    from protprof.train.loop import Trainer

    times: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as out:
        for preset, (steps, rounds) in PLAN.items():
            times[preset] = {s: [] for s in STRATEGIES}
            for _ in range(rounds):
                for strategy in STRATEGIES:
                    settings = [f"store={store}", f"out_dir={out}", f"model={preset}"]
                    settings += [f"strategy={strategy}", "max_tokens=4096", "max_len=512"]
                    trainer = Trainer(load_config(None, settings))
                    batches = trainer._batches()
                    for _ in range(2):
                        trainer.train_step(batches)
                    dist.barrier()
                    start = time.perf_counter()
                    for _ in range(steps):
                        trainer.train_step(batches)
                    dist.barrier()
                    times[preset][strategy].append((time.perf_counter() - start) / steps)
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps(times))
    dist.destroy_process_group()


def main() -> None:
    from bench_model import demo_store

    store = sys.argv[1] if len(sys.argv) > 1 else str(demo_store())
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--standalone", "--nproc-per-node", "2", __file__, "--worker"]
    run = subprocess.run([*command, store], capture_output=True, text=True, check=False)
    if run.returncode:
        sys.exit(run.stderr[-3000:])
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    times = json.loads(line.removeprefix("RESULT "))
    lines = [
        "Two gloo processes on this machine's cores, OMP_NUM_THREADS=1 each (torchrun's "
        "default), `Trainer.train_step`, max_tokens 4096 per micro-batch, median of rounds "
        "that alternate the strategies.",
        "",
        "| preset | DDP s/step | FSDP s/step | FSDP / DDP | target |",
        "|---|---:|---:|---:|---|",
    ]
    for preset, by in times.items():
        ddp, fsdp = (statistics.median(by[s]) for s in STRATEGIES)
        target = "<= 1.5x" if preset == "tiny" else "(information)"
        lines.append(f"| {preset} | {ddp:.4f} | {fsdp:.4f} | **{fsdp / ddp:.2f}x** | {target} |")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    lines += [
        "",
        f"Command: `python bench/bench_fsdp.py` (OMP_NUM_THREADS={threads} outside torchrun).",
    ]
    record("training: FSDP2 vs DDP step, two CPU processes (bench_fsdp.py)", lines)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker(sys.argv[sys.argv.index("--worker") + 1])
    else:
        main()
