"""The import contracts of pyproject.toml (`[tool.importlinter]`) hold, so `make test` checks
the layering as `make lint` does: search and store without torch, inference without the
trainer, nothing importing the CLI, store and cache without search logic, no cycles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run(
        [str(lint), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "BROKEN" not in run.stdout and "Contracts: 5 kept, 0 broken." in run.stdout
