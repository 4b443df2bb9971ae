"""Outputs are never lost: foreign paths refused, truncated databases refused, one writer per
output, unwritable or full disks found early with one line, interrupted writes repaired, Ctrl-C
prompt. Real demo data throughout, through the real CLI."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from helpers import CLI, DEMO_DB, DEMO_QUERIES, one_error_line, require_mounts, write_queries

from protprof import jackhmmer
from protprof.atomic import atomic_output, claim_output
from protprof.cli import main
from protprof.search.journal import journal_path
from protprof.store.zarr_store import STORE, open_store


def user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("years of work\n")
    return path


def build(queries: Path, out: Path, *extra: str, database: Path = DEMO_DB) -> list[str]:
    return [
        "build",
        str(queries),
        "--database",
        str(database),
        "--out",
        str(out),
        "-N",
        "1",
        "--threads",
        "2",
        *extra,
    ]


@pytest.fixture(scope="module")
def truncated_db(tmp_path_factory) -> Path:
    """The demo database cut in the middle, as a partial download leaves it."""
    path = tmp_path_factory.mktemp("db") / "partial.fasta.gz"
    data = DEMO_DB.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "command",
    [
        lambda q, d: build(q, d),
        lambda q, d: build(q, d.parent / "new.zarr", "--msa-dir", str(d)),
        lambda q, d: ["embed", str(q), str(q), "--out", str(d)],
        lambda q, d: ["prepare-db", str(DEMO_DB), "--out", str(d)],
        lambda q, d: ["ingest", str(q), "--out", str(d.parent / "s0.fasta"), str(d)],
        lambda q, d: ["split-db", str(DEMO_DB), "--out", str(d)],
    ],
    ids=[
        "build --out",
        "build --msa-dir",
        "embed --out",
        "prepare-db --out",
        "ingest --out",
        "split-db --out",
    ],
)
def test_a_users_folder_named_as_output_is_refused_and_kept(tmp_path, capsys, command):
    queries = write_queries(tmp_path / "q.fasta", 3)
    folder = user_folder(tmp_path / "mine")
    assert main(command(queries, folder)) == 1
    one_error_line(capsys, str(folder), "is a folder", "refusing to replace it", "--force")
    assert (folder / "thesis.tex").read_text() == "years of work\n"
    # refused before any work: no other output appeared either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "q.fasta"]


@pytest.mark.integration
def test_own_outputs_are_replaced_foreign_files_only_with_force(tmp_path, capsys):
    out = tmp_path / "db.json"
    assert main(["prepare-db", str(DEMO_DB), "--out", str(out)]) == 0
    assert main(["prepare-db", str(DEMO_DB), "--out", str(out)]) == 0  # its own: replaced
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}\n')
    capsys.readouterr()
    assert main(["prepare-db", str(DEMO_DB), "--out", str(notes)]) == 1
    one_error_line(capsys, str(notes), "not a protprof database fingerprint")
    assert notes.read_text() == '{"my": "notes"}\n'
    assert main(["prepare-db", str(DEMO_DB), "--out", str(notes), "--force"]) == 0
    assert '"n_sequences": 5000' in notes.read_text()


@pytest.mark.integration
def test_store_is_replaced_by_a_rebuild_and_a_folder_only_with_force(tmp_path, capsys):
    queries = write_queries(tmp_path / "q.fasta", 3)
    out = tmp_path / "out.zarr"
    assert main(build(queries, out)) == 0
    first = open_store(out).identity
    assert main(build(queries, out)) == 0
    assert len(open_store(out)) == 3 and STORE.recognise(out)
    assert open_store(out).identity != first  # replaced by the rebuild
    folder = user_folder(tmp_path / "mine")
    assert main(build(queries, folder, "--force")) == 0
    assert len(open_store(folder)) == 3 and not (folder / "thesis.tex").exists()


@pytest.mark.parametrize(
    "command",
    [
        lambda db, tmp: ["prepare-db", str(db), "--out", str(tmp / "fp.json")],
        lambda db, tmp: build(write_queries(tmp / "q.fasta", 2), tmp / "o.zarr", database=db),
        lambda db, tmp: ["split-db", str(db), "--out", str(tmp / "c0.fa"), str(tmp / "c1.fa")],
    ],
    ids=["prepare-db", "build", "split-db"],
)
def test_truncated_gzip_database_is_refused(tmp_path, capsys, truncated_db, command):
    assert main(command(truncated_db, tmp_path)) == 1
    one_error_line(capsys, str(truncated_db), "truncated or corrupt gzip")
    assert not [p for p in tmp_path.iterdir() if p.name != "q.fasta"]


@pytest.mark.integration
def test_truncated_gzip_chunk_is_refused_by_search_chunk(tmp_path, capsys, truncated_db):
    queries = write_queries(tmp_path / "q.fasta", 2)
    shard = tmp_path / "shard.fasta"
    state, fingerprint = tmp_path / "i0.pkl", tmp_path / "fp.json"
    assert main(["ingest", str(queries), "--out", str(shard)]) == 0
    assert main(["init-state", str(shard), "--out", str(state), "-N", "1"]) == 0
    assert main(["prepare-db", str(DEMO_DB), "--out", str(fingerprint)]) == 0
    capsys.readouterr()
    out = tmp_path / "hits.pkl"
    assert (
        main(
            [
                "search-chunk",
                str(shard),
                "--state",
                str(state),
                "--chunk",
                str(truncated_db),
                "--fingerprint",
                str(fingerprint),
                "--out",
                str(out),
                "-N",
                "1",
            ]
        )
        == 1
    )
    one_error_line(capsys, str(truncated_db), "truncated")
    assert not out.exists()


@pytest.mark.integration
def test_second_writer_of_one_output_is_refused(tmp_path):
    out = tmp_path / "fp.json"
    with claim_output(out):  # this process holds it, as a running build would
        run = subprocess.run(
            [*CLI, "prepare-db", str(DEMO_DB), "--out", str(out)], capture_output=True, text=True
        )
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0 and "another protprof run" in run.stderr
    assert not out.exists()
    # the lock dies with its holder: the next run is not blocked
    assert main(["prepare-db", str(DEMO_DB), "--out", str(out)]) == 0
    assert not list(tmp_path.glob(".*"))  # no lock, probe or temporary left behind


# Claims an output as a command does, says so, and holds it until killed.
_HOLDER = """
import sys, time
from protprof.atomic import claim_output
with claim_output(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.integration
def test_killed_holder_leaves_no_stale_lock(tmp_path, capsys):
    out = tmp_path / "fp.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        # It really holds the lock: a run is refused while it lives.
        assert main(["prepare-db", str(DEMO_DB), "--out", str(out)]) == 1
        one_error_line(capsys, "another protprof run")
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".fp.json.lock").exists()  # killed holding it: the file stays behind
    assert main(["prepare-db", str(DEMO_DB), "--out", str(out)]) == 0


