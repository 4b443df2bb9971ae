"""Every small file protprof writes carries its format version, and readers refuse another
kind or major version by name (an older file without one reads as 1.0)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import DEMO_DB

from protprof.cli import main
from protprof.errors import InputFormatError
from protprof.evaluation.compare import read_reports
from protprof.jackhmmer import read_fingerprint
from protprof.model.embed import write_embeddings
from protprof.store.file_versions import VERSIONS, check, stamp


def test_a_fingerprint_carries_its_version_and_reads_back_without_it(tmp_path):
    out = tmp_path / "fp.json"
    assert main(["-q", "prepare-db", str(DEMO_DB), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["format"] == "protprof.fingerprint"
    assert written["format_version"] == VERSIONS["fingerprint"]
    read = read_fingerprint(out)
    assert "format" not in read and read["n_sequences"] == 5000
    # an older fingerprint, without the keys, reads the same
    del written["format"], written["format_version"]
    out.write_text(json.dumps(written))
    assert read_fingerprint(out) == read


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"format_version": "2.0"}, "protprof.fingerprint format 2.0; this protprof reads 1.x"),
        ({"format": "protprof.plan"}, "a protprof.plan file, not a protprof.fingerprint file"),
    ],
)
def test_another_major_or_kind_is_refused_naming_the_file(tmp_path, edit, message):
    out = tmp_path / "fp.json"
    assert main(["-q", "prepare-db", str(DEMO_DB), "--out", str(out)]) == 0
    out.write_text(json.dumps({**json.loads(out.read_text()), **edit}))
    with pytest.raises(InputFormatError) as error:
        read_fingerprint(out)
    assert str(error.value).startswith(f"{out}: {message}")


def test_a_newer_minor_version_is_read():
    check({"format": "protprof.report", "format_version": "1.7", "label": "x"}, "report", "r")


def test_a_report_of_another_major_is_refused_by_compare(tmp_path):
    path = tmp_path / "report.json"
    report = {**stamp("report"), "format_version": "9.0", "label": "mlm", "results": []}
    path.write_text(json.dumps(report))
    with pytest.raises(Exception, match=r"report.json: protprof.report format 9.0"):
        read_reports([path])


def test_embeddings_carry_their_format(tmp_path):
    out = tmp_path / "e.npz"
    write_embeddings(out, ["a"], [np.zeros((3, 4), np.float32)], None)
    with np.load(out) as archive:
        assert str(archive["format"]) == "protprof.embeddings"
        assert str(archive["format_version"]) == VERSIONS["embeddings"]


@pytest.mark.parametrize("text", ["{}", "[1, 2]", '{"sha256": "x"}'])
def test_a_fingerprint_without_its_keys_is_one_line(tmp_path, text):
    path = tmp_path / "fp.json"
    path.write_text(text)
    with pytest.raises(InputFormatError, match=str(path)):
        read_fingerprint(path)
