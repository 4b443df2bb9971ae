"""`protprof fetch` against a real HTTP server on 127.0.0.1 serving real files from the staged
evaluation data: a good download, a resumed one, a corrupted one, UniRef through a metalink,
and the evaluation data from its manifest (with a derived file made and checked)."""

from __future__ import annotations

import hashlib
import http.server
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from protprof import fetch
from protprof.cli import main
from protprof.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (evaluation data) not found")

BLAT = "dms_blat_ecolx/BLAT_ECOLX_Ranganathan2015.csv"  # 1.7 MB


@dataclass
class Behaviour:
    """What the server does to the next responses (set by a test)."""

    cut_after: int | None = None  # close the connection after this many body bytes, once
    flip_byte: int | None = None  # send this byte of the body changed
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    bytes_sent: int = 0


class Server:
    """A threaded HTTP server with Range support; routes map URL paths to real files."""

    def __init__(self) -> None:
        self.routes: dict[str, Path] = {}
        self.behaviour = Behaviour()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                b = server.behaviour
                b.requests.append((self.path, self.headers.get("Range")))
                path = server.routes.get(self.path)
                if path is None:
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if b.flip_byte is not None:
                    data = (
                        data[: b.flip_byte]
                        + bytes([data[b.flip_byte] ^ 1])
                        + data[b.flip_byte + 1 :]
                    )
                etag = '"' + hashlib.md5(data).hexdigest() + '"'
                start = 0
                rng = self.headers.get("Range")
                valid = self.headers.get("If-Range") in (None, etag)
                if rng and not b.ignore_range and valid:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", etag)
                self.end_headers()
                body = data[start:]
                if b.cut_after is not None:
                    body, b.cut_after = body[: b.cut_after], None
                    self.close_connection = True
                b.bytes_sent += len(body)  # before writing: the client may finish first
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") and "lock" not in p.name
    )


@needs_data
def test_good_download_is_verified_and_not_repeated(server, tmp_path):
    server.routes["/blat.csv"] = DATA / BLAT
    out = tmp_path / "blat.csv"
    source = fetch.Source(
        f"{server.url}/blat.csv", out, (DATA / BLAT).stat().st_size, _sha256(DATA / BLAT)
    )
    assert fetch.fetch(source) is True
    assert out.read_bytes() == (DATA / BLAT).read_bytes()
    assert _leftovers(tmp_path) == []
    n = len(server.behaviour.requests)
    assert fetch.fetch(source) is False  # present and verified: no request
    assert len(server.behaviour.requests) == n


@needs_data
def test_truncated_download_resumes_with_range(server, tmp_path, caplog):
    server.routes["/blat.csv"] = DATA / BLAT
    size = (DATA / BLAT).stat().st_size
    out = tmp_path / "blat.csv"
    source = fetch.Source(f"{server.url}/blat.csv", out, size, _sha256(DATA / BLAT))
    server.behaviour.cut_after = 700_000
    with pytest.raises(fetch.FetchError, match="run the same command again to resume"):
        fetch.fetch(source)
    assert not out.exists()  # nothing that looks complete
    part = tmp_path / ".blat.csv.part"
    assert part.stat().st_size == 700_000
    sent_before = server.behaviour.bytes_sent
    with caplog.at_level(logging.INFO):
        assert fetch.fetch(source) is True
    assert server.behaviour.requests[-1] == ("/blat.csv", "bytes=700000-")
    assert server.behaviour.bytes_sent - sent_before == size - 700_000  # only the rest was sent
    assert out.read_bytes() == (DATA / BLAT).read_bytes()
    assert _leftovers(tmp_path) == []
    assert "resuming at byte 700,000" in caplog.text


@needs_data
def test_server_ignoring_range_starts_over(server, tmp_path):
    server.routes["/blat.csv"] = DATA / BLAT
    out = tmp_path / "blat.csv"
    source = fetch.Source(f"{server.url}/blat.csv", out, None, _sha256(DATA / BLAT))
    server.behaviour.cut_after = 300_000
    with pytest.raises(fetch.FetchError):
        fetch.fetch(source)
    server.behaviour.ignore_range = True
    assert fetch.fetch(source) is True
    assert out.read_bytes() == (DATA / BLAT).read_bytes()