def test_unwritable_output_fails_before_the_search(tmp_path, capsys, monkeypatch):
    queries = write_queries(tmp_path / "q.fasta", 3)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    loaded = []
    monkeypatch.setattr(jackhmmer, "load_database", lambda *a, **k: loaded.append(a))
    assert main(build(queries, blocker / "out.zarr")) == 1
    one_error_line(capsys, str(blocker / "out.zarr"), "cannot write there")
    assert not loaded  # found before loading the database (and so before searching)


def _mount(args: list[str], where: Path) -> None:
    require_mounts()
    where.mkdir(exist_ok=True)
    result = subprocess.run(["mount", *args, str(where)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({result.stderr.strip() or 'mount failed'})")


def test_read_only_folder_fails_before_any_work(tmp_path, capsys):
    source, ro = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    _mount(["-o", "bind,ro", str(source)], ro)
    try:
        queries = write_queries(tmp_path / "q.fasta", 3)
        assert main(build(queries, ro / "out.zarr")) == 1
        one_error_line(capsys, str(ro / "out.zarr"), "cannot write there", "Read-only")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.integration
def test_full_disk_is_one_line_and_keeps_the_old_store(tmp_path, capsys):
    disk = tmp_path / "disk"
    _mount(["-t", "tmpfs", "-o", "size=96k", "tmpfs"], disk)
    try:
        few, many = write_queries(tmp_path / "few.fasta", 2), write_queries(tmp_path / "m.fa", 60)
        out = disk / "out.zarr"
        assert main(build(few, out)) == 0
        capsys.readouterr()
        assert main(build(many, out)) == 1
        one_error_line(capsys, str(out), "the disk is full")
        assert len(open_store(out)) == 2  # the previous store is intact
        assert sorted(p.name for p in disk.iterdir()) == ["out.zarr"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.integration
def test_interrupted_replacement_is_repaired_on_the_next_write(tmp_path, capsys):
    queries = write_queries(tmp_path / "q.fasta", 3)
    out = tmp_path / "out.zarr"
    assert main(build(queries, out)) == 0
    # A kill between the two renames of a replacement: the old store aside, the new one not in
    # place yet; plus a temporary from a kill during writing.
    old, tmp = tmp_path / ".out.zarr.old-1234abcd", tmp_path / ".out.zarr.tmp-deadbeef"
    os.replace(out, old)
    tmp.mkdir()
    bad = tmp_path / "bad.fasta"
    bad.write_text(">a\nMK1V\n")
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    # Commands refused before they write change nothing: bad queries, another kind of output
    # (checked against the store left aside, which its write would put back).
    assert main(build(bad, out)) == 1
    one_error_line(capsys, str(bad), "character '1'")
    assert main(["prepare-db", str(DEMO_DB), "--out", str(out)]) == 1
    one_error_line(capsys, f"{out}: exists (left aside by an interrupted write, at {old})")
    with claim_output(out, STORE):
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == leftovers
    # The next write puts the old store back first: a write that fails keeps it.
    with pytest.raises(RuntimeError), atomic_output(out, STORE):
        assert len(open_store(out)) == 3
        raise RuntimeError("killed while writing")
    assert len(open_store(out)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.fasta", "out.zarr", "q.fasta"]


@pytest.mark.integration
def test_alignment_files_are_unique_and_reversible(tmp_path):
    sequence = write_queries(tmp_path / "one.fasta", 1).read_text().splitlines()[1]
    ids = ["q/1", "q_1", "sp|P1|X_HUMAN", ".hidden", "50%"]
    queries = tmp_path / "q.fasta"
    # distinct sequences (ingest drops repeats): vary one residue
    queries.write_text("".join(f">{i}\n{sequence[:-1]}{'ACDEF'[k]}\n" for k, i in enumerate(ids)))
    msas = tmp_path / "msas"
    assert main(build(queries, tmp_path / "o.zarr", "--msa-dir", str(msas))) == 0
    index = (msas / "index.tsv").read_text().splitlines()[1:]
    files = dict(line.split("\t") for line in index)
    assert sorted(files) == sorted(ids)
    assert len(set(files.values())) == len(ids)
    for query_id, name in files.items():
        assert (msas / name).is_file() and not name.startswith(".")
        assert urllib.parse.unquote(name.removesuffix(".sto")) == query_id
    assert files["sp|P1|X_HUMAN"] == "sp|P1|X_HUMAN.sto"


@pytest.mark.slow
def test_ctrl_c_stops_a_build_and_keeps_its_finished_searches(tmp_path, caplog):
    """Ctrl-C once some queries are searched: exit 130 without waiting for the searches in
    flight, no store, and the finished queries kept in the journal the message names; the same
    command then continues from them to the store an uninterrupted build writes."""
    out = tmp_path / "out.zarr"
    journal = journal_path(out)
    build_cmd = build(DEMO_QUERIES, out, "-N", "3")
    # A runner started in the background (`cmd &` without job control, nohup) passes SIGINT on
    # ignored, and Python then keeps ignoring it: give the build the terminal's default.
    process = subprocess.Popen(
        [*CLI, "-q", *build_cmd],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not any(s.stat().st_size for s in journal.glob("*.seg")):  # a query is journaled
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)  # the demo's in-flight searches take < 1 s
    assert process.returncode == 130, err
    (line,) = err.strip().splitlines()
    kept = re.fullmatch(
        r"protprof build: interrupted; the (\d+) queries searched so far are kept in "
        rf"{re.escape(str(journal))}: the same command continues from them",
        line,
    )
    assert kept, line
    assert sorted(p.name for p in tmp_path.iterdir()) == [journal.name]
    with caplog.at_level(logging.INFO, logger="protprof"):
        assert main(build_cmd) == 0
    resumed = re.search(r"(\d+) of (\d+) queries finished by an earlier run", caplog.text)
    assert resumed and int(resumed[1]) >= int(kept[1]) > 0
    assert len(open_store(out).read_all().ids) == int(resumed[2])
    assert not journal.exists()
