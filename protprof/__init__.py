"""protprof: per-residue evolutionary profiles from jackhmmer searches, stored in Zarr, for
multi-task pretraining of protein sequence models."""

from __future__ import annotations

__version__ = "0.1.0"

from protprof.errors import ProtprofError  # noqa: E402
from protprof.store import ProfileStore, open_store  # noqa: E402

__all__ = ["ProfileStore", "ProtprofError", "__version__", "open_store"]
