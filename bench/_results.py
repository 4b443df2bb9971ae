"""Append a dated section to bench/RESULTS.md (benchmarks record ratios, not assertions)."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def record(title: str, lines: list[str]) -> None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text = f"\n## {title} ({stamp}; {machine})\n\n" + "\n".join(lines) + "\n"
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nWritten by the scripts in `bench/`; newest "
            "last. Compare ratios, not absolute seconds.\n"
        )
    with open(RESULTS, "a") as handle:
        handle.write(text)
    print(text)
