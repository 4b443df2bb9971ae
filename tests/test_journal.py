"""Kill-safe search jobs: the per-query journal of `protprof search` and `build`. A job killed
with SIGKILL mid-search is rerun: only the queries it had not journaled are searched, and the
store equals an uninterrupted run's bit for bit (bar its creation time and identity); torn or
corrupt records, and journals of other settings, are refused with a warning naming them.
Real demo queries against the real demo database, through the real command."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import DEMO_DB, write_queries

from protprof.alignments.profiles import ProfileParams
from protprof.cli import main
from protprof.jackhmmer import SearchParams
from protprof.queries.fasta import read_fasta
from protprof.search.journal import FRAME_BYTES, Entry, journal_path, open_journal, read_segment
from protprof.search.to_store import search_records
from protprof.store.zarr_store import QUANT, open_store, write_stores

pytestmark = pytest.mark.integration

PROTPROF = Path(sys.executable).parent / "protprof"
OPTIONS = ["--threads", "2", "-N", "2"]
ONE_ITERATION = SearchParams(iterations=1)
RESUMED = re.compile(
    r"journal (\S+): (\d+) of (\d+) queries finished by an earlier run; searching (\d+)"
)


def journaled(journal: Path) -> int:
    """Good records in a journal now (a record being appended is not counted)."""
    return sum(len(read_segment(s)[0]) for s in journal.glob("*.seg")) if journal.exists() else 0


def kill_after(command: list[str], journal: Path, n: int, log: Path) -> int:
    """Start a protprof command, SIGKILL it once `n` queries are journaled; the count then."""
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [str(PROTPROF), *command], stderr=handle, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 600  # a hung run fails the test instead of hanging it
        while process.poll() is None and time.monotonic() < deadline:
            if journaled(journal) >= n:
                os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    return journaled(journal)


def assert_same_store(a: Path, b: Path, also_differ: tuple[str, ...] = ()) -> None:
    """Every file of two stores byte-identical, and their root attributes equal except the
    creation time and identity every write gets (and `also_differ`)."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    differ = [f for f in files if (a / f).read_bytes() != (b / f).read_bytes()]
    assert [str(f) for f in differ] == ["zarr.json"]
    attrs = [json.loads((p / "zarr.json").read_text())["attributes"] for p in (a, b)]
    changed = {k for k in attrs[0].keys() | attrs[1].keys() if attrs[0].get(k) != attrs[1].get(k)}
    assert changed == {"created", "store_id", *also_differ}


def resumed(log_text: str) -> tuple[int, int, int]:
    """(finished earlier, total, searched now) from the rerun's journal line."""
    match = RESUMED.search(log_text)
    assert match, log_text[-2000:]
    return int(match[2]), int(match[3]), int(match[4])


@pytest.mark.slow
def test_killed_search_job_resumes_from_its_journal_and_writes_the_same_store(tmp_path, caplog):
    """About 60 s: an uninterrupted search, a killed one and its rerun, 16 queries."""
    queries = write_queries(tmp_path / "q.fasta", 16)
    shard = tmp_path / "shard.fasta"
    assert main(["-q", "ingest", str(queries), "--out", str(shard)]) == 0
    n = len(read_fasta(shard))
    search = ["search", str(shard), "--database", str(DEMO_DB), *OPTIONS, "--out"]
    whole, killed = tmp_path / "whole.zarr", tmp_path / "killed.zarr"
    assert main(["-q", *search, str(whole)]) == 0
    assert not journal_path(whole).exists()  # removed once the store is written

    journal = journal_path(killed)
    done = kill_after([*search, str(killed)], journal, 5, tmp_path / "killed.log")
    assert 5 <= done < n and not killed.exists()
    # A flipped byte in the first record's payload: that query is searched again.
    (segment,) = journal.glob("*.seg")
    raw = bytearray(segment.read_bytes())
    raw[FRAME_BYTES + 40] ^= 0xFF
    segment.write_bytes(bytes(raw))

    caplog.set_level(logging.INFO)
    assert main([*search, str(killed)]) == 0
    assert resumed(caplog.text) == (done - 1, n, n - done + 1)
    assert f"{segment}: record at byte 0 fails its checksum; skipped" in caplog.text
    assert_same_store(whole, killed)
    assert not journal.exists()