@needs_data
def test_corrupted_download_is_one_line_and_leaves_nothing(server, tmp_path, capsys):
    server.routes["/blat.csv"] = DATA / BLAT
    server.behaviour.flip_byte = 123_456
    out = tmp_path / "blat.csv"
    status = main(
        ["fetch", f"{server.url}/blat.csv", "--out", str(out), "--sha256", _sha256(DATA / BLAT)]
    )
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(
        f"protprof fetch: error: {out}: download from {server.url}/blat.csv has sha256 "
    )
    assert err.endswith(f"expected {_sha256(DATA / BLAT)}; deleted")
    assert not out.exists()
    assert _leftovers(tmp_path) == []


@needs_data
def test_existing_file_that_does_not_match_is_refused(server, tmp_path):
    server.routes["/blat.csv"] = DATA / BLAT
    out = tmp_path / "blat.csv"
    out.write_text("not the file\n")
    source = fetch.Source(f"{server.url}/blat.csv", out, None, _sha256(DATA / BLAT))
    with pytest.raises(fetch.FetchError, match="exists but does not match its source"):
        fetch.fetch(source)
    assert out.read_text() == "not the file\n"
    assert fetch.fetch(source, force=True) is True
    assert out.read_bytes() == (DATA / BLAT).read_bytes()


def test_missing_url_and_bad_checksum_option(server, tmp_path, capsys):
    assert main(["fetch", f"{server.url}/nothing", "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"protprof fetch: error: {server.url}/nothing: HTTP 404 Not Found"
    )
    assert main(["fetch", f"{server.url}/x", "--out", str(tmp_path / "x"), "--md5", "zz"]) == 1
    assert "md5 must be 32 lowercase hex digits, got 'zz'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if "lock" not in p.name) == []


def test_uniref_through_its_metalink(server, tmp_path, capsys):
    # UniProt's metalink (version 3) gives the size and MD5; the FASTA is the demo database.
    fasta = ROOT / "data" / "demo" / "uniprot_5k.fasta.gz"
    md5 = hashlib.md5(fasta.read_bytes()).hexdigest()
    metalink = tmp_path / "RELEASE.metalink"
    metalink.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<metalink version="3.0" xmlns="http://www.metalinker.org/"><files>'
        f'<file name="uniref90.fasta.gz"><size>{fasta.stat().st_size}</size>'
        f'<verification><hash type="md5">{md5}</hash></verification></file>'
        "</files></metalink>\n"
    )
    server.routes["/uniref90/RELEASE.metalink"] = metalink
    server.routes["/uniref90/uniref90.fasta.gz"] = fasta
    out = tmp_path / "db"
    assert (
        main(["fetch", "uniref90", "--out", str(out), "--base-url", server.url, "--dry-run"]) == 0
    )
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == (
        f"{server.url}/uniref90/uniref90.fasta.gz\t{fasta.stat().st_size:,} bytes\tmd5 {md5}"
        f"\t-> {out / 'uniref90.fasta.gz'}"
    )
    assert not out.exists()
    assert main(["fetch", "uniref90", "--out", str(out), "--base-url", server.url]) == 0
    assert (out / "uniref90.fasta.gz").read_bytes() == fasta.read_bytes()
    # A metalink whose MD5 disagrees with the file: one line, nothing kept.
    metalink.write_text(metalink.read_text().replace(md5, "0" * 32))
    (out / "uniref90.fasta.gz").unlink()
    assert main(["fetch", "uniref90", "--out", str(out), "--base-url", server.url]) == 1
    assert f"has md5 {md5}, expected {'0' * 32}; deleted" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir() if "lock" not in p.name) == []


def _serve_manifest(server: Server) -> None:
    for e in fetch.manifest():
        if e.repository != fetch.DERIVED:
            server.routes[f"/{e.repository}/{e.commit}/{e.path_in_repo}"] = DATA / e.path


