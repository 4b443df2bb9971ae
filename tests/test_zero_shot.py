"""Zero-shot variant effects on six real assays: the readers against the raw files, log-odds
against a hand computation, and the alignment reference against `protprof build`'s profile of
the same wild type."""

from __future__ import annotations

import csv
import json
import zipfile

import numpy as np
import pytest
from helpers import SHARED_DATA

from protprof.alignments.profiles import ProfileParams
from protprof.cli import main
from protprof.evaluation import datasets as ds
from protprof.evaluation import reference as ref
from protprof.evaluation.tasks import log_odds
from protprof.jackhmmer import SearchParams
from protprof.queries.fasta import Record
from protprof.queries.ingest import IngestParams
from protprof.stages import build
from protprof.store.zarr_store import open_store

pytestmark = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"benchmark data {SHARED_DATA} not present"
)
STANDARD = set("ACDEFGHIKLMNPQRSTVWY")


def raw_rows(path, delimiter="\t"):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


@pytest.mark.parametrize("name, key", list(ds.NN4DMS.items()))
def test_nn4dms_readers_keep_every_scored_standard_variant(name, key):
    variants = ds.read_nn4dms(SHARED_DATA, name)
    rows = raw_rows(SHARED_DATA / "dms_nn4dms" / f"{key}.tsv")
    kept = [r for r in rows if r["score"] and {m[-1] for m in r["variant"].split(",")} <= STANDARD]
    assert len(variants.scores) == len(kept) and sum(variants.dropped.values()) == len(rows) - len(
        kept
    )
    assert variants.scores[0] == pytest.approx(float(kept[0]["score"]))
    offset = json.loads((SHARED_DATA / "dms_nn4dms/wt_sequences.json").read_text())[key]["wt_ofs"]
    first = kept[0]["variant"].split(",")[0]
    assert variants.mutations[0][0] == (int(first[1:-1]) - offset, first[0], first[-1])
    for mutations in variants.mutations[:500]:
        for position, wild, _ in mutations:
            assert variants.wild_type[position] == wild


def test_gb1_reader_finds_the_four_sites():
    variants = ds.read_gb1(SHARED_DATA)
    with zipfile.ZipFile(SHARED_DATA / "flip_other/gb1_splits.zip") as archive:
        rows = list(csv.DictReader(archive.read("splits/sampled.csv").decode().splitlines()))
    assert len(variants.scores) == len(rows) == 8733
    sites = {p for mutations in variants.mutations for p, _, _ in mutations}
    assert sites == {38, 39, 40, 53}  # V39, D40, G41, V54 of the 56-residue domain
    assert {variants.wild_type[p] for p in sites} == {"V", "D", "G"}
    assert variants.scores[1] == pytest.approx(1.4459050863)


def test_avgfp_variants_drop_stops_only():
    variants = ds.read_avgfp_variants(SHARED_DATA)
    rows = raw_rows(SHARED_DATA / "fluorescence_avgfp/avgfp.tsv")
    stops = sum("*" in r["variant"] for r in rows)
    assert len(variants.scores) == len(rows) - stops == 51714


def test_log_odds_sum_over_mutations():
    variants = ds.VariantSet("toy", "ACD", [[(0, "A", "C"), (2, "D", "E")], []], np.zeros(2))
    table = np.log(np.random.default_rng(0).dirichlet(np.ones(20), size=3))
    column = {c: k for k, c in enumerate("ACDEFGHIKLMNPQRSTVWY")}
    expected = table[0, column["C"]] - table[0, column["A"]] + table[2, column["E"]]
    expected -= table[2, column["D"]]
    assert log_odds(table, variants) == pytest.approx([expected, 0.0])


@pytest.mark.integration
def test_alignment_reference_equals_the_pipelines_profile(small_store, tmp_path):
    """A wild type searched by `protprof reference` gets the profile `protprof build` stores
    for it as a query, with the store's database and settings (within quantisation)."""
    wild_types = ds.variant_wild_types(SHARED_DATA)
    out = tmp_path / "ref.npz"
    args = [
        "reference",
        "--store",
        str(small_store),
        "--data",
        str(SHARED_DATA),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    profiles = ref.read(out, wild_types, small_store)
    assert set(profiles) == set(wild_types)
    attrs = open_store(small_store).attrs
    known = {k: v for k, v in attrs["search"].items() if k != "Z"}
    from protprof.jackhmmer import load_database

    database = load_database(attrs["database"]["path"])
    built = build(
        [Record("Pab1", wild_types["Pab1"])],
        database,
        tmp_path / "pab1.zarr",
        2,
        IngestParams(valid_fraction=0, test_fraction=0),
        SearchParams(**known),
        ProfileParams(**attrs["profile"]),
    )
    stored = open_store(built).profile(0)
    assert profiles["Pab1"].shape == stored.shape == (len(wild_types["Pab1"]), 20)
    assert np.abs(profiles["Pab1"] - stored).max() <= 1 / 255 + 1e-6
    # A reference of other wild types, or of another store, is refused in one line.
    other = dict(wild_types, GB1=wild_types["GB1"][:-1])
    with pytest.raises(ds.DatasetError, match="made for other wild types"):
        ref.read(out, other, small_store)
    with pytest.raises(ds.DatasetError, match="made from another store"):
        ref.read(out, wild_types, built)
