"""Ingest refusals and accepted oddities, through the real CLI entry point."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import DEMO_DB, write_queries

from protprof.cli import main
from protprof.queries.ingest import IngestParams, select_records
from protprof.store.zarr_store import open_store

REAL = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQAGVWPAACRLE"  # noqa: E501 (one real protein)


def build_args(queries: Path, out: Path) -> list[str]:
    return [
        "build",
        str(queries),
        "--database",
        str(DEMO_DB),
        "--out",
        str(out),
        "-N",
        "1",
        "--threads",
        "2",
    ]


def refused(tmp_path: Path, capsys, content: bytes, name: str = "q.fasta") -> str:
    queries = tmp_path / name
    queries.write_bytes(content)
    out = tmp_path / "out.zarr"
    assert main(build_args(queries, out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one clear line, no traceback
    assert not out.exists() and not list(tmp_path.glob(".out.zarr*"))  # nothing left behind
    assert str(queries) in err[0]
    return err[0]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty file"),
        (b"\n\n  \n", "empty file"),
        (b">a\n\n>b\nMKV\n", "record 'a' has no sequence"),
        (b">a\nMKV\n>a\nMKL\n", "duplicate record ID 'a'"),
        (b">a\nMKV1L\n", "character '1' at position 4"),
        (b">a\nMK-VL\n", "character '-' at position 3"),
        (b"MKVL\n>a\nMKV\n", "not a FASTA file"),
        (b"# STOCKHOLM 1.0\n", "not a FASTA file"),
        (b">a\nACGTACGTTAGCATCGATCGATCGATCGANACGT\n>b\nACGTTGCA\n", "nucleotide"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a text FASTA file"),
    ],
)
def test_bad_queries_are_refused_with_one_line(tmp_path, capsys, content, expected):
    assert expected in refused(tmp_path, capsys, content)


def test_truncated_gzip_is_refused(tmp_path, capsys):
    data = gzip.compress((f">a\n{REAL}\n" * 50).encode())
    assert "truncated or corrupt gzip" in refused(
        tmp_path, capsys, data[: len(data) // 2], "q.fasta.gz"
    )


def test_missing_file_is_refused(tmp_path, capsys):
    assert main(build_args(tmp_path / "nope.fasta", tmp_path / "o.zarr")) == 1
    assert "no such file" in capsys.readouterr().err


@pytest.mark.integration
def test_accepted_oddities_build(tmp_path):
    """CRLF, blank lines, lowercase, a terminal '*', ambiguous residues, gzip: all build."""
    text = (
        f">odd1 some description\r\n{REAL[:60].lower()}\r\n\r\n{REAL[60:120]}*\r\n"
        f">odd2\r\nMKVLXBZUOAAGHKLLMKV{REAL[:80]}\r\n"
    )
    queries = tmp_path / "odd.fasta.gz"
    queries.write_bytes(gzip.compress(text.encode()))
    out = tmp_path / "odd.zarr"
    assert main(build_args(queries, out)) == 0
    store = open_store(out)
    assert list(store.ids) == ["odd1", "odd2"]
    assert store.sequence(0) == REAL[:120]
    assert store.sequence(1) == f"MKVLXBZUOAAGHKLLMKV{REAL[:80]}"
    for i in range(2):
        profile = store.profile(i)
        assert profile.shape == (len(store.sequence(i)), 20) and profile.dtype == np.float32
        np.testing.assert_allclose(profile.sum(1), 1, atol=1e-5)


@pytest.mark.integration
def test_length_limits_and_duplicates(tmp_path, capsys):
    queries = write_queries(tmp_path / "q.fasta", 3)
    text = queries.read_text()
    first_seq = text.splitlines()[1]
    queries.write_text(text + f">dup_of_first\n{first_seq}\n>short\nMKV\n")
    out = tmp_path / "o.zarr"
    args = build_args(queries, out) + [
        "--min-length",
        "10",
        "--max-length",
        "50",
        "--too-long",
        "crop",
    ]
    assert main(args) == 0
    store = open_store(out)
    assert len(store) == 3  # duplicate searched once, short one skipped
    assert store.lengths.max() <= 50
    assert first_seq[:50] in {store.sequence(i) for i in range(len(store))}


def test_skip_too_long_and_nothing_left(tmp_path, capsys):
    queries = tmp_path / "q.fasta"
    queries.write_text(f">long\n{REAL}\n>ok\n{REAL[:40]}\n")
    records = select_records([queries], IngestParams(max_length=50, too_long="skip"))
    assert [r.id for r in records] == ["ok"]
    only_long = tmp_path / "only_long.fasta"
    only_long.write_text(f">long\n{REAL}\n")
    out = tmp_path / "o.zarr"
    assert main(build_args(only_long, out) + ["--max-length", "50", "--too-long", "skip"]) == 1
    assert "no sequence passed the filters" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.integration
def test_cli_start_up_does_not_import_torch():
    """Every `protprof` command builds the whole parser; torch (~3 s to import) must wait for
    the commands that use it, or each of the workflow's many search jobs pays for it."""
    code = (
        "import sys\nfrom protprof.cli import main\ntry:\n    main(['build', '--help'])\n"
        "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'zarr') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.integration
def test_a_tab_ends_the_identifier(tmp_path):
    """A TAB in a header used to become part of the ID and split `index.tsv`'s rows."""
    real = write_queries(tmp_path / "real.fasta", 2).read_text().splitlines()
    queries = tmp_path / "q.fasta"
    queries.write_text(f"{real[0]}\tfrom a TSV export\n{real[1]}\n{real[2]}\t\n{real[3]}\n")
    out, msas = tmp_path / "out.zarr", tmp_path / "msas"
    assert main([*build_args(queries, out), "--msa-dir", str(msas)]) == 0
    ids = [real[0][1:], real[2][1:]]
    assert list(open_store(out).ids) == ids
    rows = [line.split("\t") for line in (msas / "index.tsv").read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == ids and all(len(row) == 2 for row in rows)
    assert all((msas / row[1]).is_file() for row in rows)


def test_a_gzip_file_with_flipped_bytes_is_a_corrupt_gzip_not_a_fasta_error(tmp_path, capsys):
    """A flipped byte decompresses to text that fails to parse long before the gzip CRC is
    checked: the error must blame the gzip file, for queries and for the database."""
    data = bytearray(DEMO_DB.read_bytes())
    data[len(data) // 2] ^= 0x55
    database = tmp_path / "db.fasta.gz"
    database.write_bytes(bytes(data))
    queries = write_queries(tmp_path / "q.fasta", 1)
    for argv, bad in [
        (["build", str(queries), "--database", str(database)], database),
        (["build", str(database), "--database", str(DEMO_DB)], database),  # as queries
        (["prepare-db", str(database)], database),
    ]:
        assert main([*argv, "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{bad}: truncated or corrupt gzip file (CRC check" in err[0], err
