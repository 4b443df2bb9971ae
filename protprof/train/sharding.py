"""Sharded training (FSDP2) for the trainer: shard the encoder, and move whole-model state in
and out of it, so a checkpoint is one ordinary file whatever the world size.

FSDP2 (`torch.distributed.fsdp.fully_shard`) splits every parameter of an encoder block, its
gradient and its AdamW state over the ranks; a block's parameters are gathered for its forward
and backward passes only. The checkpoint gathers full tensors onto the CPU
(`torch.distributed.checkpoint.state_dict` with `full_state_dict=True`): the model's state dict
has the keys of an unsharded `ProteinEncoder`, so embed, evaluate and export read it as any
other, and a resumed run on any number of ranks shards it again on load. Gathering holds the
whole model (and, for the optimizer, twice that) in rank 0's CPU memory while saving: fine up
to esm2-15b on a node with a few hundred GB; beyond, `torch.distributed.checkpoint`'s sharded
save would be the next step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from protprof.model.encoder import ProteinEncoder

# Whole tensors on the CPU of every rank (rank 0 writes them).
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard(model: ProteinEncoder) -> None:
    """Shard `model` in place over the default process group: each encoder block is one unit
    (gathered for its own passes), the root holds the embeddings, tied MLM head and profile
    head. Call before creating the optimizer: the parameters become DTensors."""
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)


def full_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Whole weights and optimizer state (keyed by parameter name) on the CPU. Collective:
    every rank must call it."""
    weights = get_model_state_dict(model, options=_FULL)
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=_FULL)
    return weights, optimizer_state


def load_full_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    weights: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    strict: bool = True,
) -> None:
    """Load whole weights (and optimizer state from `full_state`) into a model sharded over
    any number of ranks, or an unsharded one; each rank keeps its shard."""
    options = StateDictOptions(full_state_dict=True, strict=strict)
    set_model_state_dict(model, weights, options=options)
    if optimizer is not None and optimizer_state is not None:
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
