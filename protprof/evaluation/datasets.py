"""Readers for the downstream benchmark files (layout of ../shared/data, see its README).

Every reader takes the data folder and returns plain records; a missing or malformed file
raises `DatasetError` naming the file (and the record where it can). Nothing here downloads.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from protprof.alphabet import RESIDUES
from protprof.errors import ProtprofError

SS3 = "HEC"
SS8 = "HGIEBTSC"
_RESIDUE_SET = frozenset(RESIDUES)


class DatasetError(ProtprofError, ValueError):
    """A benchmark file is missing or not in the format its reader expects."""


@dataclass
class ResidueExample:
    """A sequence with one integer label per residue; `mask` marks residues to learn/score."""

    id: str
    sequence: str
    labels: np.ndarray  # (L,) int64
    mask: np.ndarray  # (L,) bool
    labels8: np.ndarray | None = None  # DSSP 8-state labels where the file has them


@dataclass
class SequenceExample:
    """One sequence with a per-sequence label (a class index or a regression value)."""

    id: str
    sequence: str
    label: float  # a class index for classification, a value for regression
    group: str = ""  # e.g. the SCOPe superfamily (what the split holds out)


@dataclass
class ContactExample:
    """One crystal chain: its sequence and Cβ contact map."""

    id: str
    sequence: str
    contacts: np.ndarray  # (L, L) bool, C-beta (C-alpha for glycine) closer than 8 A
    valid: np.ndarray  # (L,) bool: residues whose C-beta position is known


@dataclass
class VariantSet:
    """A deep mutational scan: the wild type and, per variant, its mutations and score."""

    name: str
    wild_type: str
    mutations: list[list[tuple[int, str, str]]]  # (0-based position, wt residue, mutant)
    scores: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: benchmark file not found (is the data folder right?)")
    return path


def _check_sequence(path: Path, record: str, sequence: str) -> str:
    sequence = sequence.strip().upper()
    bad = set(sequence) - _RESIDUE_SET
    if not sequence or bad:
        what = "no residues" if not sequence else f"characters {''.join(sorted(bad))!r}"
        raise DatasetError(f"{path}: record {record}: {what} in the sequence")
    return sequence


def _tsv(path: Path, columns: tuple[str, ...], delimiter: str = "\t") -> list[dict[str, str]]:
    _need(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter, skipinitialspace=True)
            fieldnames = [name.strip() for name in reader.fieldnames or []]
            missing = [c for c in columns if c not in fieldnames]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing} (has {fieldnames[:12]})")
            reader.fieldnames = fieldnames
            return list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: not a readable delimited text file ({e})") from e


def _fasta_pairs(path: Path, text: str) -> list[tuple[str, str]]:
    records: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(">"):
            records.append((line[1:], ""))
        elif line:
            if not records:
                raise DatasetError(f"{path}: text before the first '>' header")
            records[-1] = (records[-1][0], records[-1][1] + line)
    if not records:
        raise DatasetError(f"{path}: no FASTA records")
    return records


# ---------------------------------------------------------------- secondary structure


def _ss_labels(path: Path, record: str, states: str, alphabet: str) -> np.ndarray:
    try:
        return np.array([alphabet.index(s) for s in states], dtype=np.int64)
    except ValueError as e:
        bad = sorted(set(states) - set(alphabet))
        raise DatasetError(f"{path}: record {record}: labels {bad} outside {alphabet!r}") from e


def read_ss_flip(data: Path, split: str = "train") -> list[ResidueExample]:
    """FLIP 'sampled' 3-state secondary structure (NetSurfP-2.0 train + NEW364 test).

    `split`: train (SET=train, VALIDATION=False), valid (VALIDATION=True) or test (NEW364).
    Residues whose mask digit is 0 (unresolved in the structure) are masked out.
    """
    path = _need(Path(data) / "ss_flip" / "secondary_structure_splits.zip")
    try:
        with zipfile.ZipFile(path) as archive:
            texts = {
                name: archive.read(f"splits/{name}.fasta").decode("ascii")
                for name in ("sampled", "mask", "sequences")
            }
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not the FLIP secondary-structure archive ({e})") from e
    wanted = {"train": ("train", "False"), "valid": ("train", "True"), "test": ("test", "False")}
    if split not in wanted:
        raise DatasetError(f"read_ss_flip: split must be train, valid or test, got {split!r}")
    sequences = dict(_fasta_pairs(path, texts["sequences"]))
    masks = dict(_fasta_pairs(path, texts["mask"]))
    examples = []
    for header, states in _fasta_pairs(path, texts["sampled"]):
        name, *tags = header.split()
        values = dict(tag.split("=", 1) for tag in tags if "=" in tag)
        if (values.get("SET"), values.get("VALIDATION")) != wanted[split]:
            continue
        if name not in sequences or name not in masks:
            raise DatasetError(f"{path}: record {name}: no sequence or mask for its labels")
        sequence = _check_sequence(path, name, sequences[name])
        mask = masks[name]
        if not len(sequence) == len(states) == len(mask) or set(mask) - {"0", "1"}:
            raise DatasetError(f"{path}: record {name}: sequence, labels and mask disagree")
        examples.append(
            ResidueExample(
                name,
                sequence,
                _ss_labels(path, name, states, SS3),
                np.frombuffer(mask.encode(), np.uint8) == ord("1"),
            )
        )
    return examples


def read_cb513(data: Path) -> list[ResidueExample]:
    """CB513 (NetSurfP-2.0 CSV): 3- and 8-state DSSP labels; `cb513_mask` 1.0 = scored."""
    path = Path(data) / "ss_netsurfp" / "CB513_HHblits.csv"
    rows = _tsv(path, ("input", "dssp3", "dssp8", "cb513_mask"), delimiter=",")
    examples = []
    for n, row in enumerate(rows, start=2):
        record = f"line {n}"
        sequence = _check_sequence(path, record, "".join(row["input"].split()))
        ss3, ss8 = "".join(row["dssp3"].split()), "".join(row["dssp8"].split())
        try:
            mask = np.array([float(v) for v in row["cb513_mask"].split()]) > 0.5
        except ValueError as e:
            raise DatasetError(f"{path}: {record}: cb513_mask is not numeric") from e
        if not len(sequence) == len(ss3) == len(ss8) == len(mask):
            raise DatasetError(f"{path}: {record}: sequence, dssp3, dssp8 and mask lengths differ")
        examples.append(
            ResidueExample(
                f"CB513|{n - 2}",
                sequence,
                _ss_labels(path, record, ss3, SS3),
                mask,
                _ss_labels(path, record, ss8, SS8),
            )
        )
    return examples


# ---------------------------------------------------------------- remote homology


def read_scope(data: Path, identity: int = 25) -> list[SequenceExample]:
    """SCOPe 2.08 ASTRAL domains at <= `identity` % identity; `group` = the superfamily
    (`fold_of` gives its fold). Labels are set by `split_remote_homology`."""
    path = Path(data) / "remote_homology_scope208" / f"scope208_astral_th{identity}.tsv"
    rows = _tsv(path, ("sid", "fold", "superfamily", "seq", "seq_len"))
    examples = []
    for row in rows:
        sequence = _check_sequence(path, row["sid"], row["seq"])
        if str(len(sequence)) != row["seq_len"].strip():
            raise DatasetError(
                f"{path}: record {row['sid']}: seq_len {row['seq_len']} "
                f"but the sequence has {len(sequence)} residues"
            )
        if fold_of(row["superfamily"]) != row["fold"]:
            raise DatasetError(
                f"{path}: record {row['sid']}: superfamily {row['superfamily']} "
                f"is not in fold {row['fold']}"
            )
        examples.append(SequenceExample(row["sid"], sequence, -1.0, row["superfamily"]))
    return examples


def fold_of(superfamily: str) -> str:
    """The SCOPe fold of a superfamily sccs: 'a.1.1' -> 'a.1'."""
    return superfamily.rsplit(".", 1)[0]


def _stable_rank(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_remote_homology(
    examples: list[SequenceExample],
) -> tuple[list[SequenceExample], list[SequenceExample], list[str]]:
    """Fold classification with unseen superfamilies at test time (as TAPE).

    Only folds with at least two superfamilies take part; in each, one superfamily (chosen by a
    stable hash) is held out for test and the rest train. Returns train, test, fold names;
    labels are fold indices.
    """
    by_fold: dict[str, set[str]] = {}
    for ex in examples:
        by_fold.setdefault(fold_of(ex.group), set()).add(ex.group)
    folds = sorted(f for f, families in by_fold.items() if len(families) >= 2)
    index = {f: i for i, f in enumerate(folds)}
    held_out = {f: min(by_fold[f], key=_stable_rank) for f in folds}
    train: list[SequenceExample] = []
    test: list[SequenceExample] = []
    for ex in examples:
        fold = fold_of(ex.group)
        if fold not in index:
            continue
        labelled = SequenceExample(ex.id, ex.sequence, float(index[fold]), ex.group)
        (test if ex.group == held_out[fold] else train).append(labelled)
    return train, test, folds


# ---------------------------------------------------------------- stability, fluorescence


def _score(text: str) -> float | None:
    """A finite number, or None for a missing score ('', 'NA', 'nan', ...)."""
    try:
        value = float(text)
    except (TypeError, ValueError):  # TypeError: a short row's missing cell (None)
        return None
    return value if np.isfinite(value) else None


def read_stability(data: Path, split: str = "train") -> tuple[list[SequenceExample], int]:
    """Rocklin 2017 stability (TAPE's source): train = design rounds 1-4, test = the
    single-site mutants of 17 top designs (ssm2). Returns examples and the count of rows
    dropped for a missing score."""
    folder = Path(data) / "stability_rocklin"
    if split == "train":
        files = [
            (folder / f"experimental_stability_scores_rd{k}.tsv", "stabilityscore")
            for k in range(1, 5)
        ]
    elif split == "test":
        files = [(folder / "ssm2_stability_scores.tsv", "consensus_stability_score")]
    else:
        raise DatasetError(f"read_stability: split must be train or test, got {split!r}")
    examples, dropped = [], 0
    for path, column in files:
        for row in _tsv(path, ("name", "sequence", column)):
            value = _score(row[column])
            if value is None:
                dropped += 1
                continue
            sequence = _check_sequence(path, row["name"], row["sequence"])
            examples.append(SequenceExample(row["name"], sequence, value, row.get("my_wt", "")))
    return examples, dropped


def read_wild_type(path: Path, key: str) -> dict:
    """The `key` entry of a wt_sequence(s).json: `wt_aa` (a checked sequence) and its
    numbering offset (`wt_ofs` or `first_position_number`, an integer)."""
    try:
        entry = json.loads(_need(path).read_text())[key]
        entry = {**entry, "wt_aa": _check_sequence(path, key, entry["wt_aa"])}
        for offset in ("wt_ofs", "first_position_number"):
            if offset in entry:
                entry[offset] = int(entry[offset])
        return entry
    except DatasetError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSON, UTF-8, layout
        raise DatasetError(f"{path}: no usable wild type {key!r} ({type(e).__name__}: {e})") from e


def _apply(
    path: Path,
    record: str,
    wild_type: str,
    mutations: list[tuple[int, str, str]],
    first_number: int = 1,
) -> str:
    sequence = list(wild_type)
    for position, wt, mutant in mutations:
        if not 0 <= position < len(wild_type) or wild_type[position] != wt:
            raise DatasetError(
                f"{path}: record {record}: {wt}{position + first_number} does not match the "
                "wild type"
            )
        sequence[position] = mutant
    return "".join(sequence)


def _parse_mutations(path: Path, record: str, first_number: int) -> list[tuple[int, str, str]]:
    """'A42G,L7P' -> [(index, wt, mutant)], index = position number - `first_number` (the
    number of the wild type's first residue: `first_position_number` or nn4dms' `wt_ofs`)."""
    mutations = []
    for item in record.split(","):
        item = item.strip()
        if len(item) < 3 or not item[1:-1].isdigit():
            raise DatasetError(f"{path}: record {record}: {item!r} is not a mutation like A42G")
        mutations.append((int(item[1:-1]) - first_number, item[0], item[-1]))
    return mutations


def read_fluorescence(data: Path, split: str = "train") -> tuple[list[SequenceExample], int]:
    """Sarkisyan 2016 avGFP brightness; as TAPE, train on <= 3 mutations, test on >= 4.
    Variants with a stop codon are dropped (count returned)."""
    folder = Path(data) / "fluorescence_avgfp"
    wild_type = read_wild_type(folder / "wt_sequence.json", "avgfp")
    path = folder / "avgfp.tsv"
    if split not in ("train", "test"):
        raise DatasetError(f"read_fluorescence: split must be train or test, got {split!r}")
    examples, dropped = [], 0
    for row in _tsv(path, ("variant", "num_mutations", "score")):
        record = row["variant"]
        n = len(record.split(","))
        if (n <= 3) != (split == "train"):
            continue
        mutations = _parse_mutations(path, record, int(wild_type.get("wt_ofs", 0)))
        value = _score(row["score"])
        if value is None or any(m == "*" for _, _, m in mutations):
            dropped += 1
            continue
        offset = int(wild_type.get("wt_ofs", 0))
        sequence = _apply(path, record, wild_type["wt_aa"], mutations, offset)
        examples.append(SequenceExample(record, sequence, value))
    return examples, dropped


# ---------------------------------------------------------------- contacts


def _chain_coordinates(path: Path, chain_id: str) -> tuple[str, np.ndarray]:
    from Bio.PDB import PDBParser
    from Bio.PDB.Polypeptide import protein_letters_3to1

    try:
        structure = PDBParser(QUIET=True).get_structure(path.stem, str(path))
        chain = structure[0][chain_id]
    except (KeyError, ValueError) as e:
        raise DatasetError(f"{path}: no chain {chain_id} in the first model ({e})") from e
    letters, points = [], []
    for residue in chain:
        if residue.id[0] != " " or "CA" not in residue:  # hetero groups, waters, no C-alpha
            continue
        letters.append(protein_letters_3to1.get(residue.get_resname(), "X"))
        atom = "CA" if residue.get_resname() == "GLY" else "CB"
        points.append(residue[atom].coord if atom in residue else (np.nan,) * 3)
    return "".join(letters), np.array(points, dtype=np.float64).reshape(-1, 3)


def contact_chains(data: Path, split: str = "train") -> list[tuple[Path, str, str]]:
    """(PDB file, chain, sequence) of each crystal chain of a split, from manifest.tsv alone:
    train = pdbs_for_training, test = pdbs_for_validation."""
    folder = Path(data) / "contacts_xtal"
    if split not in ("train", "test"):
        raise DatasetError(f"contact_chains: split must be train or test, got {split!r}")
    wanted = {"train": "training", "test": "validation"}[split]
    rows = _tsv(folder / "manifest.tsv", ("pdb_file", "split", "chain", "sequence_from_ATOM"))
    return [
        (folder / f"pdbs_for_{wanted}" / row["pdb_file"], row["chain"], row["sequence_from_ATOM"])
        for row in rows
        if row["split"] == wanted
    ]


def read_contacts(
    data: Path, split: str = "train", threshold: float = 8.0
) -> list[ContactExample]:
    """Contact maps of the crystal chains of `contact_chains`: C-beta distance < `threshold`
    A (C-alpha for Gly), each chain's residues checked against the manifest."""
    examples = []
    for path, chain, expected in contact_chains(data, split):
        sequence, points = _chain_coordinates(_need(path), chain)
        if sequence != expected:
            raise DatasetError(f"{path}: chain {chain} residues differ from manifest.tsv")
        valid = ~np.isnan(points).any(1)
        distance = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
        contacts = np.nan_to_num(distance, nan=np.inf) < threshold
        examples.append(ContactExample(f"{path.stem}_{chain}", sequence, contacts, valid))
    return examples


# ---------------------------------------------------------------- zero-shot variant effects


def read_blat_ecolx(data: Path, score_column: str = "2500") -> VariantSet:
    """TEM-1 beta-lactamase DMS (Stiffler 2015): fitness at 2500 ug/ml ampicillin, the column
    ESM's variant-prediction example scores."""
    folder = Path(data) / "dms_blat_ecolx"
    info = read_wild_type(folder / "wt_sequence.json", "BLAT_ECOLX")
    wild_type, offset = info["wt_aa"], int(info["first_position_number"])
    path = folder / "BLAT_ECOLX_Ranganathan2015.csv"
    mutations, scores, dropped = [], [], 0
    for row in _tsv(path, ("mutant", score_column), delimiter=","):
        value = _score(row[score_column])
        parsed = _parse_mutations(path, row["mutant"], offset)
        _apply(path, row["mutant"], wild_type, parsed, offset)  # checked against the wild type
        if value is None or any(m not in RESIDUES[:20] for _, _, m in parsed):
            dropped += 1
            continue
        mutations.append(parsed)
        scores.append(value)
    return VariantSet(
        "BLAT_ECOLX",
        wild_type,
        mutations,
        np.array(scores),
        {"no score or non-standard residue": dropped},
    )


def _variant_set(
    name: str, path: Path, wild_type: str, rows: list[tuple[str, str]], first_number: int
) -> VariantSet:
    """A VariantSet of (mutation record, score text) rows: every mutation checked against the
    wild type; variants with no score, a stop or a non-standard residue dropped and counted."""
    mutations, scores, dropped = [], [], 0
    for record, score in rows:
        value = _score(score)
        parsed = _parse_mutations(path, record, first_number) if record else []
        if value is None or any(m not in RESIDUES[:20] for _, _, m in parsed):
            dropped += 1
            continue
        _apply(path, record, wild_type, parsed, first_number)  # checked against the wild type
        mutations.append(parsed)
        scores.append(value)
    if len(scores) < 3:
        raise DatasetError(f"{path}: fewer than 3 scored variants")
    return VariantSet(
        name, wild_type, mutations, np.array(scores), {"no score, stop or non-standard": dropped}
    )


NN4DMS = {"Pab1": "pab1", "Ube4b": "ube4b", "Bgl3": "bgl3"}


def read_nn4dms(data: Path, name: str) -> VariantSet:
    """One DMS of nn4dms (Gelman et al. 2021): Pab1 RRM (Melamed 2013), Ube4b U-box (Starita
    2013) or Bgl3 beta-glucosidase (Romero 2015); singles and multi-mutants, their `score`."""
    if name not in NN4DMS:
        raise DatasetError(f"read_nn4dms: unknown assay {name!r} (one of {sorted(NN4DMS)})")
    folder = Path(data) / "dms_nn4dms"
    info = read_wild_type(folder / "wt_sequences.json", NN4DMS[name])
    path = folder / f"{NN4DMS[name]}.tsv"
    rows = [(r["variant"], r["score"]) for r in _tsv(path, ("variant", "score"))]
    return _variant_set(name, path, info["wt_aa"], rows, int(info.get("wt_ofs", 0)))


def read_gb1(data: Path) -> VariantSet:
    """GB1 (Wu et al. 2016): the variants at V39, D40, G41 and V54 of FLIP's `sampled` split
    (train and test together; a subset of the ~149k measured), scored on the 56-residue GB1
    domain.

    FLIP gives whole sequences of PDB 5LDE's chain (GB1 fused to a viral FLICE protein); the
    mutations are their differences from that chain, all of which must fall in the domain."""
    folder = Path(data) / "flip_other"
    chain_path = _need(folder / "gb1_5LDE_1.fasta")
    try:
        text = chain_path.read_text()
    except (OSError, ValueError) as e:  # ValueError: not UTF-8
        raise DatasetError(f"{chain_path}: cannot read it ({e})") from e
    chain = _check_sequence(chain_path, "5LDE_1", _fasta_pairs(chain_path, text)[0][1])
    domain = read_wild_type(Path(data) / "dms_nn4dms" / "wt_sequences.json", "gb1")["wt_aa"]
    if not chain.startswith(domain):
        raise DatasetError(
            f"{chain_path}: does not start with the GB1 domain of wt_sequences.json"
        )
    path = _need(folder / "gb1_splits.zip")
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("splits/sampled.csv").decode("utf-8-sig")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: no readable splits/sampled.csv ({e})") from e
    rows = []
    for row in csv.DictReader(text.splitlines()):
        sequence, target = row.get("sequence") or "", row.get("target") or ""
        if len(sequence) != len(chain):
            rows.append(("", ""))  # another length: no mutations to read; dropped (no score)
            continue
        changed = [
            (i, a, b) for i, (a, b) in enumerate(zip(chain, sequence, strict=True)) if a != b
        ]
        if any(i >= len(domain) for i, _, _ in changed):
            raise DatasetError(f"{path}: a variant changes residues outside the GB1 domain")
        rows.append((",".join(f"{a}{i + 1}{b}" for i, a, b in changed), target))
    return _variant_set("GB1", path, domain, rows, 1)


def read_avgfp_variants(data: Path) -> VariantSet:
    """Every avGFP variant of Sarkisyan 2016 (1 to 15 mutations) and its brightness `score`,
    for zero-shot scoring (the fluorescence task splits the same file for a probe)."""
    folder = Path(data) / "fluorescence_avgfp"
    info = read_wild_type(folder / "wt_sequence.json", "avgfp")
    path = folder / "avgfp.tsv"
    rows = [(r["variant"], r["score"]) for r in _tsv(path, ("variant", "score"))]
    return _variant_set("avGFP", path, info["wt_aa"], rows, int(info.get("wt_ofs", 0)))


def read_variant_assays(data: Path) -> list[VariantSet]:
    """The six zero-shot assays, in report order."""
    return [
        read_blat_ecolx(data),
        *(read_nn4dms(data, name) for name in NN4DMS),
        read_gb1(data),
        read_avgfp_variants(data),
    ]


def variant_wild_types(data: Path) -> dict[str, str]:
    """The wild type of each zero-shot assay (read_variant_assays' order), from the JSON
    files alone."""
    nn4dms = Path(data) / "dms_nn4dms" / "wt_sequences.json"
    return {
        "BLAT_ECOLX": read_wild_type(
            Path(data) / "dms_blat_ecolx" / "wt_sequence.json", "BLAT_ECOLX"
        )["wt_aa"],
        **{name: read_wild_type(nn4dms, key)["wt_aa"] for name, key in NN4DMS.items()},
        "GB1": read_wild_type(nn4dms, "gb1")["wt_aa"],
        "avGFP": read_wild_type(Path(data) / "fluorescence_avgfp" / "wt_sequence.json", "avgfp")[
            "wt_aa"
        ],
    }
