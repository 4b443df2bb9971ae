"""Alignment readers, filters and the a3m writer on real alignments: OpenFold's per-chain
jackhmmer Stockholm and HHblits a3m files, ESM's HHblits a3m examples (shared data, read in
place), and the demo queries' own jackhmmer alignments (round trip)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import DEMO_QUERIES, SHARED_DATA

from protprof.alignments.filters import FilterParams, filter_alignment, filter_msa, kept_rows
from protprof.alignments.formats import (
    Alignment,
    _layout_matrix,
    crop,
    msa_from_matrix,
    msa_matrix,
    normalise,
    read_alignment,
    select_rows,
    write_a3m,
)
from protprof.alignments.profiles import ProfileParams, build_hmm, profile_from_msa
from protprof.errors import ConfigError, InputFormatError
from protprof.jackhmmer import JackhmmerSearch, SearchParams
from protprof.queries.fasta import Record
from protprof.store.zarr_store import quantise

OPENFOLD = SHARED_DATA / "msa_openfold"
ESM = SHARED_DATA / "msa_examples_esm"
CHAINS = ["1psm_A", "2crb_A", "2q2k_A", "3u8v_A", "4zey_A"]
PICKS = ["uniref90_hits.sto", "mgnify_hits.sto", "bfd_uniclust_hits.a3m"]
ESM_CHAINS = ["1a3a_1_A", "1xcr_1_A", "5ahw_1_A"]

shared = pytest.mark.skipif(
    not OPENFOLD.is_dir() or not ESM.is_dir(),
    reason=f"the shared alignments ({OPENFOLD}, {ESM}) are not on this machine",
)


def record_count(path: Path) -> int:
    """Rows of an alignment file, counted from its text alone: '>' headers, or the distinct
    names of a Stockholm file's sequence lines."""
    text = path.read_text()
    if path.suffix == ".a3m":
        return sum(line.startswith(">") for line in text.splitlines())
    names = {
        line.split()[0]
        for line in text.split("\n//")[0].splitlines()[1:]
        if line.strip() and not line.startswith("#")
    }
    return len(names)


def first_record(path: Path) -> str:
    """The first a3m record's sequence, as written."""
    return path.read_text().split(">")[1].split("\n", 1)[1].replace("\n", "")


@shared
@pytest.mark.parametrize("chain", CHAINS)
def test_openfold_chain(chain):
    alignments = [read_alignment(OPENFOLD / chain / pick) for pick in PICKS]
    query = first_record(OPENFOLD / chain / "bfd_uniclust_hits.a3m")
    for pick, a in zip(PICKS, alignments, strict=True):
        assert a.query == query  # the same chain in all three files
        assert a.query_id == "query"
        assert len(a.msa.sequences) == record_count(OPENFOLD / chain / pick)
        assert a.msa.names[0] == "query"
        assert a.msa.reference.count("x") == len(query)
        assert build_hmm(a.msa, a.query_id, len(a.query)).M == len(a.query)
        assert len(a.sha256) == 64
    # Stockholm names keep their coordinates
    assert all(re.search(r"/\d+-\d+$", n) for n in alignments[0].msa.names[1:])


@shared
@pytest.mark.parametrize("chain", ESM_CHAINS)
def test_esm_a3m(chain):
    paths = [ESM / f"{chain}.a3m", ESM / f"hhblits_uniclust_2017_10_{chain}.a3m"]
    plain, hhblits = (read_alignment(p) for p in paths)
    assert plain.query == hhblits.query == first_record(paths[1])
    assert plain.query_id == chain  # a nameless query ('>') is named after the file
    for path, a in zip(paths, (plain, hhblits), strict=True):
        assert len(a.msa.sequences) == record_count(path)
        assert build_hmm(a.msa, a.query_id, len(a.query)).M == len(a.query)
    # the HHblits file has insertions: insert columns beyond the query's
    assert len(hhblits.msa.alignment[0]) > len(hhblits.query)


