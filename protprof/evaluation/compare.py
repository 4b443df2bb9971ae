"""`protprof compare`: one table across several evaluation reports (the paper's three arms),
with intervals over seeds and paired differences against a baseline arm. Torch-free: it reads
reports and the task registry's metadata, never a model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from protprof.atomic import atomic_output
from protprof.errors import ConfigError, InputFormatError
from protprof.evaluation import registry
from protprof.evaluation.formatting import number
from protprof.evaluation.settings import CompareParams
from protprof.store.file_versions import check

log = logging.getLogger(__name__)


def read_reports(paths: list[Path]) -> dict[str, list[dict]]:
    """Evaluation reports grouped by label (the arm), in the order given.

    Raises:
        ConfigError: a file is not a report, or two reports share an arm and a seed.
    """
    by_label: dict[str, list[dict]] = {}
    seen: dict[tuple[str, object], Path] = {}
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
            check(report, "report", path)
            label = str(report["label"])
            for r in report["results"]:
                float(r["value"]), float(r["low"]), float(r["high"]), r["task"] + r["metric"]
        except InputFormatError as e:
            raise ConfigError(str(e)) from e
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # JSON, encoding
            raise ConfigError(f"{path}: not a protprof evaluation report ({e!r})") from e
        seed = report.get("seed")
        if seed is not None and (label, seed) in seen:
            raise ConfigError(
                f"{path}: a second report of arm {label!r} with seed {seed} (the first: "
                f"{seen[label, seed]}); give one report per arm and seed"
            )
        seen[label, seed] = Path(path)
        by_label.setdefault(label, []).append(report)
    return by_label


def _keys(by_label: dict[str, list[dict]]) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    for reports in by_label.values():
        for report in reports:
            for r in report["results"]:
                if (r["task"], r["metric"]) not in keys:
                    keys.append((r["task"], r["metric"]))
    return keys


def _found(reports: list[dict], key: tuple[str, str]) -> list[dict]:
    return [
        {**r, "seed": report.get("seed")}
        for report in reports
        for r in report["results"]
        if (r["task"], r["metric"]) == key
    ]


# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (then the normal's).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of the mean of `values` (finite ones; nan with fewer than 2)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        nan = float("nan")
        return (float(values.mean()) if len(values) else nan), nan, nan
    t = _T95[len(values) - 2] if len(values) - 1 <= len(_T95) else 1.96
    half = t * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def arm_interval(found: list[dict]) -> tuple[float, float, float]:
    """An arm's value and 95 % interval on one metric: the bootstrap interval of one report,
    or the t-interval of the mean over seeds."""
    if len(found) == 1:
        r = found[0]
        return r["value"], r["low"], r["high"]
    return t_interval(np.array([r["value"] for r in found], dtype=float))


# The heads each objective trains: a difference on a head's metric needs both arms to train it.
TRAINED_HEADS = {
    "mlm": {"MLM head"},
    "profile": {"profile head"},
    "multitask": {"MLM head", "profile head"},
}


def _head(key: tuple[str, str]) -> str | None:
    return registry.describe(*key).head


def _model_free(key: tuple[str, str]) -> bool:
    """The alignment reference and the profile task's baselines: the same for every arm."""
    return registry.describe(*key).baseline


def _trains(reports: list[dict], head: str | None) -> bool:
    return head is None or all(
        head in TRAINED_HEADS.get(r.get("objective", ""), {head}) for r in reports
    )


def _seeds(reports: list[dict]) -> set:
    return {r.get("seed") for r in reports} - {None}


def _paired(found: list[dict], base_found: list[dict]) -> np.ndarray:
    """Finite differences found − base_found, paired by seed (reports without a seed, such
    as a foreign model's, pair with nothing)."""
    base = {r["seed"]: r["value"] for r in base_found if r["seed"] is not None}
    pairs = np.array([r["value"] - base[r["seed"]] for r in found if r["seed"] in base], float)
    return pairs[np.isfinite(pairs)]


def _paired_arms(by_label: dict[str, list[dict]], baseline: str) -> list[str]:
    """The arms with at least 2 seeds in common with `baseline`; the others are named once."""
    arms = []
    for label, reports in by_label.items():
        if label == baseline:
            continue
        if len(_seeds(reports) & _seeds(by_label[baseline])) >= 2:
            arms.append(label)
        else:  # e.g. the untrained model: one report, nothing to pair over
            log.warning(
                "compare: %s has fewer than 2 seeds in common with %s; no paired differences",
                label,
                baseline,
            )
    return arms


def paired_differences(
    by_label: dict[str, list[dict]], baseline: str
) -> list[tuple[str, str, str, int, float, float, float]]:
    """(task, metric, arm, n seeds, mean, low, high) of arm − baseline, paired by seed, with a
    95 % t-interval over the seeds both arms have (finite values only). Left out: metrics of a
    head one of the two arms does not train, and the model-free rows (the alignment reference,
    the profile task's baselines)."""
    rows = []
    arms = _paired_arms(by_label, baseline)
    for key in _keys(by_label):
        head = _head(key)
        if _model_free(key) or not _trains(by_label[baseline], head):
            continue
        base_found = _found(by_label[baseline], key)
        for label in arms:
            found = _found(by_label[label], key)
            if not _trains(by_label[label], head) or not (found and base_found):
                continue
            pairs = _paired(found, base_found)
            if len(pairs) >= 2:
                rows.append((*key, label, len(pairs), *t_interval(pairs)))
            else:
                log.warning(
                    "compare: %s vs %s on %s, %s: fewer than 2 finite pairs; no difference",
                    label,
                    baseline,
                    *key,
                )
    return rows


