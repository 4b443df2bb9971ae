"""Tracebacks are for bugs: every subcommand, given a bad file wherever it takes one, exits
non-zero with one line naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DEMO_DB, SHARED_DATA, write_queries

from protprof.cli import COMMANDS, main
from protprof.model.checkpoint import model_state, save_checkpoint
from protprof.model.config import PRESETS
from protprof.model.encoder import ProteinEncoder

BAD_KINDS = ["missing", "folder", "empty", "binary", "text"]

# Each command with one argument replaced by {BAD}; the others are valid (see `valid`).
TEMPLATES = {
    "ingest": "ingest {BAD} --out {OUT}/s0.fasta",
    "prepare-db": "prepare-db {BAD} --out {OUT}/fp.json",
    "search shard": "search {BAD} --database {DB} --out {OUT}/s.zarr",
    "search database": "search {SHARD} --database {BAD} --out {OUT}/s.zarr",
    "search fingerprint": "search {SHARD} --database {DB} --fingerprint {BAD} --out {OUT}/s.zarr",
    "split-db": "split-db {BAD} --out {OUT}/c0.fasta {OUT}/c1.fasta",
    "init-state": "init-state {BAD} --out {OUT}/i0.pkl -N 1",
    "search-chunk state": "search-chunk {SHARD} --state {BAD} --chunk {DB} --fingerprint {FP} "
    "--out {OUT}/h.pkl -N 1",
    "search-chunk chunk": "search-chunk {SHARD} --state {STATE} --chunk {BAD} --fingerprint {FP} "
    "--out {OUT}/h.pkl -N 1",
    "merge-iteration": "merge-iteration {SHARD} --state {STATE} --hits {BAD} "
    "--out {OUT}/i1.pkl -N 1",
    "finish-shard": "finish-shard {SHARD} --state {BAD} --fingerprint {FP} "
    "--out {OUT}/s.zarr -N 1",
    "assemble": "assemble {BAD} --out {OUT}/a.zarr",
    "build queries": "build {BAD} --database {DB} --out {OUT}/b.zarr -N 1",
    "build database": "build {QUERIES} --database {BAD} --out {OUT}/b.zarr -N 1",
    "inspect": "inspect {BAD}",
    "verify": "verify {BAD}",
    "train config": "train --config {BAD} --store {STORE} --out-dir {OUT}/t",
    "train store": "train --store {BAD} --out-dir {OUT}/t --set max_steps=1",
    "train init-from": "train --store {STORE} --out-dir {OUT}/t --init-from {BAD} "
    "--set max_steps=1",
    "embed checkpoint": "embed {BAD} {QUERIES} --out {OUT}/e.npz",
    "export checkpoint": "export {BAD} --out {OUT}/hf",
    "guard queries": "guard {BAD} --data {SHARED} --out {OUT}/kept.fasta",
    "guard data": "guard {QUERIES} --data {BAD} --out {OUT}/kept.fasta",
    "evaluate checkpoint": "evaluate {BAD} --tasks variants --data {SHARED} --out {OUT}/r",
    "evaluate reference": "evaluate {CHECKPOINT} --tasks variants --data {SHARED} "
    "--reference {BAD} --out {OUT}/r",
    "reference store": "reference --store {BAD} --data {SHARED} --out {OUT}/ref.npz",
    "reference data": "reference --store {STORE} --data {BAD} --out {OUT}/ref.npz",
    "compare": "compare {BAD} --out {OUT}/c.md",
    "plan queries": "plan {BAD} --fingerprint {FP} --cache {OUT}/cache --out-dir {OUT}/plan -N 1",
    "plan fingerprint": "plan {SHARD} --fingerprint {BAD} --cache {OUT}/cache "
    "--out-dir {OUT}/plan -N 1",
    "cache": "cache stats {BAD}",
    "import": "import {BAD} --out {OUT}/i.zarr",
    "import a3m": "import {BAD} --format a3m --out {OUT}/i.zarr",
    "import stockholm": "import {BAD} --format stockholm --out {OUT}/i.zarr",
    "import openfold": "import {BAD} --layout openfold --out {OUT}/i.zarr",
    # fetch takes a URL or a dataset name: a local path is refused in one line, whatever it holds
    "fetch": "fetch {BAD} --out {OUT}/f",
    "combine": "combine {BAD} --out {OUT}/c.zarr",
    "combine searched": "combine {IMPORTED} --searched {BAD} --out {OUT}/c.zarr",
}


@pytest.fixture(scope="module")
def valid(tmp_path_factory, small_store) -> dict[str, str]:
    """Real, valid inputs for the arguments a template does not break."""
    tmp = tmp_path_factory.mktemp("valid")
    queries = write_queries(tmp / "q.fasta", 2)
    shard, fingerprint, state = tmp / "shard.fasta", tmp / "fp.json", tmp / "i0.pkl"
    # hash splits: no MMseqs2 child process, so the matrix stays in-process
    ingest = ["-q", "ingest", str(queries), "--out", str(shard), "--split-method", "hash"]
    assert main(ingest) == 0
    assert main(["-q", "prepare-db", str(DEMO_DB), "--out", str(fingerprint)]) == 0
    assert main(["-q", "init-state", str(shard), "--out", str(state), "-N", "1"]) == 0
    imported = tmp / "imported.zarr"  # one real HHblits a3m of ESM's examples
    esm = sorted((SHARED_DATA / "msa_examples_esm").glob("*.a3m"))[:1]
    if esm:  # its first 20 rows: a real alignment, profiled in a blink
        a3m = tmp / "rows.a3m"
        a3m.write_text("".join(esm[0].read_text().splitlines(keepends=True)[:40]))
        assert main(["-q", "import", str(a3m), "--out", str(imported)]) == 0
    checkpoint = tmp / "untrained.pt"  # a real model at its initialisation: loads in ~0.1 s
    save_checkpoint(checkpoint, model_state(ProteinEncoder(PRESETS["tiny"]), {}, 0))
    return {
        "CHECKPOINT": str(checkpoint),
        "IMPORTED": str(imported),
        "DB": str(DEMO_DB),
        "SHARD": str(shard),
        "FP": str(fingerprint),
        "STATE": str(state),
        "QUERIES": str(queries),
        "STORE": str(small_store),
        "SHARED": str(SHARED_DATA),
    }


def make_bad(kind: str, where: Path) -> Path:
    path = where / f"bad-{kind}"
    if kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("x\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "text":
        path.write_text("hello, this is not what you wanted\n")
    return path


def test_every_subcommand_is_covered():
    covered = {name.split()[0] for name in TEMPLATES}
    assert covered == set(COMMANDS), set(COMMANDS) ^ covered


# Empty files that are valid input: an empty shard (ingest writes every shard, even one with
# no queries) and an empty training YAML (every setting at its default).
VALID_EMPTY = {"search shard", "init-state", "train config", "plan queries"}


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys, valid, name, kind):
    if ("{SHARED}" in TEMPLATES[name] or "{IMPORTED}" in TEMPLATES[name]) and not (
        SHARED_DATA.is_dir()
    ):
        pytest.skip(f"needs the shared benchmark data at {SHARED_DATA}")
    if kind == "empty" and name in VALID_EMPTY:
        pytest.skip("an empty file is valid input here")
    bad = make_bad(kind, tmp_path)
    out = tmp_path / "out"
    argv = TEMPLATES[name].format(BAD=bad, OUT=out, **valid).split()
    code = main(["-q", *argv])  # a bug would raise here: main only catches ProtprofError
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, (argv, err)
    assert len(err) == 1 and err[0].startswith(f"protprof {argv[0]}: error: "), err
    assert str(bad) in err[0], err[0]  # names the file
    if kind == "folder":
        assert (bad / "inside.txt").exists()


@pytest.mark.parametrize("shards", ["0", "-2"])
def test_plan_without_jobs_is_one_line(tmp_path, capsys, valid, shards):
    argv = f"plan {valid['SHARD']} --fingerprint {valid['FP']} --cache {tmp_path}/cache "
    argv += f"--out-dir {tmp_path}/plan -N 1 --shards {shards}"
    assert main(["-q", *argv.split()]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"protprof plan: error: plan: --shards must be at least 1, got {shards}"]
