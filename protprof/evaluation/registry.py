"""The downstream tasks, one `Task` each: how to run it, what its metrics mean, and which
sequences it tests on.

`protprof evaluate` runs the entries, `compare` reads their metric metadata (direction,
model-free baseline rows, which head a metric scores), the leakage guard searches every
entry's test sequences, and the workflow checks its task names here. Adding a task is one
`register(Task(...))` (plus its reader in `datasets.py`); nothing else lists the tasks.

No torch here (the CLI and the workflow read the registry on every start): runners import
`tasks` when called, and test-sequence functions read the data folder when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protprof.errors import ConfigError

if TYPE_CHECKING:
    from protprof.evaluation.settings import Limits
    from protprof.evaluation.tasks import Result

HEADS = ("MLM head", "profile head")
KINDS = ("probe", "zero-shot", "store")


@dataclass(frozen=True)
class Metric:
    """One number a task reports, as named in its report rows."""

    name: str
    higher_is_better: bool | None
    head: str | None = None  # the head it scores ("MLM head" / "profile head"), if one
    baseline: bool = False  # model-free: the same for every arm, never differenced
    plotted: bool = True  # drawn in compare's figure

    @property
    def direction(self) -> str:
        """'higher is better', 'lower is better' or '' (unknown)."""
        if self.higher_is_better is None:
            return ""
        return "higher is better" if self.higher_is_better else "lower is better"


@dataclass(frozen=True)
class Inputs:
    """What a task may read: the benchmark folder, the profile store and the alignment
    reference (profiles of the `reference_sequences`, by name)."""

    data: Path
    store: Path | None = None
    reference: dict[str, Any] | None = None


Runner = Callable[[Any, Inputs, "Limits"], list["Result"]]
Sequences = Callable[[Path], list[tuple[str, str]]]


@dataclass(frozen=True)
class Task:
    """One downstream task.

    `run(model, inputs, limits)` returns its `Result`s; their `task` field starts with
    `title` (a parenthesised detail may follow). `test_sequences(data)` gives (id, sequence)
    of every sequence the task scores (a mutant library: its wild type); the leakage guard
    searches them. `reference_sequences(data)`, if set, names the sequences whose alignment
    profiles the task scores against (`Inputs.reference`).
    """

    name: str  # the `--tasks` name
    title: str
    kind: str  # "probe", "zero-shot" or "store"
    run: Runner
    metrics: tuple[Metric, ...]
    test_sequences: Sequences
    description: str = ""
    needs_data: bool = True  # reads the benchmark folder
    reference_sequences: Callable[[Path], dict[str, str]] | None = field(default=None)

    def metric(self, name: str) -> Metric | None:
        """The metric of this name, or None."""
        return next((m for m in self.metrics if m.name == name), None)


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task (a new name; `unregister` first to replace one)."""
    if task.name in _TASKS:
        raise ConfigError(f"task {task.name!r} is already registered")
    if task.kind not in KINDS:
        raise ConfigError(f"task {task.name!r}: kind must be one of {KINDS}, got {task.kind!r}")
    if any(t.title == task.title for t in _TASKS.values()):
        raise ConfigError(f"task {task.name!r}: title {task.title!r} is another task's")
    _TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove a task (tests register toy tasks and take them away again)."""
    del _TASKS[name]


def names() -> tuple[str, ...]:
    """Every task name, in report order."""
    return tuple(_TASKS)


def get(name: str) -> Task:
    """The task of this name.

    Raises:
        ConfigError: no such task.
    """
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r} (choose from {', '.join(_TASKS)})")
    return _TASKS[name]


def task_of_row(row_task: str) -> Task | None:
    """The task a report row's `task` field belongs to ('remote homology (SCOPe ...)' ->
    homology), or None for a row of no registered task."""
    title = row_task.split(" (")[0]
    return next((t for t in _TASKS.values() if t.title == title), None)


def describe(row_task: str, metric: str) -> Metric:
    """A report row's metric metadata: the registry's, or for a row no task declares (an old or
    foreign report), what its name says by protprof's conventions (a head's metric ends with
    the head; the alignment reference and 'KL, baseline...' rows are model-free)."""
    task = task_of_row(row_task)
    known = task.metric(metric) if task else None
    if known is not None:
        return known
    return Metric(
        metric,
        None,
        head=next((h for h in HEADS if metric.endswith(h)), None),
        baseline=metric.endswith("alignment profile") or metric.startswith("KL, baseline"),
        plotted=not metric.startswith("KL, baseline"),
    )


def is_zero_shot(row_task: str) -> bool:
    """Whether a report row is a zero-shot score (the registry's kind; by name otherwise)."""
    task = task_of_row(row_task)
    return task.kind == "zero-shot" if task else row_task.startswith("zero-shot")


def test_sequences(data: Path, tasks: list[str] | None = None) -> list[tuple[str, str]]:
    """(task/id, sequence) of every test sequence of `tasks` (default: all), each sequence
    once (under the first task that tests on it)."""
    unique: dict[str, str] = {}
    for name in tasks if tasks is not None else names():
        for id_, sequence in get(name).test_sequences(Path(data)):
            unique.setdefault(sequence, f"{name}/{id_}")
    return [(name, sequence) for sequence, name in unique.items()]


def reference_sequences(data: Path, tasks: list[str]) -> dict[str, str]:
    """The sequences the alignment reference profiles for `tasks` (empty: none uses one)."""
    merged: dict[str, str] = {}
    for name in tasks:
        wanted = get(name).reference_sequences
        if wanted is not None:
            merged.update(wanted(Path(data)))
    return merged


# ---------------------------------------------------------------- the tasks


def _call(function: str, *arguments: str) -> Runner:
    """A runner calling `tasks.<function>(model, <inputs fields>..., limits)`, importing torch
    only when it runs."""

    def run(model: Any, inputs: Inputs, limits: Limits) -> list[Result]:
        from protprof.evaluation import tasks

        values = [getattr(inputs, a) for a in arguments]
        result: list[Result] = getattr(tasks, function)(model, *values, limits)
        return result

    return run


def _variants(model: Any, inputs: Inputs, limits: Limits) -> list[Result]:
    from protprof.evaluation import tasks

    return tasks.variant_effects(model, inputs.data, limits, inputs.reference)


def _cb513(data: Path) -> list[tuple[str, str]]:
    from protprof.evaluation import datasets as ds

    return [(e.id, e.sequence) for e in ds.read_cb513(data)]


def _scope_test(data: Path) -> list[tuple[str, str]]:
    from protprof.evaluation import datasets as ds

    _, test, _ = ds.split_remote_homology(ds.read_scope(data))
    return [(e.id, e.sequence) for e in test]


def _stability_designs(data: Path) -> list[tuple[str, str]]:
    from protprof.evaluation import datasets as ds

    test, _ = ds.read_stability(data, "test")
    return [(e.id, e.sequence) for e in test if e.id == e.group]


def _avgfp(data: Path) -> list[tuple[str, str]]:
    from protprof.evaluation import datasets as ds

    gfp = ds.read_wild_type(data / "fluorescence_avgfp" / "wt_sequence.json", "avgfp")
    return [("avGFP", gfp["wt_aa"])]


def _contact_chains(data: Path) -> list[tuple[str, str]]:
    from protprof.evaluation import datasets as ds

    return [(f"{p.stem}_{chain}", s) for p, chain, s in ds.contact_chains(data, "test")]


def _wild_types(data: Path) -> dict[str, str]:
    from protprof.evaluation import datasets as ds

    return ds.variant_wild_types(data)


def _no_sequences(data: Path) -> list[tuple[str, str]]:
    """The store's test split: drawn from the (guarded) pretraining queries themselves."""
    return []


def _zero_shot_metrics() -> tuple[Metric, ...]:
    scorers = {"MLM head": "MLM head", "profile head": "profile head", "alignment profile": None}
    return tuple(
        Metric(f"{prefix}Spearman rho, {scorer}", True, head, baseline=head is None)
        for prefix in ("", "mean ")
        for scorer, head in scorers.items()
    )


register(
    Task(
        "ss",
        "secondary structure",
        "probe",
        _call("secondary_structure", "data"),
        (Metric("Q3", True),),
        _cb513,
        "Q3 on CB513; probe trained on FLIP's NetSurfP-2.0 split",
    )
)
register(
    Task(
        "homology",
        "remote homology",
        "probe",
        _call("remote_homology", "data"),
        (Metric("top-1 fold accuracy", True),),
        _scope_test,
        "SCOPe 2.08 fold of held-out superfamilies",
    )
)
register(
    Task(
        "stability",
        "stability",
        "probe",
        _call("stability", "data"),
        (Metric("Spearman rho", True),),
        _stability_designs,
        "Rocklin 2017 single mutants of 17 designs",
    )
)
register(
    Task(
        "fluorescence",
        "fluorescence",
        "probe",
        _call("fluorescence", "data"),
        (Metric("Spearman rho", True),),
        _avgfp,
        "avGFP variants with >= 4 mutations",
    )
)
register(
    Task(
        "contacts",
        "contacts",
        "probe",
        _call("contacts", "data"),
        tuple(Metric(f"P@L/5, separation >= {s}", True) for s in (12, 24)),
        _contact_chains,
        "top L/5 contacts of test crystal chains",
    )
)
register(
    Task(
        "variants",
        "zero-shot variant effects",
        "zero-shot",
        _variants,
        _zero_shot_metrics(),
        lambda data: list(_wild_types(data).items()),
        "six DMS assays scored zero-shot (their wild types are the test sequences)",
        reference_sequences=_wild_types,
    )
)
register(
    Task(
        "profile",
        "profile prediction",
        "store",
        _call("profile_prediction", "store"),
        (
            Metric("KL, model profile head", False, "profile head"),
            Metric("KL, baseline: background frequencies", False, baseline=True, plotted=False),
            Metric("KL, baseline: BLOSUM62-smoothed one-hot", False, baseline=True, plotted=False),
        ),
        _no_sequences,
        "KL of the store's test-split profiles",
        needs_data=False,
    )
)
