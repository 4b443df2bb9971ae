"""Shared fixtures: small real inputs cut from the embedded demo data (UniProtKB records)."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from protprof.fasta import read_fasta
from protprof.ingest import IngestParams, select_records
from protprof.pipeline import build
from protprof.profiles import ProfileParams
from protprof.search import SearchParams, load_database

ROOT = Path(__file__).resolve().parents[1]
DEMO_DB = ROOT / "data" / "demo" / "uniprot_5k.fasta.gz"
DEMO_QUERIES = ROOT / "data" / "demo" / "queries_150.fasta.gz"
SHARED_DATA = ROOT.parent / "shared" / "data"


def write_queries(path: Path, n: int, start: int = 0) -> Path:
    """Write `n` real demo query records (from index `start`) as plain FASTA."""
    records = read_fasta(DEMO_QUERIES)[start : start + n]
    path.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    return path


@pytest.fixture(scope="session")
def demo_database():
    return load_database(DEMO_DB)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, demo_database) -> Path:
    """A real store: 24 demo queries searched against the 5,000-sequence demo database."""
    tmp = tmp_path_factory.mktemp("store")
    queries = write_queries(tmp / "q.fasta", 24)
    params = IngestParams(max_length=400, valid_fraction=0.2, test_fraction=0.1)
    records = select_records([queries], params)
    return build(
        records,
        demo_database,
        tmp / "small.zarr",
        2,
        params,
        SearchParams(iterations=2),
        ProfileParams(),
    )


@pytest.fixture
def gz_bytes():
    return lambda text: gzip.compress(text.encode())


def _mount_tmpfs(folder: Path, size: str) -> None:
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
