"""`protprof evaluate`: run the tasks on one checkpoint and write report.md / .json / .png."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from protprof.atomic import atomic_output
from protprof.errors import ConfigError
from protprof.evaluation import registry
from protprof.evaluation.formatting import number
from protprof.evaluation.settings import Limits
from protprof.evaluation.tasks import Result
from protprof.store.file_versions import stamp

log = logging.getLogger(__name__)


def evaluate(
    checkpoint: Path,
    tasks: list[str],
    data: Path,
    store: Path | None,
    limits: Limits,
    label: str | None = None,
    reference: Path | None = None,
    threads: int = 2,
) -> dict:
    """Every number of every task, with timings, as a JSON-ready dict. `label` names the
    model in reports and comparisons (default: its training objective)."""
    from protprof.evaluation import reference as ref
    from protprof.model.loading import load_any

    known = registry.names()
    unknown = sorted(set(tasks) - set(known))
    if unknown or not tasks:
        raise ConfigError(
            f"evaluate: unknown or no tasks {unknown} (choose from {', '.join(known)})"
        )
    specs = [registry.get(t) for t in tasks]
    if any(t.needs_data for t in specs) and not Path(data).is_dir():
        raise ConfigError(f"evaluate: benchmark data folder {data} not found")
    # A bad reference file fails before any work; the model loads before any search.
    wants_reference = any(t.reference_sequences is not None for t in specs)
    if reference is not None and not wants_reference:
        log.warning(
            "evaluate: --reference is for tasks scored against the alignment reference "
            "(variants), none of which is run"
        )
    profiles = None
    if wants_reference and reference is not None:
        profiles = ref.read(reference, registry.reference_sequences(Path(data), tasks), store)
    loaded = load_any(checkpoint)
    if wants_reference and profiles is None and store is not None:
        wild_types = registry.reference_sequences(Path(data), tasks)
        log.info(
            "evaluate: searching the %d wild types for the alignment reference", len(wild_types)
        )
        profiles = ref.compute(wild_types, store, None, threads)
    model, training = loaded.model, loaded.training
    no_head = f"{checkpoint} has no profile head (an ESM directory not exported by protprof)"
    if not loaded.has_profile_head:
        log.info("evaluate: %s: the profile head's outputs are skipped", no_head)
    results: list[Result] = []
    seconds: dict[str, float] = {}
    for task in tasks:
        start = time.perf_counter()
        log.info("evaluate: %s ...", task)
        new = registry.get(task).run(model, registry.Inputs(Path(data), store, profiles), limits)
        if not loaded.has_profile_head:
            new = [r.skipped(f"skipped: {no_head}") if r.profile_head else r for r in new]
        results += new
        seconds[task] = round(time.perf_counter() - start, 1)
        log.info(
            "evaluate: %s done in %.0f s: %s",
            task,
            seconds[task],
            "; ".join(f"{r.metric} {r.value:.3f}" for r in new),
        )
    # An ESM directory without protprof's provenance is named after its folder.
    foreign = f"hf:{Path(checkpoint).name}"
    return {
        "checkpoint": str(checkpoint),
        "label": label or training.get("objective", foreign),
        "objective": training.get("objective", "?"),
        "model": training.get("model", foreign),
        # Without its own profile head, the model's fresh one is not counted.
        "n_parameters": model.n_parameters()
        - (
            0
            if loaded.has_profile_head
            else sum(p.numel() for p in model.profile_head.parameters())
        ),
        # Trained, not configured (0 for the untrained baseline; None when unknown).
        "steps": loaded.step,
        "seed": training.get("seed"),
        "data": str(data),
        "store": str(store) if store else None,
        "limits": {
            "max_train": limits.max_train,
            "max_test": limits.max_test,
            "seed": limits.seed,
        },
        "seconds": seconds,
        "results": [r.as_dict() for r in results],
    }


def markdown(report: dict) -> str:
    """The report as a markdown table, one row per (task, metric) with its interval."""
    lines = [
        f"# Evaluation of {report['checkpoint']} ({report['label']})",
        "",
        f"objective `{report['objective']}`, model `{report['model']}` "
        f"({report['n_parameters']:,} parameters), limits {report['limits']}",
        "",
        "| task | metric | value | 95% CI | n train | n test | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['task']} | {r['metric']} | {number(r['value'])} | "
            f"[{number(r['low'])}, {number(r['high'])}] | {r['n_train']} | {r['n_test']} "
            f"| {r['note']} |"
        )
    lines += [
        "",
        "Seconds per task: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()),
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict, out: Path) -> None:
    """A bar chart of every value with its bootstrap interval, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    values = np.array([r["value"] for r in rows], dtype=float)
    errors = np.array([[r["value"] - r["low"], r["high"] - r["value"]] for r in rows]).T
    ax.barh(y, np.nan_to_num(values), xerr=np.nan_to_num(errors), color="#4c72b0", capsize=3)
    ax.set_yticks(y, [f"{r['task'].split(' (')[0]}: {r['metric']}" for r in rows], fontsize=8)
    ax.set_title(f"{report['label']} ({report['model']}): value with bootstrap 95% CI")
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_report(report: dict, out_dir: Path) -> None:
    """Write report.json, report.png and report.md (last: its presence marks a complete report)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps({**stamp("report"), **report}, indent=1) + "\n")
    plot(report, out_dir / "report.png")
    # The markdown last: its presence marks a complete report.
    with atomic_output(out_dir / "report.md") as tmp:
        tmp.write_text(markdown(report))
