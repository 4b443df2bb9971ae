"""The no-pretraining reference for the comparison: the same architecture at its random
initialisation (seed 0, step 0), evaluated with the same probes, tasks and caps. A pretrained
arm that does not beat it has learnt nothing the probes can use.

Usage (after the two workflow runs of `make comparison`):
    python experiments/comparison/untrained_baseline.py
Writes experiments/comparison/results/evaluation/untrained/ (kept: a rerun does not redo it),
then compares every arm of both runs with it: results/evaluation/comparison_with_untrained.md,
with the paired differences from `mlm`, and the figure experiments/comparison/comparison.png.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
import yaml

from protprof.cli import main as protprof
from protprof.model.checkpoint import model_state, save_checkpoint
from protprof.model.encoder import ProteinEncoder
from protprof.train.config import load_config
from protprof.train.run_dir import CHECKPOINT

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main() -> int:
    config = yaml.safe_load((HERE / "config.yaml").read_text())
    out = RESULTS / "train" / "untrained"
    settings = load_config(
        HERE / "train.yaml",
        [f"store={RESULTS / 'store/profiles.zarr'}", f"out_dir={out}", "seed=0"],
    )
    # Step 0: the random initialisation every arm starts from (the trainer seeds torch, then
    # builds the model first, exactly so).
    torch.manual_seed(settings.seed)
    model = ProteinEncoder(settings.model_config())
    save_checkpoint(out / CHECKPOINT, model_state(model, dataclasses.asdict(settings), step=0))
    e = config["evaluation"]
    report = RESULTS / "evaluation" / "untrained"
    status = (
        0
        if (report / "report.md").exists()
        else protprof(
            [
                "evaluate",
                str(out / CHECKPOINT),
                "--label",
                "untrained",
                "--store",
                str(RESULTS / "store/profiles.zarr"),
                "--reference",
                str(RESULTS / "evaluation/alignment_reference.npz"),
                "--data",
                e["data"],
                "--tasks",
                *e["tasks"],
                "--max-train",
                str(e["max_train"]),
                "--max-test",
                str(e["max_test"]),
                "--out",
                str(report),
            ]
        )
    )
    if status:
        return status
    reports = sorted((RESULTS / "evaluation").glob("*/seed*/report.json"))
    reports += sorted((HERE / "results-family" / "evaluation").glob("*/seed*/report.json"))
    return protprof(
        [
            "compare",
            str(report / "report.json"),
            *map(str, reports),
            "--out",
            str(RESULTS / "evaluation" / "comparison_with_untrained.md"),
            "--figure",
            str(HERE / "comparison.png"),
            "--force",  # replace the figure of an earlier run
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
