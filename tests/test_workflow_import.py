"""The workflow with `alignments:`: alone (no queries, no database) and beside queries (slow).

Real alignments: ESM's HHblits a3m files and OpenFold's jackhmmer Stockholm files in
../shared/data, and the demo queries' own searches kept as alignments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import SHARED_DATA, snakemake, write_config

from protprof.cli import main
from protprof.store.zarr_store import open_store

ESM = SHARED_DATA / "msa_examples_esm"
OPENFOLD = SHARED_DATA / "msa_openfold"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ESM.is_dir(), reason=f"{ESM} is not there"),
]
STORE = "results/store/profiles.zarr"


def _config(workdir: Path, **changes) -> None:
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**config, **changes}))


def _import_job_counts(workdir: Path) -> list[dict]:
    return [
        dict(open_store(p).attrs["cache"]) for p in sorted((workdir / "results/import").glob("*"))
    ]


def test_alignments_alone_and_a_rerun_with_one_more_file(tmp_path):
    folder = tmp_path / "alignments"
    shutil.copytree(ESM, folder)
    write_config(tmp_path)
    alignments = {"paths": [str(folder)], "jobs": 2, "threads": 2}
    _config(tmp_path, queries=[], database=None, alignments=alignments)
    run = snakemake(tmp_path, STORE)
    assert run.returncode == 0, run.stderr[-4000:]
    store = open_store(tmp_path / STORE)
    # The files named hhblits_uniclust_2017_10_X.a3m hold X.a3m's query: imported once.
    distinct = {f.name.removeprefix("hhblits_uniclust_2017_10_") for f in ESM.glob("*.a3m")}
    assert len(store) == len(distinct)
    assert store.attrs["source_counts"] == {"imported": len(distinct), "searched": 0}
    assert "database" not in store.attrs and store.attrs["import"]["source"] == "alignment files"
    first = _import_job_counts(tmp_path)
    # Each job builds its own files' profiles (a query in two jobs' files is built twice).
    assert len(distinct) <= sum(c["searched"] for c in first) <= len(list(ESM.glob("*.a3m")))
    # One more file: only its job reruns, and of that job only the new file is built.
    shutil.copy(OPENFOLD / "1psm_A" / "uniref90_hits.sto", folder / "1psm_A.sto")
    run = snakemake(tmp_path, STORE)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stderr.count("rule import_alignments:") == 1, run.stderr[-3000:]
    second = _import_job_counts(tmp_path)
    changed = [(a, b) for a, b in zip(first, second, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1]["searched"] == 1, (first, second)
    assert len(open_store(tmp_path / STORE)) == len(distinct) + 1


def test_alignments_beside_queries_are_not_searched(tmp_path, capsys):
    """Four of the ten queries' alignments are given too: they are imported, left out of the
    search, and the store holds every query once, its profile equal to the searched one."""
    write_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    four = tmp_path / "four.fasta"
    records = Path(config["queries"][0]).read_text().split(">")[1:]
    four.write_text("".join(">" + r for r in records[:4]))
    msas, searched = tmp_path / "msas", tmp_path / "searched.zarr"
    build = ["-q", "build", str(four), "--database", config["database"], "-N", "2"]
    build += ["--max-length", "200", "--split-method", "hash"]
    assert (
        main([*build, "--out", str(searched), "--msa-dir", str(msas), "--msa-format", "a3m"]) == 0
    )
    _config(tmp_path, alignments={"paths": [str(msas)]})
    run = snakemake(tmp_path, STORE)
    assert run.returncode == 0, run.stderr[-4000:]
    plan = json.loads((tmp_path / "results/plan/plan.json").read_text())
    store = open_store(tmp_path / STORE)
    assert plan["queries"] == len(store) - 4
    assert store.attrs["source_counts"] == {"imported": 4, "searched": len(store) - 4}
    data, before = store.read_all(), open_store(searched).read_all()
    for i, query_id in enumerate(before.ids):
        row = list(data.ids).index(query_id)
        want = before.profiles[before.offsets[i] : before.offsets[i + 1]]
        assert (data.profiles[data.offsets[row] : data.offsets[row + 1]] == want).all()
