"""Benchmark readers on the real files in ../shared/data, and their refusals."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SHARED_DATA

from protprof.cli import main
from protprof.evaluation import datasets as ds

pytestmark = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"benchmark data {SHARED_DATA} not present"
)


@pytest.mark.integration
def test_secondary_structure_readers():
    counts = {s: len(ds.read_ss_flip(SHARED_DATA, s)) for s in ("train", "valid", "test")}
    assert counts == {"train": 9712, "valid": 1080, "test": 364}
    cb513 = ds.read_cb513(SHARED_DATA)
    assert len(cb513) == 511
    for e in cb513 + ds.read_ss_flip(SHARED_DATA, "test"):
        assert len(e.labels) == len(e.mask) == len(e.sequence)
        assert set(np.unique(e.labels)) <= {0, 1, 2}
    assert {ds.SS8[k] for e in cb513 for k in e.labels8} == set(ds.SS8)
    # 8 states collapse onto 3 as DSSP's usual reduction (H G I -> H, E B -> E, rest C).
    to3 = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E", "T": "C", "S": "C", "C": "C"}
    e = cb513[0]
    assert [to3[ds.SS8[k]] for k in e.labels8] == [ds.SS3[k] for k in e.labels]
    # The CSV holds whole chains; cb513_mask marks CB513's own ~84k residues (58 % of them).
    assert sum(e.mask.sum() for e in cb513) == 83991


def test_remote_homology_split_holds_out_whole_superfamilies():
    domains = ds.read_scope(SHARED_DATA, 25)
    assert len(domains) == 8617
    train, test, folds = ds.split_remote_homology(domains)
    assert len(folds) == 139 and len(train) == 3657 and len(test) == 712
    assert not {e.group for e in train} & {e.group for e in test}
    assert {int(e.label) for e in test} == set(range(len(folds)))
    for e in train + test:
        assert ds.fold_of(e.group) == folds[int(e.label)]


@pytest.mark.integration
def test_stability_and_fluorescence_readers():
    train, dropped = ds.read_stability(SHARED_DATA, "train")
    assert (len(train), dropped) == (56126, 57)
    test, _ = ds.read_stability(SHARED_DATA, "test")
    assert len(test) == 12851 and len({e.group for e in test}) == 17
    assert all(len(e.sequence) <= 50 for e in train + test)
    gfp_train, no_score = ds.read_fluorescence(SHARED_DATA, "train")
    gfp_test, _ = ds.read_fluorescence(SHARED_DATA, "test")
    assert (len(gfp_train), no_score, len(gfp_test)) == (26197, 610, 25517)
    wild = ds.read_wild_type(SHARED_DATA / "fluorescence_avgfp" / "wt_sequence.json", "avgfp")[
        "wt_aa"
    ]
    assert all(len(e.sequence) == len(wild) == 237 for e in gfp_train[:500])
    assert all(
        1 <= sum(a != b for a, b in zip(e.sequence, wild, strict=True)) <= 3
        for e in gfp_train[:500]
    )


def test_mutation_numbers_count_from_the_wild_types_first_number():
    # nn4dms numbers Pab1 from 126: its first variant G126A changes wild-type residue 0.
    info = ds.read_wild_type(SHARED_DATA / "dms_nn4dms" / "wt_sequences.json", "pab1")
    path = SHARED_DATA / "dms_nn4dms" / "pab1.tsv"
    first = path.read_text().splitlines()[1].split("\t")[0]
    assert first == "G126A" and info["wt_ofs"] == 126
    [(index, wild, mutant)] = ds._parse_mutations(path, first, info["wt_ofs"])
    assert (index, wild, mutant) == (0, "G", "A") and info["wt_aa"][index] == wild


@pytest.mark.integration
def test_contact_and_variant_readers():
    train, test = ds.read_contacts(SHARED_DATA, "train"), ds.read_contacts(SHARED_DATA, "test")
    assert (len(train), len(test)) == (81, 84)
    assert [e.sequence for e in test] == [s for _, _, s in ds.contact_chains(SHARED_DATA, "test")]
    for e in train[:10]:
        assert e.contacts.shape == (len(e.sequence),) * 2
        assert (e.contacts == e.contacts.T).all() and e.contacts.diagonal().all()
        # Chain neighbours (~3.8 A C-alpha apart) are nearly always within 8 A C-beta.
        assert np.diagonal(e.contacts, 1).mean() > 0.95
    blat = ds.read_blat_ecolx(SHARED_DATA)
    assert len(blat.mutations) == len(blat.scores) == 4996
    assert all(len(m) == 1 and blat.wild_type[m[0][0]] == m[0][1] for m in blat.mutations)


def test_missing_or_malformed_file_names_it(tmp_path, capsys):
    with pytest.raises(ds.DatasetError, match="CB513_HHblits.csv: benchmark file not found"):
        ds.read_cb513(tmp_path)
    (tmp_path / "ss_netsurfp").mkdir()
    (tmp_path / "ss_netsurfp" / "CB513_HHblits.csv").write_text("input,dssp3\nA B,C C\n")
    with pytest.raises(ds.DatasetError, match=r"CB513_HHblits.csv: missing column\(s\)"):
        ds.read_cb513(tmp_path)
    (tmp_path / "stability_rocklin").mkdir()
    path = tmp_path / "stability_rocklin" / "ssm2_stability_scores.tsv"
    lines = (SHARED_DATA / "stability_rocklin" / path.name).read_text().splitlines()
    fields = lines[2].split("\t")
    fields[1] = fields[1][:5] + "#" + fields[1][6:]
    path.write_text("\n".join([*lines[:2], "\t".join(fields)]) + "\n")
    with pytest.raises(
        ds.DatasetError,
        match=rf"ssm2_stability_scores.tsv: record {fields[0]}: "
        "characters '#'",
    ):
        ds.read_stability(tmp_path, "test")
    # Through the command line: one line on stderr, exit 1, no report.
    assert (
        main(
            [
                "evaluate",
                "no-such.pt",
                "--data",
                str(tmp_path / "nowhere"),
                "--tasks",
                "ss",
                "--out",
                str(tmp_path / "report"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere not found" in err[0]
    assert not (tmp_path / "report").exists()
