"""The profile cache on real data: only new queries are searched, stores equal clean builds,
changed settings search everything again, shared caches take concurrent workflows, and a killed
writer leaves the cache usable."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import (
    BIN,
    CLI,
    DEMO_DB,
    ROOT,
    SNAKEMAKE,
    assert_same_arrays,
    build,
    one_error_line,
    require_mounts,
    run_until_store,
    set_queries,
    write_config,
    write_queries,
)

from protprof.cli import main
from protprof.store.cache import ProfileCache
from protprof.store.zarr_store import open_store

pytestmark = pytest.mark.integration


def test_build_searches_only_what_the_cache_lacks(tmp_path, caplog):
    cache = tmp_path / "cache"
    few, more = write_queries(tmp_path / "few.fa", 6), write_queries(tmp_path / "more.fa", 9)
    build(few, tmp_path / "few.zarr", "--cache", str(cache))
    build(more, tmp_path / "more.zarr", "--cache", str(cache))
    assert open_store(tmp_path / "more.zarr").attrs["cache"] | {"path": ""} == {
        "path": "",
        "searched": 3,
        "reused": 6,
    }
    build(more, tmp_path / "clean.zarr")  # no cache at all
    assert_same_arrays(tmp_path / "more.zarr", tmp_path / "clean.zarr")
    build(few, tmp_path / "again.zarr", "--cache", str(cache))  # removing queries: no search
    assert open_store(tmp_path / "again.zarr").attrs["cache"]["searched"] == 0
    assert_same_arrays(tmp_path / "again.zarr", tmp_path / "few.zarr")
    # Another -N: every query searched again, and the log says why.
    caplog.clear()
    caplog.set_level(logging.INFO)
    build(few, tmp_path / "n1.zarr", "--cache", str(cache), "-N", "1")
    assert open_store(tmp_path / "n1.zarr").attrs["cache"]["searched"] == 6
    assert "search changed" in caplog.text
    stats = ProfileCache(cache).stats()
    assert stats["entries"] == 9 + 6 and len(stats["contexts"]) == 2
    # inspect --json shows the counts
    capture = subprocess.run(
        [*CLI, "inspect", str(tmp_path / "more.zarr"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(capture.stdout)["provenance"]["cache"]["reused"] == 6


def test_killed_writer_leaves_the_cache_usable(tmp_path):
    cache, queries = tmp_path / "cache", write_queries(tmp_path / "q.fa", 40)
    out = tmp_path / "out.zarr"
    argv = [
        *CLI,
        "build",
        str(queries),
        "--database",
        str(DEMO_DB),
        "--out",
        str(out),
        "--threads",
        "2",
        "-N",
        "2",
        "--cache",
        str(cache),
    ]
    # Killed once the first query is searched (off a terminal, progress logs a line then):
    # mid-search, 39 queries to go and nothing written to the cache yet.
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "searched: 1 of 40 " in line:
                break
        else:
            pytest.fail(f"the build ended before searching (exit {process.wait()})")
    finally:
        process.kill()
        process.wait()
    assert not out.exists() and not ProfileCache(cache).segments()
    # a writer killed while renaming a segment into place leaves only a hidden temporary
    (cache / "segments" / ".abc-123.zarr.tmp-0000").mkdir()
    subprocess.run(argv, check=True)
    assert open_store(out).attrs["cache"]["searched"] == 40
    assert len(ProfileCache(cache).segments()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.zarr", "q.fa"]


def test_gc_keeps_what_a_store_uses(tmp_path, capsys):
    cache = tmp_path / "cache"
    queries = write_queries(tmp_path / "q.fa", 3)
    build(queries, tmp_path / "n2.zarr", "--cache", str(cache))
    build(queries, tmp_path / "n1.zarr", "--cache", str(cache), "-N", "1")
    assert len(ProfileCache(cache).segments()) == 2
    assert main(["cache", "gc", str(cache), "--keep-store", str(tmp_path / "n1.zarr")]) == 0
    assert "kept 1 segments, removed 1" in capsys.readouterr().out
    build(queries, tmp_path / "again.zarr", "--cache", str(cache), "-N", "1")
    assert open_store(tmp_path / "again.zarr").attrs["cache"]["searched"] == 0
    assert main(["cache", "stats", str(cache)]) == 0
    assert "3 entries" in capsys.readouterr().out


needs_snakemake = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")


@pytest.mark.slow
@needs_snakemake
def test_workflow_searches_only_new_queries_and_equals_a_clean_build(tmp_path):
    write_config(tmp_path)
    few, more = write_queries(tmp_path / "few.fa", 7), write_queries(tmp_path / "more.fa", 10)
    set_queries(tmp_path, few)
    assert run_until_store(tmp_path)["missing"] == 7
    set_queries(tmp_path, more)  # three more queries: three searched
    plan = run_until_store(tmp_path)
    assert (plan["queries"], plan["missing"]) == (10, 3)
    store = tmp_path / "results/store/profiles.zarr"
    assert open_store(store).attrs["cache"]["searched"] == 3
    # equal to a clean build of the same ten queries (same ingest and search settings)
    build(
        more,
        tmp_path / "clean.zarr",
        "--max-length",
        "200",
        "--valid-fraction",
        "0.3",
        "--test-fraction",
        "0.1",
    )
    assert_same_arrays(store, tmp_path / "clean.zarr")
    set_queries(tmp_path, few)  # removing queries: nothing searched
    plan = run_until_store(tmp_path)
    assert plan["missing"] == 0 and plan["shards"] == []
    set_queries(tmp_path, few, iterations=1)  # another -N: everything, and why
    plan = run_until_store(tmp_path)
    assert plan["missing"] == 7 and "search changed" in plan["reason"]


@pytest.mark.slow
@needs_snakemake
def test_two_workflows_share_one_cache_at_the_same_time(tmp_path):
    cache = tmp_path / "shared-cache"
    runs = {}
    for name, start in (("a", 0), ("b", 4)):  # queries 0-7 and 4-11: four in common
        workdir = tmp_path / name
        workdir.mkdir()
        write_config(workdir, cache=str(cache))
        set_queries(workdir, write_queries(workdir / "q.fa", 8, start=start))
        runs[name] = subprocess.Popen(
            [
                SNAKEMAKE,
                "-s",
                str(ROOT / "Snakefile"),
                "--directory",
                str(workdir),
                "--cores",
                "1",
                "results/store/profiles.zarr",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        )
    for process in runs.values():
        _, err = process.communicate(timeout=900)
        assert process.returncode == 0, err[-3000:]
    for name in ("a", "b"):
        store = tmp_path / name / "results/store/profiles.zarr"
        build(
            tmp_path / name / "q.fa",
            tmp_path / f"clean-{name}.zarr",
            "--max-length",
            "200",
            "--valid-fraction",
            "0.3",
            "--test-fraction",
            "0.1",
        )
        assert_same_arrays(store, tmp_path / f"clean-{name}.zarr")
    assert ProfileCache(cache).stats()["entries"] >= 12


@contextmanager
def read_only(folder: Path, where: Path) -> Iterator[Path]:
    """`folder`, read-only: a read-only bind mount at `where` under root (only when mounts are
    allowed), the write bits removed otherwise (root ignores them)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield folder
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    require_mounts()
    where.mkdir()
    run = subprocess.run(["mount", "-o", "bind,ro", str(folder), str(where)], capture_output=True)
    if run.returncode:
        pytest.skip(f"cannot bind-mount read-only ({run.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _searches(monkeypatch) -> list[int]:
    """Counts the searches `build --cache` starts."""
    import protprof.sources

    started: list[int] = []
    search = protprof.sources.search_records

    def counted(records, *args, **kwargs):
        started.append(len(records))
        return search(records, *args, **kwargs)

    monkeypatch.setattr(protprof.sources, "search_records", counted)
    return started


def test_a_read_only_cache_is_refused_before_any_search(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    few, more = write_queries(tmp_path / "few.fa", 3), write_queries(tmp_path / "more.fa", 5)
    build(few, tmp_path / "a.zarr", "--cache", str(cache))
    searches = _searches(monkeypatch)
    with read_only(cache, tmp_path / "ro") as ro:
        # Everything it needs is cached: a read-only cache serves it.
        build(few, tmp_path / "b.zarr", "--cache", str(ro))
        assert open_store(tmp_path / "b.zarr").attrs["cache"]["searched"] == 0
        capsys.readouterr()
        argv = ["build", str(more), "--database", str(DEMO_DB), "-N", "2", "--cache", str(ro)]
        assert main([*argv, "--out", str(tmp_path / "c.zarr")]) == 1
        refused = f"{ro}: cannot write to this profile cache"
        why = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
        one_error_line(capsys, refused, why, "nothing was searched")
        assert main(["cache", "gc", str(ro), "--drop-corrupt"]) == 1
        one_error_line(capsys, refused, "nothing was removed")
        assert main(["cache", "stats", str(ro)]) == 0  # reading needs no write access
    assert searches == [] and not (tmp_path / "c.zarr").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_cache_without_room_or_locks_is_refused_before_any_search(tmp_path, capsys, monkeypatch):
    queries = write_queries(tmp_path / "q.fa", 5)
    argv = ["build", str(queries), "--database", str(DEMO_DB), "-N", "2"]
    argv += ["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out.zarr")]
    searches = _searches(monkeypatch)
    # 5 queries of about 300 residues need about 30 kB: the disk has 10 kB left
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10_000))
    assert main(argv) == 1
    one_error_line(capsys, "the disk is full for this", "MB needed", "nothing was searched")
    monkeypatch.setattr(shutil, "disk_usage", real)

    lockf = fcntl.lockf

    def no_locks_in(folder: Path):
        def locked(fd, operation):
            if Path(os.readlink(f"/proc/self/fd/{fd}")).parent.parent == folder:
                raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
            return lockf(fd, operation)

        return locked

    # e.g. NFS without a lock daemon, for the cache or for the output
    monkeypatch.setattr(fcntl, "lockf", no_locks_in(tmp_path / "cache"))
    assert main(argv) == 1
    one_error_line(capsys, "cannot lock files in this profile cache", "nothing was searched")
    monkeypatch.setattr(fcntl, "lockf", no_locks_in(tmp_path.parent))
    assert main(argv) == 1
    one_error_line(capsys, "out.zarr: cannot lock it", "POSIX locks")
    assert searches == [] and not (tmp_path / "out.zarr").exists()


