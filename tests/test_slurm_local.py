"""ci/slurm-local.sh refuses to change a system that did not opt in, and never overwrites a
SLURM configuration it did not write. Safe anywhere: every run here is refused before the
script changes anything (the configuration and state folders point into the test's tmp_path).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

SCRIPT = ROOT / "ci" / "slurm-local.sh"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (/proc, bash)"),
]


def script(command: str, opt_in: bool, **paths: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PROTPROF_SLURM_LOCAL")}
    if opt_in:
        env["PROTPROF_SLURM_LOCAL"] = "1"
    env.update({f"SLURM_LOCAL_{name.upper()}": str(path) for name, path in paths.items()})
    return subprocess.run(
        ["bash", str(SCRIPT), *command.split()],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def snapshot(*paths: Path) -> dict[str, bool]:
    return {str(p): p.exists() for p in paths}


@pytest.mark.parametrize("command", ["up", "down", "check"])
def test_without_opt_in_it_exits_nonzero_and_changes_nothing(tmp_path, command):
    state, conf = tmp_path / "state", tmp_path / "conf"
    run = script(command, opt_in=False, dir=state, conf=conf)
    assert run.returncode != 0
    assert "refusing" in run.stderr and "PROTPROF_SLURM_LOCAL=1" in run.stderr
    assert "Nothing changed." in run.stderr
    assert list(tmp_path.iterdir()) == []
    # With the default folders too: /etc/slurm, the state folder and the munge key stay as
    # they were.
    defaults = [
        Path("/etc/slurm"),
        Path("/var/lib/protprof-slurm-local"),
        Path("/etc/munge/munge.key"),
    ]
    before = snapshot(*defaults)
    run = script(command, opt_in=False)
    assert run.returncode != 0 and "refusing" in run.stderr
    assert snapshot(*defaults) == before


@pytest.mark.parametrize("name", ["slurm.conf", "slurmdbd.conf"])
def test_a_configuration_it_did_not_write_is_refused(tmp_path, name):
    state, conf = tmp_path / "state", tmp_path / "conf"
    conf.mkdir()
    foreign = conf / name
    foreign.write_text("ClusterName=production\n")
    run = script("up", opt_in=True, dir=state, conf=conf)
    assert run.returncode != 0
    assert f"refusing: {foreign} exists and was not written by this script" in run.stderr
    assert foreign.read_text() == "ClusterName=production\n"
    assert sorted(p.name for p in conf.iterdir()) == [name]
    assert not state.exists()


def test_its_own_file_changed_since_is_refused_and_unchanged_passes(tmp_path):
    state, conf = tmp_path / "state", tmp_path / "conf"
    conf.mkdir()
    state.mkdir()
    mine = conf / "slurm.conf"
    mine.write_text("# Written by protprof's ci/slurm-local.sh\nClusterName=protprof\n")
    digest = hashlib.sha256(mine.read_bytes()).hexdigest()
    (state / "written").write_text(f"{digest}  {mine}\n")
    # Recorded and unchanged: the configuration check passes (`check` may still refuse for
    # another reason on this machine, such as a MariaDB it did not start).
    run = script("check", opt_in=True, dir=state, conf=conf)
    assert str(mine) not in run.stderr, run.stderr
    # Edited by someone since it was written: refused, left as it is.
    mine.write_text(mine.read_text() + "NodeName=gpu01\n")
    for command in ("check", "up"):
        run = script(command, opt_in=True, dir=state, conf=conf)
        assert run.returncode != 0
        assert f"refusing: {mine} exists and was not written by this script" in run.stderr
    assert mine.read_text().endswith("NodeName=gpu01\n")
    assert sorted(p.name for p in state.iterdir()) == ["written"]


def test_its_own_file_whose_record_was_lost_passes_and_an_edited_one_is_refused(tmp_path):
    """The record was lost (an older version kept it in /tmp, which a reboot clears): a file
    with the header that is what `show` prints, apart from the machine's node line and the
    state folder's PID file, is the script's own; one line more and it is someone's edit."""
    state, conf = tmp_path / "state", tmp_path / "conf"
    conf.mkdir()
    old_header = (
        "# Written by protprof's ci/slurm-local.sh (recorded in /tmp/protprof-slurm/written); "
        "it rewrites only its own files.\n"
    )
    for name in ("slurm.conf", "slurmdbd.conf"):
        shown = script(f"show {name}", opt_in=False, dir=state, conf=conf)
        assert shown.returncode == 0, shown.stderr
        body = shown.stdout.split("\n", 1)[1]
        body = body.replace(f"PidFile={state}/", "PidFile=/tmp/protprof-slurm/")
        body = "\n".join(
            "NodeName=localhost NodeAddr=127.0.0.1 CPUs=64 RealMemory=500000 State=UNKNOWN"
            if line.startswith("NodeName=")
            else line
            for line in body.split("\n")
        )
        (conf / name).write_text(old_header + body)
    run = script("check", opt_in=True, dir=state, conf=conf)
    assert "slurm.conf" not in run.stderr, run.stderr
    assert not state.exists()  # `check` changes nothing
    edited = conf / "slurm.conf"
    edited.write_text(edited.read_text() + "PartitionName=gpu Nodes=gpu01\n")
    run = script("check", opt_in=True, dir=state, conf=conf)
    assert run.returncode != 0
    assert f"refusing: {edited} exists and was not written by this script" in run.stderr
    # A node line with more than this machine's figures (a GPU, a feature) is an edit too.
    node = "NodeName=localhost NodeAddr=127.0.0.1 CPUs=64 RealMemory=500000 State=UNKNOWN"
    gpus = (
        "NodeName=localhost NodeAddr=127.0.0.1 CPUs=64 Gres=gpu:4 RealMemory=500000 State=UNKNOWN"
    )
    edited.write_text(edited.read_text().replace("PartitionName=gpu Nodes=gpu01\n", ""))
    assert "slurm.conf" not in script("check", opt_in=True, dir=state, conf=conf).stderr
    edited.write_text(edited.read_text().replace(node, gpus))
    run = script("check", opt_in=True, dir=state, conf=conf)
    assert f"refusing: {edited} exists and was not written by this script" in run.stderr
    # Without the header it is not the script's, whatever it holds.
    edited.write_text(body)
    run = script("check", opt_in=True, dir=state, conf=conf)
    assert f"refusing: {edited} exists and was not written by this script" in run.stderr


def test_down_with_no_cluster_of_its_own_stops_nothing(tmp_path):
    """`down` stops daemons by the PIDs `up` recorded; with none recorded it stops nothing.
    A PID file of this boot naming another program's live process is not acted on and is kept
    (the process is not forgotten); one from before a reboot names nothing and is dropped."""
    state = tmp_path / "state"
    state.mkdir()
    bystander = subprocess.Popen(["sleep", "300"])
    boot = Path("/proc/sys/kernel/random/boot_id").read_text()
    try:
        for boot_id, kept in ((boot, True), ("another boot\n", False)):
            (state / "boot_id").write_text(boot_id)
            (state / "slurmctld.pid").write_text(f"{bystander.pid}\n")
            run = script("down", opt_in=True, dir=state, conf=tmp_path / "conf")
            assert run.returncode == 0, run.stderr
            assert bystander.poll() is None  # not a slurmctld: still running
            assert (state / "slurmctld.pid").exists() == kept, run.stderr
            assert ("kept" in run.stderr) == kept
    finally:
        bystander.kill()
        bystander.wait()
