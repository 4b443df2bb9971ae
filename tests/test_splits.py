"""Homology-aware splits on real family-rich data (the Pfam seeds and globins of HMMER's tutorial,
the demo queries): no cluster spans two splits, checked by an independent exhaustive MMseqs2
search; old queries keep their split when queries are added (or the documented exception);
the store records the method; without MMseqs2, a clear refusal or the explicit hash method."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers import DEMO_QUERIES, SHARED_DATA

from protprof import workflow_params
from protprof.cli import main
from protprof.errors import ConfigError, ProtprofError
from protprof.queries.clusters import homolog_pairs, homology_clusters
from protprof.queries.fasta import Record, read_fasta
from protprof.queries.ingest import (
    IngestParams,
    _digest,
    assign_splits,
    ingest_attrs,
    read_shard,
    split_of,
)
from protprof.store.zarr_store import open_store, verify

needs_mmseqs = pytest.mark.skipif(
    shutil.which("mmseqs") is None, reason="MMseqs2 is not installed (apt-get install mmseqs2)"
)

PFAM = SHARED_DATA / "pfam_seeds_hmmer"
# Larger valid and test shares than the default, so that each split holds several families.
PARAMS = IngestParams(valid_fraction=0.2, test_fraction=0.2)
HASH = dataclasses.replace(PARAMS, split_method="hash")
VENV_BIN = str(Path(sys.executable).parent)


def _stockholm(path: Path) -> list[Record]:
    rows: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "//")):
            name, aligned = line.split()
            rows[name] = rows.get(name, "") + aligned
    return [Record(n, "".join(c for c in a.upper() if c.isalpha())) for n, a in rows.items()]


@pytest.fixture(scope="module")
def family_rich() -> list[Record]:
    """Pfam seed members of 8 families, 45 globins and the 150 demo queries (unique, >= 20)."""
    records = [r for path in sorted(PFAM.glob("*.sto")) for r in _stockholm(path)]
    records += read_fasta(PFAM / "globins45.fa") + read_fasta(DEMO_QUERIES)
    seen: set[str] = set()
    unique = []
    for r in records:
        if len(r.sequence) >= 20 and r.sequence not in seen:
            seen.add(r.sequence)
            unique.append(r)
    return unique


def _independent_pairs(sequences: list[str], tmp: Path) -> list[tuple[int, int, float]]:
    """Every pair at >= 30 % identity over >= 80 % of both sequences, by an exhaustive
    `mmseqs easy-search` (no prefilter), thresholds applied here from its columns."""
    fasta = tmp / "all.fasta"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in enumerate(sequences)))
    out = tmp / "check.tsv"
    subprocess.run(
        ["mmseqs", "easy-search", str(fasta), str(fasta), str(out), str(tmp / "w")]
        + ["--exhaustive-search", "-e", "1e-3", "--threads", "2", "-v", "1"]
        + ["--format-output", "query,target,fident,qcov,tcov"],
        check=True,
    )
    pairs = []
    for line in out.read_text().splitlines():
        q, t, fident, qcov, tcov = line.split("\t")
        if q != t and float(fident) >= 0.3 and min(float(qcov), float(tcov)) >= 0.8:
            pairs.append((int(q), int(t), float(fident)))
    return pairs


@pytest.fixture(scope="module")
def clustered(family_rich) -> tuple[list[str], list[int], list[int]]:
    """The family-rich set's sequences, clusters and splits."""
    sequences = [r.sequence for r in family_rich]
    labels = homology_clusters(sequences, 0.3, 0.8, threads=2)
    return sequences, labels, assign_splits(sequences, PARAMS, threads=2)


def _anchors(sequences: list[str], labels: list[int]) -> list[str]:
    best: dict[int, str] = {}
    for label, s in zip(labels, sequences, strict=True):
        best[label] = min(best.get(label, s), s, key=_digest)
    return [best[label] for label in labels]


@needs_mmseqs
@pytest.mark.slow
def test_no_test_sequence_has_a_training_homolog(clustered, tmp_path):
    sequences, labels, splits = clustered
    pairs = _independent_pairs(sequences, tmp_path)
    assert len(pairs) > 1000  # family-rich indeed: the check has something to find
    crossing = [(q, t, f) for q, t, f in pairs if splits[q] != splits[t]]
    assert crossing == []
    # Multi-member families on both sides of the train/test line, so the check is not
    # passed by a one-sided split.
    for code in (0, 2):
        families = {labels[i] for i in range(len(sequences)) if splits[i] == code}
        assert sum(labels.count(label) >= 3 for label in families) >= 2, code
    # The same data split by hash puts homologs of test sequences in training.
    hashed = assign_splits(sequences, HASH)
    assert sum(hashed[q] != hashed[t] for q, t, _ in pairs) > 100


@needs_mmseqs
@pytest.mark.slow
def test_a_cluster_takes_the_split_its_smallest_hash_member_hashes_to(clustered):
    sequences, labels, splits = clustered
    anchors = _anchors(sequences, labels)
    assert splits == [split_of(a, HASH) for a in anchors]
    assert len(set(labels)) == len(set(anchors)) < len(sequences)
    # A query without homologs gets exactly its hash split.
    singletons = [i for i, lab in enumerate(labels) if labels.count(lab) == 1]
    assert len(singletons) > 50
    assert all(splits[i] == split_of(sequences[i], HASH) for i in singletons)


