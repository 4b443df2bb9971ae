"""Training: its configuration (`config`, torch-free), the store's data as batches (`data`),
the training loop (`loop`), and sharding across processes (`sharding`)."""
