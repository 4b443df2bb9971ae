"""Downloads that resume, are verified, and appear only when complete.

- **Resumable:** bytes go to a hidden `.NAME.part` beside the destination; a rerun asks the
  server for the rest (HTTP `Range`, with `If-Range` on the validator the server gave, so a
  file changed on the server starts over instead of being spliced).
- **Verified:** size, and sha256 or md5 where known (UniProt publishes sizes and MD5s in each
  release's `RELEASE.metalink`; the evaluation data's manifest has sha256s).
- **Atomic:** the destination name appears only by a rename after verification. A wrong
  checksum deletes the partial download and is one line; a truncated download keeps only the
  hidden `.part` (to resume), never a file that looks complete.

Named sources: `uniref90`, `uniref50` (UniProt's FTP site over HTTPS) and `evaluation` (the
downstream tasks' files from their public repositories, by `evaluation/sources.tsv`: the
staged data's PROVENANCE.tsv, repository, commit, path, bytes and sha256 per file; four small
files are derived from downloaded ones and checked against their sha256 the same way).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import http.client
import io
import json
import logging
import os
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from protprof.atomic import FILE, claim_output, output_error, require_space
from protprof.errors import ProtprofError
from protprof.progress import Progress

log = logging.getLogger(__name__)

UNIPROT = "https://ftp.uniprot.org/pub/databases/uniprot/uniref"
GITHUB_RAW = "https://raw.githubusercontent.com"
DERIVED = "(derived)"
_BLOCK = 1 << 20


class FetchError(ProtprofError, OSError):
    """A download that failed, or whose bytes do not match what its source publishes."""


@dataclass(frozen=True)
class Source:
    """One file to download: where from, where to, and what it must be."""

    url: str
    dest: Path
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None

    def __post_init__(self) -> None:
        for name, length in (("sha256", 64), ("md5", 32)):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
                raise FetchError(f"{name} must be {length} lowercase hex digits, got {value!r}")


def _part(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def _meta(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part.json")


def _hashers(source: Source) -> dict[str, hashlib._Hash]:
    return {
        name: hashlib.new(name) for name in ("sha256", "md5") if getattr(source, name) is not None
    }


def _hash_file(path: Path, hashers: dict[str, hashlib._Hash]) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            for h in hashers.values():
                h.update(block)
            n += len(block)
    return n


def _mismatch(source: Source, size: int, hashers: dict[str, hashlib._Hash]) -> str | None:
    """What differs from the source's published size and checksums, or None."""
    if source.size is not None and size != source.size:
        return f"{size:,} bytes, expected {source.size:,}"
    for name, h in hashers.items():
        if h.hexdigest() != getattr(source, name):
            return f"{name} {h.hexdigest()}, expected {getattr(source, name)}"
    return None


def verify_file(source: Source, path: Path | None = None) -> str | None:
    """Check an existing file against `source`'s size and checksums: None if it matches."""
    path = source.dest if path is None else path
    hashers = _hashers(source)
    return _mismatch(source, _hash_file(path, hashers), hashers)


