"""Shared fixtures: small real inputs cut from the embedded demo data (UniProtKB records).
Helpers that are not fixtures live in helpers.py."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import DEMO_DB, TINY_STORE, require_mounts

from protprof.jackhmmer import load_database


@pytest.fixture(scope="session")
def demo_database():
    return load_database(DEMO_DB)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory) -> Path:
    """A real store, committed (tests/data/make_tiny_store.py): 24 demo queries searched
    against the 5,000-sequence demo database. A copy, so no test can change the committed one."""
    copy = tmp_path_factory.mktemp("store") / "small.zarr"
    shutil.copytree(TINY_STORE, copy)
    return copy


@pytest.fixture(scope="session")
def tiny_checkpoint(small_store, tmp_path_factory) -> Path:
    """The tiny multitask model trained 30 steps on `small_store` (a real checkpoint)."""
    from protprof.train.config import load_config
    from protprof.train.loop import train

    out = tmp_path_factory.mktemp("tiny")
    values = {
        "store": small_store,
        "out_dir": out,
        "max_steps": 30,
        "eval_every": 10,
        "checkpoint_every": 30,
        "max_tokens": 2048,
        "max_len": 256,
        "warmup_steps": 5,
    }
    train(load_config(None, [f"{k}={v}" for k, v in values.items()]))
    return out / "checkpoint.pt"


@pytest.fixture
def gz_bytes():
    return lambda text: gzip.compress(text.encode())


def _mount_tmpfs(folder: Path, size: str) -> None:
    require_mounts()
    folder.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if run.returncode:
        print(f"cannot mount a tmpfs ({run.stderr.strip()})")
        pytest.skip(f"a full disk needs a tmpfs mount (root): {run.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB file system (tmpfs), unmounted afterwards."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    yield disk
    if subprocess.run(["umount", str(disk)]).returncode:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)
        pytest.fail(f"{disk}: a file was left open there (a failed save leaks its handle)")