@shared
def test_query_id_picks_another_row():
    path = OPENFOLD / "2crb_A" / "uniref90_hits.sto"
    whole = read_alignment(path)
    name = whole.msa.names[5]
    by_full = read_alignment(path, query_id=name)
    by_short = read_alignment(path, query_id=name.rsplit("/", 1)[0])
    assert by_full.query_id == by_short.query_id == name
    assert by_full.msa.names[0] == name
    assert by_full.query == whole.msa.textize().alignment[5].replace("-", "").upper()
    assert build_hmm(by_full.msa, name, len(by_full.query)).M == len(by_full.query)


@shared
def test_crop_keeps_query_prefix_and_its_columns():
    path = OPENFOLD / "2crb_A" / "uniref90_hits.sto"
    a = read_alignment(path)
    cut = crop(a, 50)
    assert cut.query == a.query[:50] and cut.sha256 == a.sha256
    assert build_hmm(cut.msa, cut.query_id, 50).M == 50
    # independent count: rows with a residue in the query's first 50 residues' columns
    rows = list(a.msa.textize().alignment)
    last = [i for i, c in enumerate(rows[0]) if c.isalpha()][49]
    query_cols = [i for i, c in enumerate(rows[0][: last + 1]) if c.isalpha()]
    expected = sum(any(r[i].isalpha() for i in query_cols) for r in rows)
    assert expected < len(rows)  # some rows align only beyond residue 50: dropped
    assert len(cut.msa.sequences) == expected
    assert crop(a, len(a.query)) is a
    with pytest.raises(ConfigError, match="max_length"):
        crop(a, 0)


# --- filters: a hand computation on the first 9 rows of a real jackhmmer alignment ----------

ROWS_1PSM = [  # 1psm_A/uniref90_hits.sto, first 9 rows; coverage, identity to the query
    ("query", "EAYKKAKQASQDAEQAAKDAENASKEAEEAAKEAVNLK"),  # 38/38, 38/38
    ("UniRef90_Q9NIG6/58-95", "EAYKKAKQASQDAEQAAKDAENASKEAEEAAKEAVNLK"),  # 38/38, 38/38
    ("UniRef90_A0A024VYN0/90-127", "EAYKKAKQASQDAEQAAKDAENASKEAEEAAKEAVNLK"),  # 1, 1
    ("UniRef90_UPI0019011389/487-495", "------------------------KDARQVIKD-----"),  # 9/38, 3/9
    ("UniRef90_O15863/57-94", "EAYKKAKQASQDAEQAAKDAEQAAKDAEQASKDAEKLK"),  # 1, 30/38
    ("UniRef90_A0A6J8EZW5/149-173", "-------QACKDLGQACKDLEQACKDIGQACK------"),  # 25/38, 12/25
    ("UniRef90_A0A8C3V826/99-123", "-AVRDAPNAVRDAPNAVRDAPNAVRD------------"),  # 25/38, 10/25
    ("UniRef90_A0A8C3V826/170-202", "--VRDAPKAVRDAPNAVRDAPNAVRDAPNAVRDAP---"),  # 33/38, 12/33
    ("UniRef90_O15854/44-77", "----KAKKASEDAEKAANDAENASKEAEEAAKEAVNLK"),  # 34/38, 30/34
]
# Identity between rows, by hand: the two A0A8C3V826 rows share 24 residue columns, 23 equal
# (23/24 = 0.958); UPI0019011389 and O15863 share 9, 6 equal (0.667).


@pytest.fixture
def small_real() -> Alignment:
    if not OPENFOLD.is_dir():
        pytest.skip(f"the shared alignments ({OPENFOLD}) are not on this machine")
    a = read_alignment(OPENFOLD / "1psm_A" / "uniref90_hits.sto")
    msa = select_rows(a.msa, np.arange(len(ROWS_1PSM)))
    assert list(zip(msa.names, msa.textize().alignment, strict=True)) == ROWS_1PSM
    return Alignment(a.path, a.sha256, a.query_id, a.query, msa)