def _open(source: Source, offset: int, validator: str | None, timeout: float) -> Any:
    request = urllib.request.Request(source.url, headers={"User-Agent": "protprof"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
        if validator:
            request.add_header("If-Range", validator)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the partial file is whole
            return None
        raise FetchError(f"{source.url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{source.url}: cannot connect ({reason})") from e


def _discard(dest: Path) -> None:
    for path in (_part(dest), _meta(dest)):
        path.unlink(missing_ok=True)


def _start(source: Source) -> tuple[int, str | None]:
    """Bytes already downloaded by an earlier run of this URL, and its validator."""
    part, meta = _part(source.dest), _meta(source.dest)
    if not part.exists():
        return 0, None
    try:
        state = json.loads(meta.read_text())
        if state["url"] != source.url:
            raise ValueError("another URL")
    except (OSError, ValueError, KeyError, TypeError):
        _discard(source.dest)  # a partial file of unknown origin cannot be resumed safely
        return 0, None
    return part.stat().st_size, state.get("validator")


def _download(source: Source, timeout: float, interval: float) -> None:
    """Fill `.part` to the end, resuming what an earlier run left."""
    dest, part = source.dest, _part(source.dest)
    offset, validator = _start(source)
    response = _open(source, offset, validator, timeout)
    if response is None:
        return
    with response:
        resumed = response.status == 206 and response.headers.get("Content-Range", "").startswith(
            f"bytes {offset}-"
        )
        if offset and not resumed:  # the server ignored Range, or the file changed
            if response.status == 206:
                raise FetchError(
                    f"{source.url}: asked for bytes from {offset:,}, the server sent "
                    f"{response.headers.get('Content-Range')!r}"
                )
            log.info("%s: the server sends the whole file; starting over", source.url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else source.size
        if total is not None:
            require_space([(dest, total - offset)], "nothing was downloaded")
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        _meta(dest).write_text(json.dumps({"url": source.url, "validator": validator}))
        if offset:
            log.info("%s: resuming at byte %s", source.url, f"{offset:,}")
        with (
            open(part, "ab" if offset else "wb") as out,
            Progress(total, "byte", f"fetch {dest.name}", interval) as progress,
        ):
            progress.set_start(offset)
            try:
                while block := response.read(_BLOCK):
                    out.write(block)
                    progress.update(len(block))
            except (OSError, ValueError, http.client.HTTPException) as e:  # reset, IncompleteRead
                raise FetchError(
                    f"{source.url}: the download stopped at byte {offset + progress.done:,} "
                    f"({type(e).__name__}); run the same command again to resume"
                ) from e
            out.flush()
            os.fsync(out.fileno())
    got = part.stat().st_size
    if total is not None and got < total:
        raise FetchError(
            f"{source.url}: the connection ended after {got:,} of {total:,} bytes; "
            "run the same command again to resume"
        )


def fetch(
    source: Source, force: bool = False, timeout: float = 60.0, interval: float = 30.0
) -> bool:
    """Download `source.url` to `source.dest`, verified; resume an interrupted download.

    Returns:
        True if it downloaded, False if `dest` already held the verified file.

    Raises:
        FetchError: the server or network failed (the partial download is kept, to resume),
            or the bytes do not match the published size or checksum (nothing is kept).
        OutputError: the destination is not writable, or locked by another fetch.
    """
    dest = source.dest
    with claim_output(dest, FILE, force):
        if dest.exists() and not force:
            problem = verify_file(source)
            if problem is None:
                checked = source.size is not None or source.sha256 or source.md5
                how = "present and verified" if checked else "present (nothing to check it by)"
                log.info("%s: %s; not downloaded again", dest, how)
                return False
            raise FetchError(
                f"{dest}: exists but does not match its source ({problem}); "
                "--force downloads it again"
            )
        try:
            _download(source, timeout, interval)
            hashers = _hashers(source)
            problem = _mismatch(source, _hash_file(_part(dest), hashers), hashers)
            if problem is not None:
                _discard(dest)
                raise FetchError(f"{dest}: download from {source.url} has {problem}; deleted")
            os.replace(_part(dest), dest)
            _meta(dest).unlink(missing_ok=True)
        except OSError as e:
            if isinstance(e, ProtprofError):
                raise
            raise output_error(dest, e) from e
    log.info("%s: downloaded and verified", dest)
    return True


# --- UniProt -------------------------------------------------------------------------------


def _metalink_files(text: str, where: str) -> dict[str, dict[str, str]]:
    """name -> {size, md5, sha256...} from a metalink file (version 3 or 4)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise FetchError(f"{where}: not a metalink file ({e})") from e
    files: dict[str, dict[str, str]] = {}
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "file" or "name" not in element.attrib:
            continue
        info: dict[str, str] = {}
        for child in element.iter():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "size" and child.text:
                info["size"] = child.text.strip()
            elif tag == "hash" and child.text:
                info[child.attrib.get("type", "").lower().replace("-", "")] = child.text.strip()
        files[element.attrib["name"]] = info
    return files


def read_url(url: str, timeout: float = 60.0) -> str:
    """A small text file (a metalink, a source file to derive from), in memory."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as e:
        raise FetchError(f"{url}: cannot read ({getattr(e, 'reason', e)})") from e


def uniref_source(name: str, out_dir: Path, base: str = UNIPROT) -> Source:
    """UniRef90 or UniRef50's FASTA, with the size and MD5 of its release's metalink."""
    folder = f"{base.rstrip('/')}/{name}"
    file = f"{name}.fasta.gz"
    metalink = f"{folder}/RELEASE.metalink"
    info = _metalink_files(read_url(metalink), metalink).get(file)
    if info is None or "md5" not in info:
        raise FetchError(f"{metalink}: lists no MD5 for {file}")
    size = int(info["size"]) if "size" in info else None
    return Source(f"{folder}/{file}", out_dir / file, size, info.get("sha256"), info["md5"])


# --- the evaluation data -------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One row of the evaluation manifest (the staged data's PROVENANCE.tsv)."""

    path: str  # relative to the data folder
    repository: str  # owner/name, or "(derived)"
    commit: str
    path_in_repo: str  # for derived files: how they were made
    size: int
    sha256: str


def manifest(path: Path | None = None) -> list[Entry]:
    """The evaluation data's files (default: the manifest shipped with protprof)."""
    if path is None:
        text = resources.files("protprof.evaluation").joinpath("sources.tsv").read_text()
        where = "protprof/evaluation/sources.tsv"
    else:
        text, where = path.read_text(), str(path)
    entries = []
    for i, row in enumerate(csv.DictReader(io.StringIO(text), delimiter="\t"), start=2):
        try:
            entries.append(
                Entry(
                    row["staged_path"],
                    row["repository"],
                    row["commit"],
                    row["path_in_repo"],
                    int(row["bytes"]),
                    row["sha256"],
                )
            )
        except (KeyError, ValueError, TypeError) as e:
            raise FetchError(f"{where}: line {i}: not a manifest row ({e})") from e
    return entries


def evaluation_sources(
    out_dir: Path, base: str = GITHUB_RAW, only: Iterable[str] = ()
) -> list[Source]:
    """Every downloadable evaluation file (derived ones are made after), as sources."""
    prefixes = tuple(only)
    return [
        Source(
            f"{base.rstrip('/')}/{e.repository}/{e.commit}/{e.path_in_repo}",
            out_dir / e.path,
            e.size,
            e.sha256,
        )
        for e in manifest()
        if e.repository != DERIVED and (not prefixes or e.path.startswith(prefixes))
    ]


def _nn4dms_datasets(base: str) -> dict:
    url = f"{base}/gitter-lab/nn4dms/434e354828f306cbb6796033ef1169cbe5207350/code/constants.py"
    tree = ast.parse(read_url(url))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DATASETS":
            return ast.literal_eval(node.value)
    raise FetchError(f"{url}: no DATASETS literal")


def _wild_types(datasets: dict, names: Iterable[str]) -> str:
    entries = {n: {"wt_aa": datasets[n]["wt_aa"], "wt_ofs": datasets[n]["wt_ofs"]} for n in names}
    return json.dumps(entries, indent=1)


def _blat_wild_type(base: str) -> str:
    url = (
        f"{base}/facebookresearch/esm/2b369911bb5b4b0dda914521b9475cad1656b2ac/"
        "examples/variant-prediction/README.md"
    )
    found = re.search(r"--sequence\s+([A-Z]+)", read_url(url))
    if found is None:
        raise FetchError(f"{url}: no --sequence argument")
    note = (
        'mutant "H24C" -> wt_aa[24-24]=="H"; sequence copied from the --sequence argument in '
        "facebookresearch/esm examples/variant-prediction/README.md"
    )
    entry = {"wt_aa": found.group(1), "first_position_number": 24, "note": note}
    return json.dumps({"BLAT_ECOLX": entry}, indent=1)


def contacts_manifest(folder: Path) -> str:
    """contacts_xtal/manifest.tsv: one row per chain with a CA atom, from the PDB files."""
    import numpy as np
    from Bio.PDB import PDBParser
    from Bio.SeqUtils import seq1

    columns = [
        "pdb_file", "split", "chain", "first_resnum", "last_resnum", "n_residues_with_CA",
        "n_chain_breaks_CA_CA_gt_4.2A", "n_nonGly_missing_CB", "sequence_from_ATOM",
    ]  # fmt: skip
    rows = ["\t".join(columns)]
    parser = PDBParser(QUIET=True)
    for split in ("training", "validation"):
        for path in sorted((folder / f"pdbs_for_{split}").glob("*.pdb")):
            model = next(iter(parser.get_structure(path.stem, path)))
            for chain in model:
                residues = [r for r in chain if "CA" in r]
                if not residues:
                    continue
                ca = np.array([r["CA"].coord for r in residues])
                breaks = int((np.linalg.norm(np.diff(ca, axis=0), axis=1) > 4.2).sum())
                no_cb = sum(1 for r in residues if r.get_resname() != "GLY" and "CB" not in r)
                sequence = "".join(seq1(r.get_resname()) for r in residues)
                fields = [path.name, split, chain.id, residues[0].id[1], residues[-1].id[1]]
                fields += [len(residues), breaks, no_cb, sequence]
                rows.append("\t".join(map(str, fields)))
    return "\n".join(rows) + "\n"


# How each derived file is made: (files it needs in the data folder, maker(data, base)).
DERIVERS: dict[str, tuple[tuple[str, ...], Callable[[Path, str], str]]] = {
    "contacts_xtal/manifest.tsv": (
        ("contacts_xtal/",),
        lambda data, base: contacts_manifest(data / "contacts_xtal"),
    ),
    "fluorescence_avgfp/wt_sequence.json": (
        (),
        lambda data, base: _wild_types(_nn4dms_datasets(base), ["avgfp"]),
    ),
    "dms_nn4dms/wt_sequences.json": (
        (),
        lambda data, base: _wild_types(_nn4dms_datasets(base), ["pab1", "ube4b", "bgl3", "gb1"]),
    ),
    "dms_blat_ecolx/wt_sequence.json": ((), lambda data, base: _blat_wild_type(base)),
}


def derive(entry: Entry, out_dir: Path, base: str = GITHUB_RAW, force: bool = False) -> bool:
    """Make a derived file and check it against the manifest's sha256 before it appears."""
    from protprof.atomic import atomic_output

    dest = out_dir / entry.path
    if entry.path not in DERIVERS:
        raise FetchError(f"{entry.path}: derived file with no known way to make it")
    source = Source("", dest, entry.size, entry.sha256)
    if dest.exists() and not force and verify_file(source) is None:
        return False
    text = DERIVERS[entry.path][1](out_dir, base.rstrip("/"))
    data = text.encode()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise FetchError(f"{dest}: derived file has sha256 {digest}, expected {entry.sha256}")
    with atomic_output(dest, FILE, force) as tmp:
        tmp.write_bytes(data)
    return True


# --- what the command line and the workflow call ------------------------------------------

NAMED = ("uniref90", "uniref50", "evaluation")


def plan(
    what: str,
    out: Path,
    base: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    only: Iterable[str] = (),
) -> tuple[list[Source], list[Entry]]:
    """The downloads (and the derived files) that `fetch_all` would make, without fetching."""
    if what in ("uniref90", "uniref50"):
        return [uniref_source(what, out, base or UNIPROT)], []
    if what == "evaluation":
        prefixes = tuple(only)
        derived = [
            e
            for e in manifest()
            if e.repository == DERIVED and (not prefixes or e.path.startswith(prefixes))
        ]
        return evaluation_sources(out, base or GITHUB_RAW, prefixes), derived
    if not re.match(r"^(https?|ftp)://", what):
        raise FetchError(f"{what}: neither a URL nor one of {', '.join(NAMED)}")
    return [Source(what, out, size, sha256, md5)], []


def fetch_all(
    sources: list[Source],
    derived: list[Entry],
    out: Path,
    base: str | None = None,
    force: bool = False,
    interval: float = 30.0,
) -> tuple[int, int]:
    """Fetch every source, then make the derived files: (downloaded or made, already there)."""
    done = present = 0
    for i, source in enumerate(sources, start=1):
        if len(sources) > 1:
            log.info("file %d of %d: %s", i, len(sources), source.dest)
        if fetch(source, force=force, interval=interval):
            done += 1
        else:
            present += 1
    for entry in derived:
        if derive(entry, out, base or GITHUB_RAW, force):
            done += 1
        else:
            present += 1
    return done, present


def write_provenance(out: Path) -> Path:
    """After a complete evaluation fetch: the manifest as `PROVENANCE.tsv`, the staged data
    folder's own record (written last, so its presence means every file is there)."""
    from protprof.atomic import atomic_output

    text = resources.files("protprof.evaluation").joinpath("sources.tsv").read_text()
    path = out / "PROVENANCE.tsv"
    with atomic_output(path, FILE, force=True) as tmp:
        tmp.write_text(text)
    return path


def uniref_name(database: str) -> str | None:
    """`uniref90` or `uniref50` when a workflow's database path names UniProt's file, so the
    workflow can fetch it (None for any other database)."""
    name = Path(database).name
    return (
        name.removesuffix(".fasta.gz")
        if name in ("uniref90.fasta.gz", "uniref50.fasta.gz")
        else None
    )


def describe(sources: list[Source], derived: list[Entry]) -> str:
    """The dry run's listing: URL, size and destination of each file."""
    lines = []
    for s in sources:
        size = f"{s.size:,} bytes" if s.size is not None else "size unknown"
        check = ", ".join(f"{n} {getattr(s, n)}" for n in ("sha256", "md5") if getattr(s, n))
        lines.append(f"{s.url}\t{size}\t{check or 'no checksum'}\t-> {s.dest}")
    for e in derived:
        lines.append(
            f"(derived: {e.path_in_repo})\t{e.size:,} bytes\tsha256 {e.sha256}\t-> {e.path}"
        )
    total = sum(s.size or 0 for s in sources) + sum(e.size for e in derived)
    lines.append(f"{len(sources) + len(derived)} files, {total:,} bytes known")
    return "\n".join(lines)
