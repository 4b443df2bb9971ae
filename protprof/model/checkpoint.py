"""Trained models apart from training: write, read and rebuild checkpoints.

A checkpoint is a `torch.save`d dict of plain types and tensors (it loads with
`weights_only=True`). Every checkpoint holds `model_config`, `model` (the encoder's state dict),
`config` (the training settings) and `step`; the trainer's also hold what resuming needs
(`optimizer`, `scheduler`, `sampler`, `rng`). Inference (embed, evaluation, benchmarks) imports
this module, never the trainer: no torch.distributed, YAML or data loader. Hugging Face
directories are `protprof.model.huggingface`'s; `protprof.model.loading` chooses between the two.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from protprof.atomic import atomic_output
from protprof.errors import CheckpointError
from protprof.model.config import ModelConfig
from protprof.model.encoder import ProteinEncoder, non_finite

REQUIRED = ("model_config", "model", "config", "step")  # what every protprof checkpoint holds
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format (since PyTorch 1.6)


def model_state(model: ProteinEncoder, config: dict[str, Any], step: int) -> dict[str, Any]:
    """The part of a checkpoint every reader needs: model shape, weights, settings, step."""
    return {
        "config": config,
        "model_config": dataclasses.asdict(model.config),
        "model": model.state_dict(),
        "step": step,
    }


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a failed or killed write leaves the previous file.

    Raises:
        OutputError: the path is locked or unwritable, or the disk is full (one line).
    """
    with atomic_output(path) as tmp:
        try:
            # Our own handle: closed even when torch fails (its writer would keep the removed
            # temporary open, and its disk space taken, for as long as the error lives).
            with open(tmp, "wb") as handle:
                torch.save(state, handle)
        except RuntimeError as e:
            # torch's C++ writer reports a full disk as "enforce fail ... unexpected pos", not
            # as an OSError: ask the file system. atomic_output turns ENOSPC into one line.
            if _free_bytes(tmp.parent) < _tensor_bytes(state):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp.parent)) from e
            raise


def _free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a protprof checkpoint onto the CPU.

    Raises:
        CheckpointError: one line naming the file: missing, not a PyTorch archive, truncated
            or corrupt, a foreign PyTorch file, or non-finite weights.
    """
    path = Path(path)
    _check_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to unpickle a file is a bad file, not a bug here
        raise CheckpointError(
            f"{path}: the checkpoint is truncated or corrupt "
            f"(PyTorch cannot read it: {type(e).__name__})"
        ) from e
    missing = [k for k in REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        found = type(state).__name__ if not isinstance(state, dict) else "a dict without them"
        raise CheckpointError(
            f"{path}: not a protprof checkpoint (no {', '.join(missing)}; found {found})"
        )
    if not isinstance(state["model"], dict) or not isinstance(state["model_config"], dict):
        raise CheckpointError(
            f"{path}: not a protprof checkpoint (model or model_config is not a mapping)"
        )
    bad = non_finite(state["model"])
    if bad:
        raise CheckpointError(
            f"{path}: the weights hold NaN or inf ({len(bad)} of {len(state['model'])} "
            f"tensors, first {bad[0]}); refusing a corrupt model"
        )
    return state


def _check_archive(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(_ZIP_MAGIC))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror})") from e
    if magic != _ZIP_MAGIC:
        what = "an empty file" if not magic else "not a PyTorch archive"
        raise CheckpointError(f"{path}: not a protprof checkpoint ({what})")
    # torch.load does not check the archive's CRC-32s: a flipped byte in a tensor loads as a
    # finite, wrong weight. Reading every member once checks them.
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise CheckpointError(f"{path}: the checkpoint is truncated or corrupt ({e})") from e
    if bad is not None:
        raise CheckpointError(
            f"{path}: the checkpoint is corrupt ({bad} fails its CRC-32 check); refusing it"
        )


def model_from_state(state: dict[str, Any], path: str | Path = "checkpoint") -> ProteinEncoder:
    """The encoder of a loaded checkpoint, in eval mode on CPU (`path` names it in errors)."""
    try:
        model = ProteinEncoder(ModelConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: the weights do not fit the checkpoint's model_config ({first[:200]})"
        ) from e
    return model.eval()


def load_model(path: str | Path) -> ProteinEncoder:
    """The trained encoder of a checkpoint file, in eval mode on CPU."""
    return model_from_state(load_checkpoint(path), path)
