"""Progress reaches log files: a search run with its stderr not a terminal (as under Snakemake
or SLURM) logs a line after its first query and a last one with the total."""

from __future__ import annotations

import logging
import re

import pytest
from helpers import DEMO_DB, DEMO_QUERIES

from protprof.cli import main
from protprof.queries.fasta import read_fasta

pytestmark = pytest.mark.integration


def test_build_logs_progress_when_not_on_a_terminal(tmp_path, caplog):
    queries = tmp_path / "q.fasta"
    records = list(read_fasta(DEMO_QUERIES))[:3]
    queries.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    argv = ["build", str(queries), "--database", str(DEMO_DB), "--out", str(tmp_path / "s.zarr")]
    with caplog.at_level(logging.INFO, "protprof"):
        assert main([*argv, "-N", "1", "--split-method", "hash"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("searched: ")]
    assert re.fullmatch(r"searched: 1 of 3 \(33\.3 %\), [\d.]+ query/s, ETA .+", lines[0])
    assert re.fullmatch(r"searched: 3 of 3 \(100\.0 %\), [\d.]+ query/s, ETA 0 s", lines[-1])
