"""What a store records about reuse (`attrs["reuse"]`): the rows' roles, the summary of a
build without reuse, and the summaries of shards combined into one store's.

The store, the cache and the assembly read and combine these records without importing the
search (`protprof.search.family`), which writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Roles of the rows of a store made with reuse (the cache's `roles.npy`).
REPRESENTATIVE, MEMBER = 0, 1
JS_TOLERANCE = 0.01  # bits: an audited member "agrees" within this mean JS divergence


def per_query_summary(searched: int) -> dict[str, Any]:
    """The provenance of a build without reuse: every query searched alone."""
    return {"mode": "none", "groups": searched, "full_searches": searched}


def settings_of(summary: dict[str, Any] | None) -> tuple[str, float | None]:
    """The reuse mode and coverage a store or shard was searched with."""
    if not summary or summary.get("mode", "none") == "none":
        return ("none", None)
    return (summary["mode"], summary.get("coverage"))


def run_summary(
    mode: str, summaries: Sequence[dict[str, Any] | None], searched: int
) -> dict[str, Any]:
    """The provenance of a build that searched `searched` queries in shards with these
    summaries (none searched: everything came from the cache)."""
    if searched == 0:
        return {"mode": mode, "groups": 0, "full_searches": 0}
    return combined_summary(summaries, searched)


def combined_summary(summaries: Sequence[dict[str, Any] | None], searched: int) -> dict[str, Any]:
    """The provenance of a store assembled from shards (`summaries`: each shard's, None
    where it was searched without reuse, `searched` queries in all)."""
    given = [x for x in summaries if x]
    if not given:
        return per_query_summary(searched)
    if len(summaries) == 1:
        return dict(given[0])
    given = [x for x in given if x.get("mode", "none") != "none"]
    if not given:
        return per_query_summary(searched)
    alone = searched - sum(x["representatives"] + x["members"] for x in given)
    total = {
        key: sum(x.get(key, 0) for x in given)
        for key in ("representatives", "members", "pool_searches", "discarded_speculative")
    }
    audits = [x["audit"] for x in given if x.get("audit", {}).get("audited")]
    audited = sum(a["audited"] for a in audits)

    def weighted(key: str) -> float | None:
        known = [a for a in audits if a.get(key) is not None]
        n = sum(a["audited"] for a in known)
        return sum(a[key] * a["audited"] for a in known) / n if n else None

    return {
        "mode": given[0]["mode"],
        "coverage": given[0].get("coverage"),
        "groups": sum(x["groups"] for x in given) + alone,
        "full_searches": sum(x["full_searches"] for x in given) + alone,
        **total,
        "audit": {
            "audited": audited,
            "identical_included": weighted("identical_included"),
            "within_js": JS_TOLERANCE,
            "fraction_within": weighted("fraction_within"),
            "max_js_bits": max(
                (a["max_js_bits"] for a in audits if a.get("max_js_bits") is not None),
                default=None,
            ),
        },
        "shards": list(given),  # each job's own figures (medians do not combine)
    }
