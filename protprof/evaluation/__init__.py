"""Downstream evaluation: benchmark readers, probes on frozen embeddings, metrics, reports,
and the leakage guard that keeps test-set homologues out of pretraining."""

# The task names live here, not in `tasks`, so the CLI can offer them without importing torch
# (which costs ~3 s on every `protprof` command).
TASKS = ("ss", "homology", "stability", "fluorescence", "contacts", "variants", "profile")