def kept_names(a: Alignment, params: FilterParams) -> list[str]:
    return [
        n.split("/")[0].removeprefix("UniRef90_") for n in filter_alignment(a, params).msa.names
    ]


@pytest.mark.parametrize(
    "params, expected",
    [
        (FilterParams(), ["query", "Q9NIG6", "A0A024VYN0", "UPI0019011389", "O15863",
                          "A0A6J8EZW5", "A0A8C3V826", "A0A8C3V826", "O15854"]),
        # coverage >= 0.8: 38, 38, 38, 38, 33 and 34 of 38
        (FilterParams(min_coverage=0.8),
         ["query", "Q9NIG6", "A0A024VYN0", "O15863", "A0A8C3V826", "O15854"]),
        # identity to the query >= 0.45: 1, 1, 30/38, 12/25 = 0.48, 30/34
        (FilterParams(min_identity=0.45),
         ["query", "Q9NIG6", "A0A024VYN0", "O15863", "A0A6J8EZW5", "O15854"]),
        # > 0.85 identical to a kept row: the two copies of the query, O15854 (30/34 to the
        # query), the second A0A8C3V826 (23/24 to the first)
        (FilterParams(max_identity=0.85),
         ["query", "UPI0019011389", "O15863", "A0A6J8EZW5", "A0A8C3V826"]),
        (FilterParams(max_seqs=2), ["query", "Q9NIG6", "A0A024VYN0"]),
        (FilterParams(max_seqs=0), ["query"]),
        (FilterParams(min_coverage=0.6, max_identity=0.85, max_seqs=2),
         ["query", "O15863", "A0A6J8EZW5"]),
        # identity exactly 1 is not more than 1: nothing is redundant
        (FilterParams(max_identity=1.0, min_identity=0.0, min_coverage=0.0),
         ["query", "Q9NIG6", "A0A024VYN0", "UPI0019011389", "O15863",
          "A0A6J8EZW5", "A0A8C3V826", "A0A8C3V826", "O15854"]),
    ],
)  # fmt: skip
def test_filters_hand_computed(small_real, params, expected):
    assert kept_names(small_real, params) == expected
    filtered = filter_alignment(small_real, params)
    assert build_hmm(filtered.msa, filtered.query_id, len(filtered.query)).M == 38


def test_filter_drops_emptied_insert_columns():
    # the query, a row with an insertion, a row without: dropping the second row leaves its
    # insert column empty, and it goes, as HMMER would have built the alignment without it
    codes = np.array([[0, 20, 1, 2], [0, 3, 1, 2], [0, 20, 1, 20]], dtype=np.uint8)
    msa = msa_from_matrix(["q", "a", "b"], codes, "q")
    out = filter_msa(msa, FilterParams(min_coverage=1.0))
    assert out.names == ("q", "a")
    out = filter_msa(msa, FilterParams(max_seqs=0))
    assert msa_matrix(out).tolist() == [[0, 1, 2]] and out.reference == "xxx"
    assert filter_msa(msa, FilterParams()) is msa
    assert kept_rows(codes, FilterParams(max_identity=0.5)).tolist() == [0]


@pytest.mark.parametrize(
    "field, value",
    [("max_seqs", -1), ("max_seqs", 2.5), ("max_seqs", True), ("min_coverage", 1.5),
     ("min_identity", -0.1), ("max_identity", float("nan")), ("max_identity", "0.9")],
)  # fmt: skip
def test_filter_params_validated(field, value):
    with pytest.raises(ConfigError, match=rf"filters\.{field} "):
        FilterParams(**{field: value})


# --- round trip: protprof's own alignments, written in every format and read back -----------


@pytest.fixture(scope="module")
def searched(demo_database):
    from protprof.queries.fasta import read_fasta

    records = [Record(r.id, r.sequence[:300]) for r in read_fasta(DEMO_QUERIES)[:8]]
    search = JackhmmerSearch(
        demo_database.block,
        SearchParams(iterations=3),
        2,
        demo_database.fingerprint["n_sequences"],
    )
    results = search.run(records)
    # the point of the a3m check: alignments with insert columns
    assert sum(len(r.msa.alignment[0]) > len(r.sequence) for r in results) >= 3
    return results


