"""Numbers as the evaluation's tables show them (report.md and the comparison)."""

from __future__ import annotations

import numpy as np


def number(value: float, signed: bool = False) -> str:
    """Three decimals (signed for a difference); "n/a" for a missing or non-finite value."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
