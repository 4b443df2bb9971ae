"""data/demo/make_demo_data.py (whose writer experiments/comparison/make_data.py shares):
byte-reproducible output, and a rerun that leaves identical files untouched so their mtimes do
not make Snakemake redo a finished workflow."""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data" / "demo" / "make_demo_data.py"
SOURCE = Path("/usr/share/doc/mmseqs2/example-data/DB.fasta.gz")


def load_script():
    spec = importlib.util.spec_from_file_location("make_demo_data", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECORDS = [("P1 first", "MKV" * 30), ("P2 second", "ACDEFGHIKLMNPQRSTVWY")]


def test_rerun_leaves_an_identical_file_untouched(tmp_path):
    script = load_script()
    out = tmp_path / "records.fasta.gz"
    script.write_gz(out, RECORDS)
    first = out.read_bytes()
    os.utime(out, (1_000_000, 1_000_000))  # an old mtime a rewrite would bump
    script.write_gz(out, RECORDS)
    assert out.read_bytes() == first
    assert out.stat().st_mtime == 1_000_000
    text = gzip.decompress(first).decode()
    assert text.startswith(">P1 first\n" + "MKV" * 20 + "\n")  # 60-column lines
    assert ">P2 second\nACDEFGHIKLMNPQRSTVWY\n" in text


def test_changed_records_replace_the_file_whole(tmp_path):
    script = load_script()
    out = tmp_path / "records.fasta.gz"
    script.write_gz(out, RECORDS)
    os.utime(out, (1_000_000, 1_000_000))
    before = out.stat().st_ino
    script.write_gz(out, RECORDS[:1])
    assert out.stat().st_mtime != 1_000_000
    assert out.stat().st_ino != before  # a new file renamed over the old, not a rewrite
    assert gzip.decompress(out.read_bytes()).decode().count(">") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["records.fasta.gz"]  # no partial file left


@pytest.mark.skipif(not SOURCE.is_file(), reason=f"{SOURCE} missing (Debian mmseqs2-examples)")
def test_the_committed_demo_data_is_reproduced_byte_for_byte(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "HERE", tmp_path)
    monkeypatch.setattr("sys.argv", ["make_demo_data.py", str(SOURCE)])
    script.main()
    for name in ("uniprot_5k.fasta.gz", "queries_150.fasta.gz"):
        assert (tmp_path / name).read_bytes() == (SCRIPT.parent / name).read_bytes(), name