def profiles(msa, query_id: str, length: int) -> dict[str, tuple[np.ndarray, float]]:
    out = {}
    for method in ("hmm", "frequency"):
        values, neff = profile_from_msa(msa, query_id, length, ProfileParams(method=method))
        out[method] = (quantise(values), neff)
    return out


def written(result, fmt: str, folder: Path) -> Path:
    path = folder / f"{abs(hash(result.id))}.{ {'stockholm': 'sto'}.get(fmt, fmt) }"
    with open(path, "wb") as handle:
        write_a3m(result.msa, handle) if fmt == "a3m" else result.msa.write(handle, fmt)
    return path


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["stockholm", "a2m", "a3m"])
def test_round_trip_bit_identical(searched, fmt, tmp_path):
    for r in searched:
        a = read_alignment(written(r, fmt, tmp_path))
        assert a.query == r.sequence and a.query_id == r.id
        assert len(a.msa.sequences) == len(r.msa.sequences)
        want = profiles(r.msa, r.id, len(r.sequence))
        got = profiles(a.msa, a.query_id, len(a.query))
        for method in want:
            assert np.array_equal(got[method][0], want[method][0]), (r.id, method)
            assert got[method][1] == want[method][1], (r.id, method)
        # HMMER's layout gives back HMMER's alignment itself, column for column
        assert np.array_equal(msa_matrix(a.msa), msa_matrix(r.msa))
        assert a.msa.reference == r.msa.reference


@pytest.mark.integration
def test_a3m_without_insert_columns_changes_profiles(searched, tmp_path):
    """Why a3m insertions are expanded: dropping their columns narrows the alignment, and
    HMMER's builder marks fragments by their span relative to the alignment's width."""
    changed = 0
    for r in searched:
        path = written(r, "a3m", tmp_path)
        want = profiles(r.msa, r.id, len(r.sequence))
        for layout, same in (("left", True), ("drop", False)):
            kept, _, part = normalise(_layout_matrix(path, layout))
            msa = msa_from_matrix([str(i) for i in kept], part, r.id)
            got = profiles(msa, r.id, len(r.sequence))
            if same:  # where in its block an insertion sits does not matter to the builder
                assert np.array_equal(got["hmm"][0], want["hmm"][0])
            else:
                changed += not np.array_equal(got["hmm"][0], want["hmm"][0])
    assert changed >= 1


@pytest.mark.integration
def test_filters_same_on_searched_and_imported(searched, tmp_path):
    params = FilterParams(min_coverage=0.5, max_identity=0.8, max_seqs=20)
    for r in searched:
        a = read_alignment(written(r, "a3m", tmp_path))
        direct = filter_msa(r.msa, params)
        imported = filter_alignment(a, params).msa
        assert np.array_equal(msa_matrix(direct), msa_matrix(imported))
        assert profiles(direct, r.id, len(r.sequence)).keys() == {"hmm", "frequency"}
        assert all(
            np.array_equal(x[0], y[0]) and x[1] == y[1]
            for x, y in zip(
                profiles(direct, r.id, len(r.sequence)).values(),
                profiles(imported, r.id, len(r.sequence)).values(),
                strict=True,
            )
        )


