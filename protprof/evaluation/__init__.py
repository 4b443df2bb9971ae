"""Downstream evaluation: benchmark readers, probes on frozen embeddings, metrics, reports,
and the leakage guard that keeps test-set homologues out of pretraining. The tasks themselves
are the entries of `registry`."""

from protprof.evaluation.registry import names

# The built-in task names (the registry's at import; `registry.names()` sees later entries).
# The registry imports no torch, so the CLI can offer them cheaply.
TASKS = names()
