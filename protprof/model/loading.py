"""A model for inference from whatever path it is given: a protprof checkpoint file
(`protprof.model.checkpoint`) or a local Hugging Face ESM directory (`protprof.model.huggingface`).

The choice between the two readers lives here, so neither reader imports the other.
"""

from __future__ import annotations

from pathlib import Path

from protprof.model.checkpoint import load_checkpoint, model_from_state
from protprof.model.encoder import LoadedModel
from protprof.model.huggingface import load_directory


def load_any(path: str | Path) -> LoadedModel:
    """A protprof checkpoint file, or a local Hugging Face ESM directory, for inference.

    Raises:
        CheckpointError: one line naming the file or directory and what is wrong.
    """
    if Path(path).is_dir():
        return load_directory(path)
    state = load_checkpoint(path)
    return LoadedModel(model_from_state(state, path), str(path), state["step"], state["config"])