@pytest.mark.integration
def test_a3m_writer_conventions(searched):
    r = max(searched, key=lambda r: len(r.msa.alignment[0]) - len(r.sequence))
    handle = io.BytesIO()
    write_a3m(r.msa, handle)
    lines = handle.getvalue().decode().splitlines()
    assert lines[0].split()[0] == f">{r.id}" and lines[1] == r.sequence
    assert len(lines) == 2 * len(r.msa.sequences)
    for sequence in lines[1::2]:
        assert "." not in sequence
        assert sum(c.isupper() or c == "-" for c in sequence) == len(r.sequence)
    assert any(c.islower() for c in "".join(lines[3::2]))


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.a3m", b"", r"empty file"),
        ("blank.sto", b"\n \n", r"empty file"),
        ("lower.a3m", b">q\nACDefG\n>t\nACDG\n", r"line 1: the query row 'q' holds lowercase"),
        ("gaps.a3m", b">q\n----\n>t\nACDE\n", r"line 1: the query row 'q' has only gaps"),
        ("gaps.sto", b"# STOCKHOLM 1.0\nq ----\nt ACDE\n//\n", r"line 2: the query row 'q'"),
        (
            "unequal.sto",
            b"# STOCKHOLM 1.0\n\nq ACDE\nt ACD\n\nq FG\nt HIK\n//\n",
            r"line 4: rows of unequal length: row 't' has 6 columns .* differ in block 1",
        ),
        (
            "short.sto",
            b"# STOCKHOLM 1.0\nq ACDE\nt ACDE\n\nq FG\n//\n",
            r"line 3: rows of unequal length: row 't' has 4 columns \(1 blocks\), row 'q' 6",
        ),
        ("unequal.afa", b">q\nACDE\n>t\nAC-\n", r"line 3: rows of unequal length"),
        ("count.a3m", b">q\nACDE\n>t\nACkDE\n>u\nAC\n", r"line 5: row 'u' has 2 aligned columns"),
        (
            "illegal.a3m",
            b">q\nACDE\n>t\nAC1E\n",
            r"line 3: row 't' holds the illegal character '1'",
        ),
        ("illegal.sto", b"# STOCKHOLM 1.0\nq AC*E\n//\n", r"line 2: row 'q' holds the illegal"),
        ("bytes.a3m", b">q\nACDE\n>t\nAC\xffE\n", r"line 4: not a text file"),
        ("nohead.sto", b"q ACDE\n//\n", r"line 1: not a Stockholm file"),
        ("cut.sto", b"# STOCKHOLM 1.0\nq ACDE\n", r"no '//' line ends the alignment"),
        ("fields.sto", b"# STOCKHOLM 1.0\nq AC DE\n//\n", r"line 2: expected '<name>"),
        ("text.a3m", b"hello\n>q\nACDE\n", r"line 1: expected a '>' record header"),
        ("noseq.a3m", b">q\nACDE\n>t\n>u\nACDE\n", r"line 3: record 't' has no sequence"),
    ],
)
def test_bad_input(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFormatError, match=re.escape(str(path)) + ".*" + message):
        read_alignment(path)


def test_bad_query_id_and_format(tmp_path):
    path = tmp_path / "a.a3m"
    path.write_text(">q\nACDE\n>t\nAC-E\n")
    with pytest.raises(InputFormatError, match=r"a\.a3m: no record 'x'"):
        read_alignment(path, query_id="x")
    assert read_alignment(path, query_id="t").query == "ACE"
    odd = tmp_path / "a.txt"
    odd.write_text(">q\nACDE\n")
    with pytest.raises(InputFormatError, match=r"a\.txt: cannot tell the alignment format"):
        read_alignment(odd)
    assert read_alignment(odd, fmt="a3m").query == "ACDE"
    with pytest.raises(ConfigError, match="alignment format"):
        read_alignment(odd, fmt="clustal")
    with pytest.raises(InputFormatError, match="no such file"):
        read_alignment(tmp_path / "missing.sto")


def test_colabfold_header_and_dotted_a2m(tmp_path):
    colabfold = tmp_path / "c.a3m"
    colabfold.write_text("#4\t1\n>101\nACDE\n>t\nA.CkkD-\n")
    a = read_alignment(colabfold)
    assert a.query_id == "101" and a.query == "ACDE"
    assert msa_matrix(a.msa).shape == (2, 6)  # an insert block of 2 after column 3
    dotted = tmp_path / "d.a2m"  # columns stand as written: kept as they are
    dotted.write_text(">q\nAC..DE\n>t\nACk.DE\n>u\nAC.mDE\n")
    b = read_alignment(dotted)
    assert tuple(b.msa.textize().alignment)[1:] == ("ACK-DE", "AC-MDE")
