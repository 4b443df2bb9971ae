"""Downstream evaluation: benchmark readers, probes on frozen embeddings, metrics, reports,
and the leakage guard that keeps test-set homologues out of pretraining."""