@needs_mmseqs
@pytest.mark.slow
def test_adding_queries_keeps_old_splits_but_where_a_cluster_gains_a_new_anchor(
    family_rich, clustered
):
    # Old: every other record, then the others are added (each family gains members).
    order = list(range(0, len(family_rich), 2)) + list(range(1, len(family_rich), 2))
    sequences, labels, splits = clustered
    old = [sequences[i] for i in order[: (len(sequences) + 1) // 2]]
    old_splits = assign_splits(old, PARAMS, threads=2)
    old_anchor = _anchors(old, homology_clusters(old, 0.3, 0.8, threads=2))
    new_anchor = _anchors(sequences, labels)
    index = {s: i for i, s in enumerate(sequences)}
    new_splits = [splits[index[s]] for s in old]
    kept_anchor = [i for i, s in enumerate(old) if old_anchor[i] == new_anchor[index[s]]]
    moved = [i for i in range(len(old)) if old_splits[i] != new_splits[i]]
    # Exact: a query whose cluster kept its anchor keeps its split; a query moves only when
    # its cluster's anchor changed (a new member with a smaller hash, or a merge).
    assert all(old_splits[i] == new_splits[i] for i in kept_anchor)
    assert not set(moved) & set(kept_anchor)
    # Doubling a family-rich set changes many anchors (each new member of a cluster of n
    # becomes its anchor with probability 1/(n+1)); a changed anchor moves its cluster only
    # when it hashes to another split: here, those of the train-heavy hash buckets stay.
    print(f"kept anchor {len(kept_anchor)}, moved {len(moved)} of {len(old)}")
    assert 0 < len(moved) < len(old) - len(kept_anchor)


@pytest.mark.integration
@needs_mmseqs
def test_ingest_writes_cluster_splits_and_the_store_records_the_method(small_store, tmp_path):
    store = open_store(small_store)
    ingest = store.attrs["ingest"]
    assert (ingest["split_method"], ingest["split_identity"], ingest["split_coverage"]) == (
        "mmseqs",
        0.3,
        0.8,
    )
    assert ingest["split"] == ingest_attrs(IngestParams(max_length=400))["split"]
    assert ingest["split"]["cov_mode"] == 0 and ingest["split"]["evalue"] == 1e-3
    assert verify(small_store) == []
    # A store assembled from shards made with the hash method says so (and verifies).
    out = tmp_path / "hash.zarr"
    assert main(["assemble", str(small_store), "--out", str(out), "--split-method", "hash"]) == 0
    assert open_store(out).attrs["ingest"] == asdict(IngestParams(split_method="hash"))
    assert verify(out) == []


def _ingest(tmp_path: Path, path: str, *options: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "ingested.fasta"
    command = [f"{VENV_BIN}/protprof", "ingest", str(DEMO_QUERIES), "--out", str(out)]
    env = {"PATH": path, "HOME": str(tmp_path)}
    return subprocess.run([*command, *options], capture_output=True, text=True, env=env)


@pytest.mark.integration
def test_without_mmseqs_ingest_refuses_in_one_line_and_hash_still_works(tmp_path):
    assert shutil.which("mmseqs", path=VENV_BIN) is None
    run = _ingest(tmp_path, VENV_BIN)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "protprof ingest: error: split_method mmseqs splits queries by homology cluster with "
        "MMseqs2, which is not on PATH: install it (Debian: apt-get install mmseqs2) or set "
        "ingest.split_method: hash (--split-method hash: by sequence hash, close homologs may "
        "then sit in different splits)"
    )
    assert not (tmp_path / "ingested.fasta").exists()
    run = _ingest(tmp_path, VENV_BIN, "--split-method", "hash")
    assert run.returncode == 0, run.stderr
    records, splits = read_shard(tmp_path / "ingested.fasta")
    params = IngestParams(split_method="hash")
    assert splits == [split_of(r.sequence, params) for r in records]
    assert len(records) == 149 and splits.count(2) == 2
    # The per-sequence hash is refused for cluster splits (it would label homologs apart).
    with pytest.raises(ConfigError, match=r"split_method 'mmseqs' needs every sequence at once"):
        split_of(records[0].sequence, IngestParams())


def test_the_workflow_refuses_mmseqs_splits_without_mmseqs_at_parse_time(monkeypatch):
    monkeypatch.setenv("PATH", VENV_BIN)
    with pytest.raises(ConfigError, match=r"apt-get install mmseqs2\) or set ingest.split_method"):
        workflow_params.ingest({"ingest": {}})
    assert workflow_params.ingest({"ingest": {"split_method": "hash"}}).split_method == "hash"


@needs_mmseqs
def test_an_mmseqs_failure_is_one_error_with_its_own_message():
    """MMseqs2 refusing a call (here an option it does not know) is a ProtprofError that says
    which step failed and carries MMseqs2's own complaint, not a traceback or an empty result."""
    with pytest.raises(ProtprofError, match=r"^mmseqs easy-search failed: .*no-such-option"):
        homolog_pairs(["MKVLAAGIVG", "MKVLAAGIVA"], 0.3, 0.8, 1, "--no-such-option")