def head_differences(
    by_label: dict[str, list[dict]], baseline: str
) -> list[tuple[str, str, int, float, float, float]]:
    """(task, arm, n seeds, mean, low, high) of the arm's profile head − the baseline's MLM
    head on every zero-shot row, paired by seed: the scorer each pretraining yields, at equal
    compute. Only arms that train the profile head, against a baseline that trains the MLM
    head; a 95 % t-interval over the seeds both have."""
    rows: list[tuple[str, str, int, float, float, float]] = []
    if not _trains(by_label[baseline], "MLM head"):
        return rows
    arms = [a for a in by_label if a != baseline and _trains(by_label[a], "profile head")]
    for task, metric in _keys(by_label):
        if not registry.is_zero_shot(task) or _head((task, metric)) != "profile head":
            continue
        mlm_key = (task, metric.removesuffix("profile head") + "MLM head")
        base_found = _found(by_label[baseline], mlm_key)
        for label in arms:
            pairs = _paired(_found(by_label[label], (task, metric)), base_found)
            if len(pairs) >= 2:
                rows.append((task, label, len(pairs), *t_interval(pairs)))
    return rows


def compare(
    paths: list[Path], baseline: str | None = CompareParams.baseline, figure: Path | None = None
) -> str:
    """A markdown table: one row per (task, metric), one column per label; then, when the
    arms have several seeds, each arm's paired difference from `baseline` with its interval,
    and on the zero-shot rows each arm's profile head against the baseline's MLM head.

    Columns are report labels (by default the objective). One report per label: the value
    and its bootstrap 95 % interval. Several (seeds): mean ± standard deviation across them,
    the seed-to-seed spread. `figure` also draws every arm on every metric (`plot_comparison`).
    """
    by_label = read_reports(paths)
    keys = _keys(by_label)
    names = [f"{o} ({len(r)} seeds)" if len(r) > 1 else o for o, r in by_label.items()]
    lines = ["| task | metric | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key in keys:
        cells = []
        for reports in by_label.values():
            found = _found(reports, key)
            if not found:
                cells.append("-")
            elif len(found) == 1:
                r = found[0]
                cells.append(f"{number(r['value'])} [{number(r['low'])}, {number(r['high'])}]")
            else:
                values = np.array([r["value"] for r in found], dtype=float)
                cells.append(f"{number(values.mean())} ± {number(values.std(ddof=1))}")
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    if baseline is not None and baseline not in by_label:
        log.warning(
            "compare: no reports of the baseline arm %r (arms: %s): no paired differences",
            baseline,
            ", ".join(by_label),
        )
    differences = paired_differences(by_label, baseline) if baseline in by_label else []
    if differences:
        lines += _table_start(
            f"Paired differences from `{baseline}` (same seeds; mean and 95 % t-interval over "
            "seeds; *differs* when the interval excludes 0, each row on its own: with this many "
            "rows, expect a false *yes* now and then). Rows of a head one of the two arms does "
            "not train, and the model-free rows (alignment reference, baselines), are left out:",
            ["task", "metric", f"arm − {baseline}", "seeds", "difference [95% CI]", "differs"],
        )
        for task, metric, label, n, mean, low, high in differences:
            lines.append(f"| {task} | {metric} | {label} | {n} | {_difference(mean, low, high)}")
    heads = head_differences(by_label, baseline) if baseline in by_label else []
    if heads:
        lines += _table_start(
            f"Zero-shot scorers against each other: each arm's profile head − `{baseline}`'s "
            "MLM head (same seeds; mean and 95 % t-interval over seeds; *differs* when the "
            "interval excludes 0, each row on its own):",
            [
                "task",
                f"arm (profile head) − {baseline} (MLM head)",
                "seeds",
                "difference [95% CI]",
                "differs",
            ],
        )
        for task, label, n, mean, low, high in heads:
            lines.append(f"| {task} | {label} | {n} | {_difference(mean, low, high)}")
    if figure is not None:
        plot_comparison(by_label, figure)
    return "\n".join(lines) + "\n"


def _table_start(intro: str, columns: list[str]) -> list[str]:
    """A markdown section's opening lines: its intro paragraph, then the table's header."""
    return ["", intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _difference(mean: float, low: float, high: float) -> str:
    """The last two cells of a difference row: the value with its interval, and the verdict."""
    differs = "yes" if np.isfinite(low) and (low > 0 or high < 0) else "no"
    return (
        f"{number(mean, signed=True)} [{number(low, signed=True)}, {number(high, signed=True)}] "
        f"| {differs} |"
    )


def plot_comparison(by_label: dict[str, list[dict]], out: Path) -> None:
    """One panel per (task, metric); in each, every arm's value with its 95 % interval (the
    t-interval over seeds, or one report's bootstrap interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in _keys(by_label) if registry.describe(*k).plotted]
    columns = 4
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.2 * rows), squeeze=False)
    labels = list(by_label)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys, strict=False):
        for k, label in enumerate(labels):
            found = _found(by_label[label], key)
            if not found:
                continue
            value, low, high = arm_interval(found)
            if not np.isfinite(value):
                continue
            error = [[value - low], [high - value]] if np.isfinite(low) else None
            ax.errorbar(k, value, yerr=error, fmt="o", color=colours[k % len(colours)], capsize=3)
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=20)
        direction = registry.describe(*key).direction
        ax.set_title(f"{key[0]}\n{key[1]}" + (f" ({direction})" if direction else ""), fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(
        "every arm on every task: mean and 95 % t-interval over seeds (one report: its "
        "bootstrap interval)",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
