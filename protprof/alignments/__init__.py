"""Alignments and the profiles made from them: the file formats (Stockholm, A2M, A3M), the
filters, alignment files given as input, the kept-alignment folder (`--msa-dir`), per-residue
profiles, and the importer that makes a store from alignment files."""
