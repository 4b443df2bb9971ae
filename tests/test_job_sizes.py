"""Jobs that fit real queues: `max_job_hours` raises the number of search shards until no
search job's estimated runtime exceeds it, on the UniRef90 plan; the dry run says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from protprof import workflow_params
from protprof.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def uniref90_plan(**changes: object) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(yaml.safe_load((ROOT / "workflow/plans/uniref90.yaml").read_text()))
    return {**config, **changes}


def test_unchunked_uniref90_jobs_are_cut_to_the_limit():
    # 3.5e7 query residues x 5.5e10 x 3 iterations x 3e-10 s / 16 threads x 1.5, per shard.
    unlimited = uniref90_plan(database_chunks=0, max_job_hours=1000)
    assert (
        workflow_params.search_shards(unlimited),
        workflow_params.search_runtime_min(unlimited),
    ) == (100, 27071)
    config = uniref90_plan(database_chunks=0)  # max_job_hours: 24, config.yaml's
    shards = workflow_params.search_shards(config)
    assert workflow_params.search_runtime_min(config) <= 24 * 60
    # The fewest shards that fit: one fewer would not.
    assert (
        workflow_params.search_runtime_min({**config, "max_job_hours": 1000, "shards": shards - 1})
        > 1440
    )
    assert shards == 1880
    assert workflow_params.plan_summary(config) == (
        "protprof plan: 1880 search shards (raised from shards: 100 so that none exceeds it); "
        "the longest search job is estimated at 24.0 h of max_job_hours 24"
    )


def test_chunked_plan_already_fits():
    config = uniref90_plan()  # 16 chunks: one iteration on 1/16 of the database per job
    assert (workflow_params.search_shards(config), workflow_params.search_runtime_min(config)) == (
        100,
        564,
    )
    assert workflow_params.plan_summary(config).startswith("protprof plan: 100 search shards; ")


def test_a_limit_no_sharding_can_meet_is_refused():
    config = uniref90_plan(database_chunks=0, max_job_hours=1)
    with pytest.raises(ConfigError) as e:
        workflow_params.search_shards(config)
    # One 1,000-residue query: 1000 x 5.5e10 x 3 x 3e-10 / 16 x 1.5 s = 77.3 min.
    assert str(e.value) == (
        "max_job_hours: 1 h is shorter than the estimated search of one query of "
        "ingest.max_length residues (1.3 h); raise database_chunks or search.threads, or "
        "max_job_hours"
    )


@pytest.mark.slow  # a Snakemake dry run of 1,880 search jobs
def test_dry_run_shows_the_raised_shards_and_no_longer_job(tmp_path):
    import os
    import re
    import subprocess

    bin_dir = ROOT / ".venv" / "bin"
    run = subprocess.run(
        [
            str(bin_dir / "snakemake"), "-n", "--cores", "64",
            "-s", str(ROOT / "Snakefile"), "-d", str(ROOT),
            "--configfile", str(ROOT / "config.yaml"), str(ROOT / "workflow/plans/uniref90.yaml"),
            "--config", "database_chunks=0", f"results={tmp_path / 'plan'}",
        ],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = run.stdout + run.stderr
    assert "protprof plan: 1880 search shards (raised from shards: 100" in out
    runtimes = [int(m) for m in re.findall(r"runtime=(\d+)", run.stdout)]
    assert max(runtimes) == 1440  # the search jobs and the training job; nothing longer
    assert len(re.findall(r"^rule search_shard:", run.stdout, re.M)) == 1880
