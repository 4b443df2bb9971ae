"""The queries: FASTA reading and writing, ingest (deduplication, splits, shards), and MMseqs2
clustering."""
