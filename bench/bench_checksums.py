"""Checksums of every array: protprof's own table (CRC-32 of each chunk file and of each
array's metadata, in the root attributes) against zarr v3's `crc32c` codec (the peer), each
against the same store written and read without checksums, in one run.

Writes a store of the demo store's sequences repeated (`--copies`, default 200: ~10^6
residues per 4,000 sequences of the demo) three ways and reads every array back:

- none: what protprof wrote before checksums on every array (the baseline of both ratios);
- table: protprof's writer as it is (`write_stores` + `checksum_table`), read as readers read
  (`ProfileStore.read_all`: checks at open, each residue chunk once);
- codec: the same arrays with zarr's `crc32c` codec appended to every array's codecs (needs
  the `google-crc32c` package), read through zarr, which checks each chunk as it decodes it.

It also tries the corruption the issue cares about, a value changed *through zarr*, on each.

Usage: python bench/bench_checksums.py [STORE] [--copies N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from _results import record  # noqa: E402

from protprof.errors import StoreError  # noqa: E402
from protprof.store import zarr_store as store_module  # noqa: E402
from protprof.store.zarr_store import ProfileStore, StoreData, open_store, write_stores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def repeated(data: StoreData, copies: int) -> StoreData:
    lengths = np.diff(data.offsets)
    return StoreData(
        [f"{i}:{x}" for i in range(copies) for x in data.ids],
        np.tile(data.tokens, copies),
        np.tile(data.profiles, (copies, 1)),
        np.concatenate([[0], np.cumsum(np.tile(lengths, copies))]).astype(np.int64),
        np.tile(data.n_hits, copies),
        np.tile(data.neff, copies),
        np.tile(data.split, copies),
    )


def _with_codec(create: Callable) -> Callable:
    """`zarr_store._create` with zarr's crc32c codec after every array's compressors."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    def create_with_crc(group: zarr.Group, n_seq: int, n_res: int, chunk_rows: int) -> dict:
        class WithCrc:  # what `_create` calls of the group, codec appended
            def create_array(self, name: str, **kwargs: object) -> zarr.Array:
                compressors = kwargs.pop("compressors", "auto")
                chain = [] if compressors is None else [ZstdCodec(level=0)]
                return group.create_array(name, compressors=[*chain, Crc32cCodec()], **kwargs)

        return dict(create(WithCrc(), n_seq, n_res, chunk_rows))

    return create_with_crc


def write(kind: str, data: StoreData, out: Path) -> float:
    patches = []
    if kind != "table":  # written as before checksums (format 1.0: readers expect none)
        patches.append(mock.patch.object(store_module, "checksum_table", lambda *a, **k: {}))
        patches.append(mock.patch.object(store_module, "FORMAT_VERSION", "1.0"))
    if kind == "codec":
        patches.append(
            mock.patch.object(store_module, "_create", _with_codec(store_module._create))
        )
    for p in patches:
        p.start()
    try:
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        write_stores(out, [data], {"note": kind})
        return time.perf_counter() - start
    finally:
        for p in patches:
            p.stop()


def read_own(path: Path, check: bool) -> float:
    """Every array in memory the way protprof's readers read (memory maps, not zarr)."""
    start = time.perf_counter()
    if check:
        open_store(path).read_all()
    else:
        with mock.patch.object(ProfileStore, "_check_chunk", lambda *a: None):
            ProfileStore(path, check=False).read_all()
    return time.perf_counter() - start


def read_zarr(path: Path) -> float:
    """Every array in memory through zarr (the codec checks each chunk as it decodes it)."""
    start = time.perf_counter()
    for name in store_module.ARRAYS:
        zarr.open_array(str(path / name), mode="r")[:]
    return time.perf_counter() - start


def best(run: Callable[[], float], repeats: int = 5) -> float:
    return min(run() for _ in range(repeats))


def caught_zarr_write(path: Path, kind: str) -> bool:
    """Change n_hits[0] through zarr (which recomputes a codec checksum): is it refused?"""
    array = zarr.open_array(str(path / "n_hits"), mode="r+")
    array[0] = int(array[0]) + 16
    try:
        if kind == "codec":
            read_zarr(path)
        else:
            open_store(path)
    except (StoreError, ValueError):
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "store", nargs="?", type=Path, default=ROOT / "results/store/profiles.zarr"
    )
    parser.add_argument("--copies", type=int, default=200)
    args = parser.parse_args()
    if not args.store.exists():
        sys.exit(f"{args.store} is missing: run `make demo` first (or pass a store)")
    data = repeated(open_store(args.store).read_all(), args.copies)
    with tempfile.TemporaryDirectory() as folder:
        paths = {kind: Path(folder) / f"{kind}.zarr" for kind in ("none", "table", "codec")}
        writes = {k: best(lambda k=k: write(k, data, paths[k])) for k in paths}
        own = {k: best(lambda k=k: read_own(paths[k], k == "table")) for k in ("none", "table")}
        via = {k: best(lambda k=k: read_zarr(paths[k])) for k in ("none", "codec")}
        opened = {
            k: best(lambda k=k: _open(paths[k], k == "table"), 10) for k in ("none", "table")
        }
        caught = {k: caught_zarr_write(paths[k], k) for k in ("table", "codec")}
    n_seq, n_res = len(data.ids), len(data.tokens)
    lines = [
        f"Store: the demo store's sequences x {args.copies}: {n_seq:,} sequences, "
        f"{n_res:,} residues ({n_res * 21 / 1e6:.0f} MB of residue arrays). Best of 5.",
        "",
        "| measure | none | table (ours) | crc32c codec (peer) |",
        "|---|---|---|---|",
        f"| write s | {writes['none']:.3f} | {writes['table']:.3f} | {writes['codec']:.3f} |",
        f"| write cost vs none | | **{writes['table'] / writes['none'] - 1:+.1%}** | "
        f"**{writes['codec'] / writes['none'] - 1:+.1%}** |",
        f"| read every array, protprof's readers, s | {own['none']:.3f} | {own['table']:.3f} | "
        "(cannot: the chunk files carry a crc32c trailer protprof would have to check itself) |",
        f"| read every array through zarr, s | {via['none']:.3f} | | {via['codec']:.3f} |",
        f"| read cost vs none | | **{own['table'] / own['none'] - 1:+.1%}** | "
        f"**{via['codec'] / via['none'] - 1:+.1%}** |",
        f"| open (metadata + index arrays), ms | {opened['none'] * 1e3:.1f} | "
        f"{opened['table'] * 1e3:.1f} | |",
        f"| n_hits[0] changed through zarr is refused | no | {_yes(caught['table'])} | "
        f"{_yes(caught['codec'])} |",
    ]
    record("checksums on every array: own table vs zarr's crc32c codec", lines)


def _open(path: Path, check: bool) -> float:
    start = time.perf_counter()
    ProfileStore(path, check=check)
    return time.perf_counter() - start


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


if __name__ == "__main__":
    main()
