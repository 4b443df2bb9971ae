"""A training run's folder (`out_dir`) and its protocol.

While training: the rolling checkpoint `last.pt` (everything needed to continue
bit-identically: model, optimizer, scheduler, sampler position, RNG states, settings) and
`last-metrics.jsonl` (a line per validation). When `max_steps` is reached they are published as
`checkpoint.pt`, `metrics.jsonl` and `curves.png` (each renamed into place when complete) and
removed. The rolling files are not workflow outputs, so a killed job keeps them and its rerun
continues from them. One run per `out_dir` (a lock).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from protprof.atomic import atomic_output, claim_output
from protprof.errors import ConfigError

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"  # published when training ends
METRICS = "metrics.jsonl"
CURVES = "curves.png"
LAST = "last.pt"  # rolling checkpoint, kept after a kill
LAST_METRICS = "last-metrics.jsonl"


def plot_metrics(metrics: Path, out: Path) -> None:
    """Training and validation curves from metrics.jsonl, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    keys = [
        k
        for k in (
            "train_loss",
            "train_mlm_loss",
            "train_profile_loss",
            "valid_mlm_perplexity",
            "valid_profile_kl",
        )
        if any(k in r for r in rows)
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def resume_source(out: Path, resume: bool) -> Path | None:
    """The checkpoint to continue from: the rolling one of an interrupted run, else the
    published one of a finished run; None to start afresh. Without `resume`, either is refused
    (starting over must not silently replace them)."""
    found = next((p for p in (out / LAST, out / CHECKPOINT) if p.exists()), None)
    if found is not None and not resume:
        raise ConfigError(
            f"{found} exists: pass --resume to continue it, or remove it to start over"
        )
    return found


def _rolling_metrics(out: Path, source: Path | None, step: int) -> None:
    """Start last-metrics.jsonl from `source`'s lines up to `step`: the lines a killed run
    wrote after its last checkpoint are dropped, as the resumed run writes them again."""
    rows = source.read_text().splitlines() if source is not None and source.exists() else []
    kept = []
    for row in rows:
        try:
            if json.loads(row)["step"] <= step:
                kept.append(row)
        except (ValueError, KeyError, TypeError):
            pass  # a line cut by the kill
    if len(kept) < len(rows):
        log.info("metrics: dropped %d lines after step %d", len(rows) - len(kept), step)
    with atomic_output(out / LAST_METRICS) as tmp:
        tmp.write_text("".join(f"{row}\n" for row in kept))


def publish(out: Path) -> None:
    """Publish a finished run: checkpoint.pt, metrics.jsonl and curves.png, each renamed into
    place when complete; then remove the rolling files (a kill before that only republishes)."""
    _link(out / LAST, out / CHECKPOINT)
    with atomic_output(out / METRICS) as tmp:
        shutil.copyfile(out / LAST_METRICS, tmp)
    plot_metrics(out / METRICS, out / CURVES)
    for rolling in (LAST_METRICS, LAST):
        (out / rolling).unlink()


def _link(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source`, atomically: a hard link (no copy of a large model;
    safe, as checkpoints are replaced by renames, never rewritten), else a copy."""
    if target.exists() and os.path.samefile(source, target):
        return  # already linked; renaming a link over its twin would do nothing and leave it
    with atomic_output(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def start_rolling(out: Path, source: Path | None, step: int) -> None:
    """The rolling files of this run. Continuing a finished run starts them from its published
    files (so a run with no step left to do still publishes); metrics stop at `step`."""
    metrics = None
    if source == out / CHECKPOINT:
        _link(source, out / LAST)
        metrics = out / METRICS
    elif source is not None:
        metrics = out / LAST_METRICS
        if not metrics.exists() and (out / METRICS).exists():
            # killed while publishing, after last-metrics.jsonl became metrics.jsonl
            metrics = out / METRICS
    _rolling_metrics(out, metrics, step)


def lock_run(out: Path) -> AbstractContextManager:
    """One run per out_dir: rank 0 holds the published checkpoint's lock for the whole run (the
    kernel drops it if the process dies, so a kill never blocks the rerun)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return nullcontext()
    return claim_output(out / CHECKPOINT)
