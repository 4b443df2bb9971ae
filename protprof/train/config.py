"""Training settings: `TrainConfig` (every field checked for type, finiteness and interval,
naming the key and value) and `load_config` (YAML plus `key=value` overrides). No torch here:
the workflow validates the training YAML at `snakemake --dry-run`, before any search runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from protprof.errors import CheckpointError, ConfigError
from protprof.model.config import OBJECTIVES, PRESETS, ModelConfig
from protprof.params import check_params, check_value, declared, describe, meta, param

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_ONE_UP = "[1, inf)"
_ZERO_UP = "[0, inf)"


@dataclass(frozen=True)
class TrainConfig:
    """Every trainer setting. A YAML file gives some; `--set key=value` overrides any. Each
    field declares its type, default, bounds and choices (`protprof.params`): the checks,
    their messages and `protprof train --help` come from them."""

    store: str = param("", help="the profile store to train on (required)")
    out_dir: str = param("results/train", help="checkpoints, metrics and curves")
    objective: str = param(
        "multitask", help="mlm | profile | multitask (the paper's three arms)", choices=OBJECTIVES
    )
    mlm_weight: float = param(1.0, help="weight of the MLM loss", bounds=_ZERO_UP)
    profile_weight: float = param(1.0, help="weight of the profile loss", bounds=_ZERO_UP)
    mask_prob: float = param(0.15, help="share of residues masked", bounds="(0, 1)")
    model: str = param(
        "tiny", help="a preset of protprof.model.config.PRESETS", choices=tuple(PRESETS)
    )
    model_overrides: dict = param(
        help="encoder shape changes, e.g. {n_layers: 4}", default_factory=dict
    )
    # A local Hugging Face ESM directory to start from (e.g. esm2_t6_8M_UR50D with model
    # esm2-8m): its weights, and its profile head if protprof exported it (else a fresh one).
    init_from: str = param("", help="a local Hugging Face ESM directory to start from")
    max_len: int = param(512, help="residues per sequence (random crop beyond)", bounds=_ONE_UP)
    max_tokens: int = param(8192, help="padded tokens per micro-batch", bounds=_ONE_UP)
    accum_steps: int = param(1, help="micro-batches per rank and step", bounds=_ONE_UP)
    # Tokens per optimizer step over all ranks (max_tokens x accumulation x processes); when
    # set, the accumulation is derived from it, so a run moved to another GPU count keeps its
    # optimisation. 0: accum_steps micro-batches per rank.
    global_tokens: int = param(0, help="tokens per optimizer step over all ranks", bounds=_ZERO_UP)
    # lr <= 1: beyond, AdamW's step size overflows float32.
    lr: float = param(1e-3, help="peak learning rate", bounds="(0, 1]")
    weight_decay: float = param(0.01, help="AdamW weight decay", bounds=_ZERO_UP)
    warmup_steps: int = param(50, help="linear warm-up steps", bounds=_ZERO_UP)
    max_steps: int = param(500, help="optimizer steps", bounds=_ONE_UP)
    min_lr_ratio: float = param(0.1, help="cosine decays to lr * min_lr_ratio", bounds="[0, 1]")
    grad_clip: float = param(1.0, help="gradient norm clip", bounds="(0, inf)")
    eval_every: int = param(50, help="steps between validations", bounds=_ONE_UP)
    eval_batches: int = param(
        20, help="validation batches per evaluation (0 = the whole split)", bounds=_ZERO_UP
    )
    checkpoint_every: int = param(100, help="steps between checkpoints", bounds=_ONE_UP)
    # Run at most this many steps in one invocation, then checkpoint and fail with "stopped at
    # step N (stop_after)"; a rerun with --resume continues (e.g. under a SLURM time limit).
    stop_after: int = param(0, help="steps per invocation (0 = no limit)", bounds=_ZERO_UP)
    seed: int = param(0, help="random seed", bounds=_ZERO_UP)
    num_workers: int = param(0, help="data loader processes", bounds=_ZERO_UP)
    device: str = param("auto", help="auto | cpu | cuda", choices=("auto", "cpu", "cuda"))
    # Autocast dtype: auto = bf16 on CUDA, fp32 on CPU. fp16 (GPUs without bf16, e.g. V100)
    # trains with a gradient scaler; fp32 disables autocast (debugging).
    precision: str = param("auto", help="autocast dtype", choices=PRECISIONS)
    compile: bool = param(False, help="torch.compile the model")
    # ddp: every rank holds the whole model. fsdp: parameters, gradients and optimizer state
    # sharded over the ranks (FSDP2's fully_shard per encoder block), for esm2-3b and larger.
    strategy: str = param("ddp", help="ddp | fsdp", choices=("ddp", "fsdp"))
    activation_checkpointing: bool = param(False, help="recompute block activations in backward")
    devices: int = param(
        1, help="processes torchrun starts per node (set by the workflow)", bounds=_ZERO_UP
    )
    nodes: int = param(1, help="nodes of the job (set by the workflow)", bounds=_ONE_UP)

    def __post_init__(self) -> None:
        check_params(self, "train")  # ints given for floats become floats
        if not self.store:
            raise ConfigError("train: 'store' is required (the profile store to train on)")
        self.model_config()  # validates the overrides
        if self.global_tokens and self.accum_steps != 1:
            raise ConfigError(
                f"train.global_tokens {self.global_tokens} and train.accum_steps "
                f"{self.accum_steps} both set: set one (global_tokens derives the accumulation)"
            )
        self.accumulation(self.nodes * max(self.devices, 1))  # the workflow's world size
        if self.strategy == "fsdp" and self.precision == "fp16":
            # GradScaler's overflow check sees one rank's shard of the gradients only.
            raise ConfigError(
                "train.precision fp16 does not work with train.strategy fsdp (the gradient "
                "scaler sees one shard); use bf16, or strategy ddp"
            )

    def accumulation(self, world: int) -> int:
        """Micro-batches per rank and step on `world` processes: `accum_steps`, or derived
        from `global_tokens`.

        Raises:
            ConfigError: global_tokens is not a multiple of max_tokens x world.
        """
        if not self.global_tokens:
            return self.accum_steps
        per_pass = self.max_tokens * world
        if self.global_tokens % per_pass:
            raise ConfigError(
                f"train.global_tokens {self.global_tokens} is not a multiple of max_tokens "
                f"{self.max_tokens} x {world} processes ({per_pass}): choose a multiple, or "
                "another max_tokens"
            )
        return self.global_tokens // per_pass

    def check_init_from(self) -> None:
        """`init_from`, when set, must be an ESM directory of the model's shape. Checked when
        a run starts afresh and at the workflow's dry run; a resumed run never reads it.

        Raises:
            ConfigError: one line naming the directory and both shapes, or what is wrong.
        """
        if not self.init_from:
            return
        from protprof.model.esm_config import check_init_from

        try:
            check_init_from(self.init_from, self.model_config(), self.model)
        except CheckpointError as e:
            raise ConfigError(f"train.init_from: {e}") from e

    def model_config(self) -> ModelConfig:
        """The encoder shape: the preset with `model_overrides` applied (checked)."""
        base = dataclasses.asdict(PRESETS[self.model])
        unknown = set(self.model_overrides) - set(base)
        if unknown:
            raise ConfigError(f"train.model_overrides: unknown keys {sorted(unknown)}")
        bounds = {f.name: m.bounds for f, m in declared(ModelConfig)}
        overrides = {
            k: check_value(f"train.model_overrides.{k}", type(base[k]).__name__, v, bounds[k])
            for k, v in self.model_overrides.items()
        }
        return ModelConfig(**{**base, **overrides})


_FIELDS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def describe_keys() -> str:
    """One line per training key: name, type, default and what is allowed (`train --help`)."""
    lines = []
    for f in dataclasses.fields(TrainConfig):
        factory: Any = f.default_factory  # a callable when the field has no plain default
        default = factory() if f.default is dataclasses.MISSING else f.default
        declaration = meta(f)
        allowed = describe(declaration.bounds).strip() if declaration else ""
        if declaration and declaration.choices:
            allowed = "one of " + ", ".join(declaration.choices)
        shown = repr(default) if isinstance(default, str) else str(default)
        lines.append(f"  {f.name:<17} {str(f.type):<5} default {shown:<20} {allowed}".rstrip())
    return "\n".join(lines)


def _coerce(key: str, value: Any, text: str | None = None) -> Any:
    """A setting's value as read from YAML (or from `--set` `text`), before checking.

    YAML 1.1 reads `1e-3` (no dot) as a string: a number-like string is read as a float for a
    float setting. A `--set` value for a string setting is kept as typed (`out_dir=2024`).
    """
    if key not in _FIELDS:
        raise ConfigError(f"train: unknown setting {key!r} (known: {', '.join(sorted(_FIELDS))})")
    if _FIELDS[key] == "float" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # refused by the check, naming the key and the value
    if _FIELDS[key] == "str" and text is not None:
        return text
    return value


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config and apply `key=value` overrides; unknown keys are errors."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError) as e:  # ValueError: not UTF-8 text
            why = " ".join(str(e).split()) or type(e).__name__  # one line
            raise ConfigError(f"{path}: cannot read the training config ({why})") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the training config must be a mapping")
        values = {k: _coerce(str(k), v) for k, v in loaded.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"train: override {item!r} is not key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"train: override {item!r} is not valid YAML") from None
        values[key] = _coerce(key, value, text)
    return TrainConfig(**values)