def test_an_uncreatable_cache_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    queries = write_queries(tmp_path / "q.fa", 1)
    argv = ["build", str(queries), "--database", str(DEMO_DB), "--cache", str(blocker / "c")]
    assert main([*argv, "--out", str(tmp_path / "out.zarr")]) == 1
    one_error_line(capsys, f"{blocker / 'c'}: cannot create a profile cache there")


def test_cache_stats_tells_contexts_apart_and_counts_each_entry_once(tmp_path, capsys):
    cache, queries = tmp_path / "cache", write_queries(tmp_path / "q.fa", 2)
    build(queries, tmp_path / "a.zarr", "--cache", str(cache))
    build(queries, tmp_path / "b.zarr", "--cache", str(cache), "--pseudocount", "0.5")
    # Two writers that searched the same queries at once both published them.
    first = ProfileCache(cache).segments()[0]
    shutil.copytree(first, first.with_name(f"{first.name.split('-')[0]}-0000000000000000.zarr"))
    capsys.readouterr()
    assert main(["cache", "stats", str(cache)]) == 0
    total, *lines = capsys.readouterr().out.splitlines()
    assert total.startswith(f"{cache}: 4 entries,")
    assert len(lines) == 2 and lines[0] != lines[1]
    assert sum("2 entries (+2 duplicate copies) in 2 segments" in line for line in lines) == 1
    assert sorted(line.split("differs: ")[1] for line in lines) == [
        "profile.pseudocount=0.5",
        "profile.pseudocount=1.0",
    ]