@pytest.mark.slow
def test_killed_cached_build_resumes_from_its_journal(tmp_path, caplog):
    """About 60 s: `build --cache`: the journal lives beside the output, not beside the
    temporary shard store (a temporary the next write clears), and is gone once published."""
    queries = write_queries(tmp_path / "q.fasta", 16)
    build = ["build", str(queries), "--database", str(DEMO_DB), *OPTIONS, "--out"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    whole, killed = tmp_path / "a" / "store.zarr", tmp_path / "b" / "store.zarr"
    assert main(["-q", *build, str(whole), "--cache", str(tmp_path / "a" / "cache")]) == 0

    journal = journal_path(killed)
    cache = ["--cache", str(tmp_path / "b" / "cache")]
    done = kill_after([*build, str(killed), *cache], journal, 4, tmp_path / "killed.log")
    n = len(open_store(whole))
    assert 4 <= done < n and not killed.exists()

    caplog.set_level(logging.INFO)
    assert main([*build, str(killed), *cache]) == 0
    assert resumed(caplog.text) == (done, n, n - done)
    assert_same_store(whole, killed, also_differ=("cache",))
    # the cache's record of the build: the same counts (the rerun's resumed queries were
    # searched by this build, not reused from the cache), another cache folder
    attrs = [open_store(p).attrs["cache"] for p in (whole, killed)]
    assert [{k: v for k, v in a.items() if k != "path"} for a in attrs] == [
        {"searched": n, "reused": 0}
    ] * 2
    assert not journal.exists()
    assert not list(killed.parent.glob(".store.zarr.tmp-*"))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_fasta(write_queries(tmp_path_factory.mktemp("q") / "q.fasta", 6))


def _search(records, database, out, journal, params=ONE_ITERATION, **kwargs):
    return search_records(
        records,
        [0] * len(records),
        database,
        params,
        ProfileParams(),
        2,
        out,
        journal=journal,
        **kwargs,
    )


def test_a_kept_journal_serves_its_queries_and_other_settings_discard_it(
    records, demo_database, tmp_path, caplog
):
    """In process, 6 queries, -N 1: a journal left by a search of 4 of them is used by a search
    of all 6 (2 searched, the store equal to one searched without a journal, alignments too);
    a journal of another E-value is discarded with a warning naming the setting."""
    journal = tmp_path / "j"
    _search(records[:4], demo_database, tmp_path / "first.zarr", journal, keep_journal=True)
    assert journaled(journal) == 4

    caplog.set_level(logging.INFO)
    seen: list[object] = []
    msa = tmp_path / "msa"
    _search(records, demo_database, tmp_path / "kept.zarr", None, msa_dir=tmp_path / "m0")
    # Alignments kept: a journal without them (its `alignments` setting: None) is discarded.
    _search(
        records, demo_database, tmp_path / "j.zarr", journal, progress=seen.append, msa_dir=msa
    )
    assert (
        "a journal of 1 segments made with other settings: alignments None (now 'stockholm')"
        in caplog.text
    )
    assert len(seen) == 6 and not journal.exists()
    assert [p.read_bytes() for p in sorted(msa.iterdir())] == [
        p.read_bytes() for p in sorted((tmp_path / "m0").iterdir())
    ]

    _search(records[:4], demo_database, tmp_path / "first.zarr", journal, keep_journal=True)
    caplog.clear()
    seen.clear()
    counted: list[int] = []
    out = tmp_path / "resumed.zarr"
    _search(records, demo_database, out, journal, progress=seen.append, resumed=counted.append)
    assert resumed(caplog.text) == (4, 6, 2) and len(seen) == 2 and counted == [4]
    assert_same_store(tmp_path / "kept.zarr", out)

    _search(records[:4], demo_database, tmp_path / "first.zarr", journal, keep_journal=True)
    caplog.clear()
    other = SearchParams(iterations=1, E=1.0)
    _search(records, demo_database, tmp_path / "other.zarr", journal, other)
    assert "made with other settings: search.E 10.0 (now 1.0)" in caplog.text
    assert resumed(caplog.text) == (0, 6, 6)


def test_torn_and_corrupt_records_are_skipped_and_the_journal_outlives_temporaries(
    records, demo_database, tmp_path, caplog
):
    """A record cut short by a kill, a flipped header byte (reading resumes at the next
    record), and a stale temporary of the output that the next write clears while the journal
    stays."""
    journal = tmp_path / "j"
    out = tmp_path / "out.zarr"
    _search(records[:3], demo_database, out, journal, keep_journal=True)
    (segment,) = journal.glob("*.seg")
    raw = segment.read_bytes()
    entries, problems = read_segment(segment)
    assert len(entries) == 3 and problems == []
    ids = [e.id for e in entries]
    second = raw.index(b"PPJ1", 1)
    damaged = bytearray(raw)
    damaged[second + 6] ^= 0x01  # the second record's length
    segment.write_bytes(bytes(damaged) + raw[:100])  # and a torn record at the end
    entries, problems = read_segment(segment)
    assert [e.id for e in entries] == [ids[0], ids[2]]
    assert problems == [
        f"{segment}: record at byte {second} has a corrupt header",
        f"{segment}: record at byte {len(raw)} is cut short (a kill while it was appended)",
    ]
    stale = tmp_path / ".out.zarr.tmp-search"
    stale.mkdir()
    write_stores(out, [], {})  # what a store write does first: clear the output's temporaries
    assert not stale.exists() and journaled(journal) == 2


def test_ctrl_c_keeps_a_journal_with_records_and_names_it_and_drops_an_empty_one(tmp_path):
    """KeyboardInterrupt through an open journal: with a finished query the journal stays and
    the exception carries a note naming it (the CLI prints it); with none it is removed."""
    wanted = {"settings": "test"}
    profile = np.zeros((3, 20), np.uint8)
    profile[:, 0] = QUANT  # rows of a quantised profile sum to QUANT
    entry = Entry("q1", "MKV", profile, 2, 1.5)
    for append, kept in ((False, False), (True, True)):
        path = journal_path(tmp_path / f"{append}.zarr")
        with pytest.raises(KeyboardInterrupt) as raised:
            with open_journal(path, wanted) as journal:
                assert journal is not None
                if append:
                    journal.append(entry)
                raise KeyboardInterrupt
        assert path.exists() == kept
        notes = getattr(raised.value, "__notes__", [])
        if kept:
            assert notes == [
                f"the 1 queries searched so far are kept in {path}: "
                "the same command continues from them"
            ]
            # A search still running when Ctrl-C came finishes later: it appends nothing.
            assert journal is not None
            journal.append(Entry("q2", "MKL", profile, 1, 1.0))
            with open_journal(path, wanted) as journal:
                assert journal is not None and list(journal.entries) == [("q1", "MKV")]
        else:
            assert notes == []
