"""protprof: per-residue evolutionary profiles from jackhmmer searches, stored in Zarr, for
multi-task pretraining of protein sequence models."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any  # noqa: E402

from protprof.errors import ProtprofError  # noqa: E402

if TYPE_CHECKING:
    from protprof.store.zarr_store import ProfileStore, open_store


def __getattr__(name: str) -> Any:
    # Lazy: importing zarr costs ~0.5 s, which every CLI call would otherwise pay.
    if name in ("ProfileStore", "open_store"):
        from protprof.store import zarr_store

        return getattr(zarr_store, name)
    raise AttributeError(f"module 'protprof' has no attribute {name!r}")


__all__ = ["ProfileStore", "ProtprofError", "__version__", "open_store"]