@needs_data
def test_evaluation_dry_run_lists_every_file(server, tmp_path, capsys):
    entries = fetch.manifest()
    assert len(entries) == 207
    assert main(["fetch", "evaluation", "--out", str(tmp_path / "d"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 208
    total = sum(e.size for e in entries)
    assert lines[-1] == f"207 files, {total:,} bytes known"
    first = entries[0]
    assert lines[0] == (
        f"https://raw.githubusercontent.com/{first.repository}/{first.commit}/"
        f"{first.path_in_repo}\t{first.size:,} bytes\tsha256 {first.sha256}"
        f"\t-> {tmp_path / 'd' / first.path}"
    )
    # The manifest is the staged data's own provenance, row for row.
    assert (ROOT / "protprof" / "evaluation" / "sources.tsv").read_text() == (
        DATA / "PROVENANCE.tsv"
    ).read_text()


@pytest.mark.integration
@needs_data
def test_evaluation_contacts_fetched_and_manifest_derived(server, tmp_path):
    _serve_manifest(server)
    out = tmp_path / "data"
    args = [
        "fetch",
        "evaluation",
        "--out",
        str(out),
        "--base-url",
        server.url,
        "--only",
        "contacts_xtal/",
    ]
    assert main(args) == 0
    expected = [e for e in fetch.manifest() if e.path.startswith("contacts_xtal/")]
    assert len(expected) == 134  # 132 PDB files, the README, the derived manifest
    for e in expected:
        assert _sha256(out / e.path) == e.sha256, e.path
    assert (out / "contacts_xtal" / "manifest.tsv").read_bytes() == (
        DATA / "contacts_xtal" / "manifest.tsv"
    ).read_bytes()
    assert not (out / "PROVENANCE.tsv").exists()  # written only when every file is there
    n = len(server.behaviour.requests)
    assert main(args) == 0  # everything present and verified: no request
    assert len(server.behaviour.requests) == n


def test_progress_lines_in_a_log_file(caplog, tmp_path):
    now = [0.0]
    with open(tmp_path / "log", "w") as stream, caplog.at_level(logging.INFO, "protprof"):
        progress = Progress(
            100, "query", "search", interval=30, stream=stream, clock=lambda: now[0]
        )
        for t in (1, 5, 20, 31, 40, 62, 95):
            now[0] = t
            progress.update()
        progress.close()
    lines = [r.getMessage() for r in caplog.records]
    # After the first query, then when 30 s have passed since the last line, then at the end.
    assert lines == [
        "search: 1 of 100 (1.0 %), 1.00 query/s, ETA 1 min 39 s",
        "search: 4 of 100 (4.0 %), 0.13 query/s, ETA 12 min 24 s",
        "search: 6 of 100 (6.0 %), 0.10 query/s, ETA 16 min 11 s",
        "search: 7 of 100 (7.0 %), 0.07 query/s, ETA 21 min 02 s",
    ]
    assert Progress(1, "byte", "x", interval=1).interval == 10  # clamped to [10, 60] s
    assert Progress(1, "byte", "x", interval=600).interval == 60


@pytest.mark.slow  # starts Snakemake (a dry run)
def test_workflow_fetches_a_missing_uniref_database(tmp_path):
    from helpers import commands, snakemake, write_config

    workdir, folder = tmp_path / "work", tmp_path / "db dir"
    workdir.mkdir()
    write_config(workdir, database=str(folder / "uniref90.fasta.gz"))
    run = snakemake(workdir, "-n", "-p", "--config", "database_residues=1000000")
    assert run.returncode == 0, run.stderr
    found = commands(run.stdout)
    assert found["fetch_database"] == [
        [
            "protprof",
            "fetch",
            "uniref90",
            "--out",
            str(folder),
            "2>",
            "results/logs/fetch_database/uniref90.log",
        ],
    ]
    assert "prepare_database" in found  # its input is the fetched file
    # The evaluation data on request, into evaluation.data, PROVENANCE.tsv written last.
    data = tmp_path / "eval data"
    run = snakemake(
        workdir,
        "-n",
        "-p",
        "fetch_evaluation_data",
        "--config",
        f"evaluation={{'data': '{data}'}}",
    )
    assert run.returncode == 0, run.stderr
    assert commands(run.stdout)["fetch_evaluation_data"] == [
        [
            "protprof",
            "fetch",
            "evaluation",
            "--out",
            str(data),
            "2>",
            "results/logs/fetch_evaluation_data/all.log",
        ],
    ]
