"""Embeddings of any sequences from a trained checkpoint: per-residue and mean-pooled hidden
states, and predicted profiles — what downstream probes consume."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protprof.alphabet import encode, pad_tokens
from protprof.atomic import Kind, atomic_output
from protprof.model.config import EmbedParams
from protprof.model.encoder import ProteinEncoder
from protprof.store.file_versions import stamp


@torch.inference_mode()
def embed_sequences(
    model: ProteinEncoder,
    sequences: list[str],
    max_tokens: int = EmbedParams.max_tokens,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-residue hidden states (L, d) and predicted profiles (L, 20) for each sequence.

    Sequences are batched by length under a padded-token budget (large batches: 1.7x faster
    than 8,192 tokens for the tiny model on CPU); specials are dropped. The MLM head is not
    evaluated: nothing here needs it.
    """
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    hidden: list[np.ndarray | None] = [None] * len(sequences)
    profiles: list[np.ndarray | None] = [None] * len(sequences)
    start = 0
    while start < len(order):
        stop = start + 1
        while (
            stop < len(order)
            and (len(sequences[order[stop]]) + 2) * (stop - start + 1) <= max_tokens
        ):
            stop += 1
        tokens = pad_tokens([encode(sequences[i]) for i in order[start:stop]])
        states = model.encode(torch.from_numpy(tokens))
        predicted = torch.softmax(model.profile_head(states).float(), -1)
        for b, i in enumerate(order[start:stop]):
            n = len(sequences[i])
            hidden[i] = states[b, 1 : n + 1].float().numpy()
            profiles[i] = predicted[b, 1 : n + 1].numpy()
        start = stop
    return hidden, profiles  # type: ignore[return-value]


def _is_embeddings(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return {"ids.npy", "per_residue.npy"} <= set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


EMBEDDINGS = Kind("an embeddings .npz of `protprof embed`", _is_embeddings)


def write_embeddings(
    path: str | Path,
    ids: list[str],
    hidden: list[np.ndarray],
    profiles: list[np.ndarray] | None,
) -> None:
    """An .npz with ids, offsets, per_residue (R, d), mean (N, d), format and format_version
    and, unless `profiles` is None (a model without a profile head), profiles (R, 20)."""
    lengths = [len(h) for h in hidden]
    arrays: dict[str, Any] = {
        **{key: np.array(value) for key, value in stamp("embeddings").items()},
        "ids": np.array(ids),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "per_residue": np.concatenate(hidden).astype(np.float32),
        "mean": np.stack([h.mean(0) for h in hidden]).astype(np.float32),
    }
    if profiles is not None:
        arrays["profiles"] = np.concatenate(profiles).astype(np.float32)
    with atomic_output(path, EMBEDDINGS) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
