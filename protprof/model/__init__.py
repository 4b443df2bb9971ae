"""The model and inference: its configuration (`config`, `esm_config`; both torch-free), the
encoder, checkpoints, Hugging Face directories, loading either, and embedding sequences."""
