"""Format versions of the small files protprof writes beside its stores.

The profile store and the cache carry their own (`zarr_store.FORMAT_VERSION`,
`cache.FORMAT_VERSION`). The kinds in `VERSIONS` carry `format` and `format_version`; where
protprof reads one back (the fingerprint, report.json, the alignment reference, an export's
protprof.json), `check` refuses a file from an older or newer protprof by name instead of
misreading it. A reader accepts any minor version of the major it knows: minor versions only
add keys.

Files written before they carried a version hold no `format` key; they read as version 1.0,
which is what they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protprof.errors import InputFormatError

# Each kind's current version. Bump the minor on added keys, the major on anything a reader of
# the old version would misread (and teach the reader the old major, or refuse it).
VERSIONS = {
    "fingerprint": "1.0",  # prepare-db: a database's checksum and counts
    "plan": "1.0",  # plan: plan.json, the search jobs and their estimated cost
    "report": "1.0",  # evaluate: report.json
    "guard": "1.0",  # guard --report: what the leakage guard dropped
    "reference": "1.0",  # reference: the alignment reference .npz's meta
    "embeddings": "1.0",  # embed: the embeddings .npz
    "export": "1.0",  # export: protprof.json in an exported Hugging Face directory
}


def stamp(kind: str) -> dict[str, str]:
    """The `format` and `format_version` keys a file of this kind is written with."""
    return {"format": f"protprof.{kind}", "format_version": VERSIONS[kind]}


def check(data: dict[str, Any], kind: str, path: str | Path) -> None:
    """Refuse a file of another kind, or of a major version this protprof does not read.

    Raises:
        InputFormatError: one line naming the file, its format and what this protprof reads.
    """
    if not isinstance(data, dict):
        raise InputFormatError(f"{path}: not a protprof.{kind} file (a JSON object expected)")
    found = data.get("format")
    if found is None:  # written before files carried a version: 1.0
        return
    if found != f"protprof.{kind}":
        raise InputFormatError(f"{path}: a {found} file, not a protprof.{kind} file")
    version = str(data.get("format_version", ""))
    want = VERSIONS[kind]
    if version.partition(".")[0] != want.partition(".")[0]:
        raise InputFormatError(
            f"{path}: protprof.{kind} format {version or '(none)'}; this protprof reads "
            f"{want.partition('.')[0]}.x: use the protprof that wrote it, or write it again"
        )
