"""The configuration of a local Hugging Face ESM directory, read and checked without torch:
the workflow checks `train.init_from` at `snakemake --dry-run`, before any search runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from protprof.errors import CheckpointError
from protprof.model.config import ModelConfig

# ESM-2's alphabet (fair-esm `Alphabet.from_architecture("ESM-1b")`, the vocab.txt of every
# facebook/esm2_* directory), in id order.
ESM_TOKENS = (
    ("<cls>", "<pad>", "<eos>", "<unk>")
    + tuple("LAGVSERTIDPKQNFYMHWCXBUZO.-")
    + ("<null_1>", "<mask>")
)

# Mapped onto protprof's settings, or refused when ESM allows what protprof does not.
REQUIRED = {
    "position_embedding_type": "rotary",  # ESM-1b and ESM-1v use learned absolute positions
    "emb_layer_norm_before": False,  # ESM-1b has an embedding LayerNorm; ESM-2 does not
    "is_folding_model": False,  # ESMFold
    "is_decoder": False,
    "add_cross_attention": False,
    "vocab_size": len(ESM_TOKENS),
    "pad_token_id": ESM_TOKENS.index("<pad>"),
    "mask_token_id": ESM_TOKENS.index("<mask>"),
}
# What a config.json that leaves a key out means (transformers' EsmConfig defaults).
_ABSENT = {
    "is_folding_model": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "emb_layer_norm_before": False,
}
# config.json keys of the encoder's shape, by protprof's name.
_SHAPE = {
    "n_layers": "num_hidden_layers",
    "d_model": "hidden_size",
    "n_heads": "num_attention_heads",
    "d_ff": "intermediate_size",
}


def read_config(directory: str | Path) -> ModelConfig:
    """The encoder shape of a local ESM directory, from its config.json (no torch needed).

    Raises:
        CheckpointError: one line: not a Hugging Face directory, not an ESM model, or an ESM
            variant protprof's encoder cannot express (ESM-1b's absolute positions, ESMFold...).
    """
    directory = Path(directory)
    path = directory / "config.json"
    if not directory.is_dir():
        if directory.exists():
            raise CheckpointError(
                f"{directory}: is a file, not a Hugging Face model directory (a protprof "
                "checkpoint becomes one with `protprof export`)"
            )
        raise CheckpointError(f"{directory}: no such Hugging Face model directory")
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        hint = ""
        if (directory / "checkpoint.pt").is_file():
            hint = f"; for the protprof checkpoint in it, give {directory / 'checkpoint.pt'}"
        raise CheckpointError(
            f"{directory}: not a Hugging Face model directory (no config.json){hint}"
        ) from None
    except (OSError, ValueError) as e:  # ValueError: not JSON, not UTF-8
        raise CheckpointError(f"{path}: cannot read it ({e})") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a JSON object ({type(config).__name__})")
    if config.get("model_type") != "esm":
        raise CheckpointError(
            f"{directory}: not an ESM model (config.json model_type is "
            f"{config.get('model_type')!r}, not 'esm')"
        )
    for key, wanted in REQUIRED.items():
        value = config.get(key)
        if value is None:
            value = _ABSENT.get(key)
        if value != wanted:
            raise CheckpointError(
                f"{directory}: an ESM model protprof cannot read: config.json {key} is "
                f"{value!r}, protprof's encoder (ESM-2's layout) needs {wanted!r}"
            )
    _check_vocabulary(directory, config)
    missing = [key for key in _SHAPE.values() if key not in config]
    if missing:
        raise CheckpointError(f"{path}: not a usable ESM config (no {', '.join(missing)})")
    try:
        shape = {ours: int(config[theirs]) for ours, theirs in _SHAPE.items()}
        return ModelConfig(
            **shape,
            dropout=float(config.get("hidden_dropout_prob") or 0.0),
            rope_base=float(config.get("rope_theta") or 10_000.0),
            token_dropout=bool(config.get("token_dropout", False)),
            layer_norm_eps=float(config.get("layer_norm_eps") or 1e-12),
        )
    except (TypeError, ValueError) as e:  # ConfigError is a ValueError
        given = ", ".join(f"{theirs} {config[theirs]!r}" for theirs in _SHAPE.values())
        raise CheckpointError(f"{path}: not a usable ESM config ({given}): {e}") from e


def _check_vocabulary(directory: Path, config: dict[str, Any]) -> None:
    """The token ids must be ESM's: protprof maps its tokens onto them by name."""
    vocab_path = directory / "vocab.txt"
    tokens = config.get("vocab_list")
    where = "config.json vocab_list"
    if vocab_path.is_file():
        try:
            tokens, where = vocab_path.read_text().split(), str(vocab_path)
        except (OSError, ValueError) as e:  # ValueError: not UTF-8
            raise CheckpointError(f"{vocab_path}: cannot read it ({e})") from e
    if tokens is not None and tuple(tokens) != ESM_TOKENS:
        raise CheckpointError(
            f"{directory}: the vocabulary ({where}, {len(tokens)} tokens) is not ESM-2's "
            f"33 tokens in ESM's order; protprof maps its tokens onto ESM's ids"
        )


def check_init_from(directory: str | Path, wanted: ModelConfig, preset: str) -> None:
    """`init_from`: the directory's architecture must be the chosen preset's (dropout is a
    training setting and may differ).

    Raises:
        CheckpointError: naming both shapes and what differs (or why the directory is unusable).
    """
    theirs, ours = _architecture(read_config(directory)), _architecture(wanted)
    if theirs != ours:
        differ = ", ".join(f"{k} {theirs[k]} vs {v}" for k, v in ours.items() if theirs[k] != v)
        raise CheckpointError(
            f"{directory}: its model ({describe(theirs)}) does not match the model {preset!r} "
            f"({describe(ours)}): {differ} (directory vs model); choose the preset of its "
            "shape, or set model_overrides to match"
        )


def _architecture(config: ModelConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "dropout"}


def describe(shape: dict[str, Any]) -> str:
    """'6 layers x 320, 20 heads, d_ff 1280' (of `ModelConfig` fields)."""
    return (
        f"{shape['n_layers']} layers x {shape['d_model']}, {shape['n_heads']} heads, "
        f"d_ff {shape['d_ff']}"
    )
