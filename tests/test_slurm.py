"""The workflow on a real single-node SLURM cluster (ci/slurm-local.sh), through the
project's SLURM profile and snakemake-executor-plugin-slurm: every job COMPLETED in sacct.

The cluster changes the system it runs on (packages, /etc/slurm, daemons as root), so these
tests run only under CI=true (a disposable CI machine) or with PROTPROF_SLURM_LOCAL=1, and are
skipped with the reason otherwise. Where the cluster cannot start (not root, no apt-get, a SLURM
configuration or daemon the script did not make) they are skipped too, and under CI=true that
is a failure instead. They stop only processes of their own jobs, by PID.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import BIN, ROOT, job_counts, kill_pids, slurm_job_pids, write_config

from protprof.model.checkpoint import load_model
from protprof.model.config import PRESETS
from protprof.store.zarr_store import open_store

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "ci" / "slurm-local.sh"
OPT_IN = os.environ.get("CI") == "true" or os.environ.get("PROTPROF_SLURM_LOCAL") == "1"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the SLURM test, but: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster():
    if not OPT_IN:
        pytest.skip(
            "the local SLURM cluster installs packages, writes /etc/slurm and starts daemons as "
            "root: set PROTPROF_SLURM_LOCAL=1 (or CI=true) to run it"
        )
    if os.geteuid() != 0:
        _unavailable("the local SLURM cluster needs root")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        _unavailable("the local SLURM cluster needs apt-get (Debian) or SLURM installed")
    up = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        _unavailable(f"ci/slurm-local.sh up failed: {up.stderr[-2000:]}")
    yield
    down = subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, timeout=300)
    assert down.returncode == 0, down.stderr
    # `down` stops every daemon `up` started (Debian's slurmctld and slurmd are links to
    # *-wlm programs, which an earlier `down` did not recognise as its own and left running).
    assert live_daemons() == [], live_daemons()


def live_daemons() -> list[str]:
    """The SLURM, munge and MariaDB daemons running (zombies aside)."""
    names = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd")
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue  # the process ended meanwhile
        name, state = rest.rsplit(") ", 1)[0], rest.rsplit(") ", 1)[1][0]
        if name in names and state != "Z":
            found.append(f"{name} (PID {pid})")
    return found


def test_workflow_on_real_slurm(cluster, tmp_path, capsys):
    write_config(tmp_path)
    start = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    run = subprocess.run(
        [
            "timeout",
            "-k",
            "10",
            "900",
            str(BIN / "snakemake"),
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--profile",
            str(ROOT / "profiles/slurm"),
            "--slurm-init-seconds-before-status-checks",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    store = open_store(tmp_path / "results/store/profiles.zarr")
    assert len(store) == 10
    model = load_model(tmp_path / "results/train/multitask/seed0/checkpoint.pt")
    assert model.config == PRESETS["tiny"]
    jobs = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", start, "-o", "JobID,State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    table = subprocess.run(
        ["sacct", "-X", "-S", start, "-o", "JobID,Partition,State,Elapsed,Comment%40"],
        capture_output=True,
        text=True,
    ).stdout
    with capsys.disabled():  # the CI log shows the jobs ran under sbatch
        print(f"\nsacct of the workflow's jobs on the local SLURM cluster:\n{table}")
    states = [line.split("|")[1] for line in jobs]
    # ingest, prepare_database, plan_searches, 2 x search_shard, assemble, summarise, train
    # ("all" is local)
    assert len(states) == 8 and set(states) == {"COMPLETED"}, jobs


def test_killed_search_job_leaves_nothing_complete_and_rerun_redoes_only_it(cluster, tmp_path):
    write_config(tmp_path, search={"iterations": 3, "threads": 2})
    start = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    command = [
        str(BIN / "snakemake"),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--profile",
        str(ROOT / "profiles/slurm"),
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--retries",
        "0",
    ]
    workflow = subprocess.Popen(
        ["timeout", "-k", "10", "600", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # SIGKILL the search inside its SLURM job, as the OOM killer or a node failure would: by
    # PID, among the processes SLURM lists for this cluster's jobs, the one searching this shard.
    # (`scancel` is not used: plugin 2.8.0 never noticed a job in state "CANCELLED by 0" and
    # waited until the timeout; a killed process gives the job state FAILED.)
    shard = "0000"
    for _ in range(1200):
        pids = slurm_job_pids("protprof search", f"plan/shards/{shard}.fasta")
        if pids:
            kill_pids(pids)
            break
        assert workflow.poll() is None, "the workflow ended before its search job ran"
        time.sleep(0.1)
    output, _ = workflow.communicate(timeout=600)
    assert workflow.returncode == 1, output[-3000:]
    states = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", start, "-o", "State"], capture_output=True, text=True
    ).stdout.split()
    assert "FAILED" in states, states
    search = tmp_path / "results" / "search"
    assert not (search / f"{shard}.zarr").exists()  # nothing that looks complete
    assert not (tmp_path / "results/store/profiles.zarr").exists()
    plan = job_counts(
        subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True).stdout
    )
    assert plan.get("search_shard") == 1 and "ingest_queries" not in plan, plan
    rerun = subprocess.run(
        ["timeout", "-k", "10", "600", *command], env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(open_store(tmp_path / "results/store/profiles.zarr")) == 10
