"""The alignment's own profile as a zero-shot reference: each assay's wild type searched with
protprof's pipeline against the store's database, with the store's search and profile settings,
and scored by the log-odds of its (unquantised) profile — the site-independent model the
profile head learns to approximate.

`protprof reference` computes the profiles once into an .npz; `protprof evaluate --reference`
reads it, so many evaluations of one store never repeat the searches.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from protprof.atomic import Kind, atomic_output
from protprof.errors import InputFormatError
from protprof.evaluation.datasets import DatasetError
from protprof.queries.fasta import Record
from protprof.store.file_versions import check, stamp

log = logging.getLogger(__name__)


def _is_reference(path: Path) -> bool:
    try:
        with np.load(path) as archive:
            return "meta" in archive.files
    except (OSError, ValueError, EOFError, AttributeError):  # np.load of an empty file: EOFError
        return False


REFERENCE = Kind("an alignment reference .npz of `protprof reference`", _is_reference)


def store_settings(store_path: Path) -> tuple[dict, dict, dict, str]:
    """The store's database fingerprint, search and profile settings, and store_id."""
    from protprof.store.zarr_store import open_store

    store = open_store(store_path)
    attrs = store.attrs
    return dict(attrs["database"]), dict(attrs["search"]), dict(attrs["profile"]), store.identity


def compute(
    wild_types: dict[str, str], store_path: Path, database: Path | None, threads: int
) -> dict[str, np.ndarray]:
    """The float profile (L, 20) of each wild type, searched as the store's queries were.

    Raises:
        DatasetError: the store's database is not found or is not the one it was built from.
    """
    from protprof.alignments.profiles import ProfileParams, profile_result
    from protprof.jackhmmer import JackhmmerSearch, SearchParams, load_database

    fingerprint, search, profile, _ = store_settings(store_path)
    path = Path(database or fingerprint.get("path", ""))
    if not path.is_file():
        raise DatasetError(
            f"{store_path}: its database {path} is not found; pass --database (the file the "
            "store was built from)"
        )
    loaded = load_database(path)
    if loaded.fingerprint["sha256"] != fingerprint["sha256"]:
        raise DatasetError(
            f"{path}: is not the database {store_path} was built from (sha256 differs)"
        )
    known = {f.name for f in dataclasses.fields(SearchParams)}
    params = SearchParams(**{k: v for k, v in search.items() if k in known})
    profile_params = ProfileParams(**profile)
    records = [Record(name, sequence) for name, sequence in wild_types.items()]
    z = int(fingerprint["n_sequences"])
    profiled = JackhmmerSearch(loaded.block, params, threads, z).run(
        records, None, lambda r: profile_result(r, profile_params)
    )
    out = {}
    for record, result in zip(records, profiled, strict=True):
        out[record.id] = np.asarray(result.values, dtype=np.float64)
        log.info(
            "alignment reference %s: %d hits in the final alignment", record.id, result.n_hits
        )
    return out


def write(
    path: Path, profiles: dict[str, np.ndarray], wild_types: dict[str, str], store: Path
) -> None:
    """An .npz: one (L, 20) array per assay and `meta` (store_id, wild types, settings)."""
    fingerprint, search, profile, store_id = store_settings(store)
    meta = {
        **stamp("reference"),
        "store": str(store),
        "store_id": store_id,
        "database_sha256": fingerprint["sha256"],
        "search": search,
        "profile": profile,
        "wild_types": wild_types,
    }
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta)), **profiles}
    with atomic_output(path, REFERENCE) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read(path: Path, wild_types: dict[str, str], store: Path | None) -> dict[str, np.ndarray]:
    """The profiles of a reference .npz, checked against the assays' wild types (and the store,
    when given).

    Raises:
        DatasetError: not a reference file, or made for other wild types or another store.
    """
    if not Path(path).is_file():
        raise DatasetError(f"{path}: no such alignment reference file")
    if not _is_reference(path):
        raise DatasetError(f"{path}: not an alignment reference of `protprof reference`")
    try:
        with np.load(path) as archive:
            meta = json.loads(str(archive["meta"]))
            profiles = {k: archive[k] for k in archive.files if k != "meta"}
        check(meta, "reference", path)
        wild_types_made = meta["wild_types"]
    except InputFormatError as e:
        raise DatasetError(str(e)) from e
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DatasetError(f"{path}: a damaged alignment reference ({e})") from e
    if wild_types_made != wild_types:
        raise DatasetError(f"{path}: made for other wild types than these assays'")
    if store is not None and meta["store_id"] != store_settings(store)[3]:
        raise DatasetError(f"{path}: made from another store than {store}")
    return profiles
