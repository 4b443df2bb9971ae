"""The evaluation's and the leakage guard's settings, declared once (`protprof.params`):
`protprof evaluate`, `guard`, `reference` and `import --guard-*` make their options from them,
and the workflow's `evaluation:` and `leakage_guard:` schema is checked against them. No torch
here: the workflow imports it when Snakemake parses the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protprof.params import check_params, param


@dataclass(frozen=True)
class BenchmarkData:
    """Where the downstream benchmark files are (the layout `evaluation.datasets` reads)."""

    data: Path = param(Path("../shared/data"), help="benchmark data folder")

    def __post_init__(self) -> None:
        check_params(self, "evaluation")


@dataclass(frozen=True)
class GuardParams:
    """The leakage guard's threshold (a query with a phmmer hit this good is dropped)."""

    evalue: float = param(
        1e-3,
        help="drop a query with a phmmer hit at E <= this",
        flag="-E",
        aliases=("--evalue",),
        bounds="(0, inf)",
    )

    def __post_init__(self) -> None:
        check_params(self, "leakage_guard")


@dataclass
class Limits:
    """Caps on examples per task (0 = all); samples are drawn with a fixed seed."""

    max_train: int = param(
        0,
        help="cap on probe training examples per task, a fixed-seed sample (0 = all)",
        bounds="[0, inf)",
    )
    max_test: int = param(0, help="cap on test examples (0 = all)", bounds="[0, inf)")
    seed: int = param(0, help="the samples' seed", config=False)
    scope_identity: int = param(
        25, help="remote homology: the SCOPe subset of <= this % identity", cli=False, config=False
    )

    def __post_init__(self) -> None:
        check_params(self, "evaluation")


@dataclass(frozen=True)
class CompareParams:
    """`protprof compare`: the arm the others are set against."""

    baseline: str = param(
        "mlm",
        help="the arm (report label) the paired differences are taken from, and whose MLM "
        "head the other arms' profile heads are set against on zero-shot rows",
    )

    def __post_init__(self) -> None:
        check_params(self, "compare")
