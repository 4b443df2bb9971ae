"""Training settings: `TrainConfig` (every field checked for type, finiteness and interval,
naming the key and value) and `load_config` (YAML plus `key=value` overrides). No torch here:
the workflow validates the training YAML at `snakemake --dry-run`, before any search runs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from protprof.errors import CheckpointError, ConfigError
from protprof.model_config import OBJECTIVES, PRESETS, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    """Every trainer setting. A YAML file gives some; `--set key=value` overrides any."""

    store: str = ""
    out_dir: str = "results/train"
    objective: str = "multitask"  # mlm | profile | multitask (the paper's three arms)
    mlm_weight: float = 1.0
    profile_weight: float = 1.0
    mask_prob: float = 0.15
    model: str = "tiny"  # a preset of protprof.model_config.PRESETS
    model_overrides: dict = field(default_factory=dict)  # e.g. {n_layers: 4}
    # A local Hugging Face ESM directory to start from (e.g. esm2_t6_8M_UR50D with model
    # esm2-8m): its weights, and its profile head if protprof exported it (else a fresh one).
    init_from: str = ""
    max_len: int = 512  # residues per sequence (random crop beyond)
    max_tokens: int = 8192  # padded tokens per micro-batch
    accum_steps: int = 1
    # Tokens per optimizer step over all ranks (max_tokens x accumulation x processes); when
    # set, the accumulation is derived from it, so a run moved to another GPU count keeps its
    # optimisation. 0: accum_steps micro-batches per rank.
    global_tokens: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_steps: int = 500
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 20  # validation batches per evaluation (0 = the whole split)
    checkpoint_every: int = 100
    # Run at most this many steps in one invocation, then checkpoint and fail with "stopped at
    # step N (stop_after)"; a rerun with --resume continues (e.g. under a SLURM time limit).
    stop_after: int = 0
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # Autocast dtype: auto = bf16 on CUDA, fp32 on CPU. fp16 (GPUs without bf16, e.g. V100)
    # trains with a gradient scaler; fp32 disables autocast (debugging).
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    compile: bool = False
    # ddp: every rank holds the whole model. fsdp: parameters, gradients and optimizer state
    # sharded over the ranks (FSDP2's fully_shard per encoder block), for esm2-3b and larger.
    strategy: str = "ddp"  # ddp | fsdp
    activation_checkpointing: bool = False  # recompute block activations in backward
    devices: int = 1  # processes torchrun starts per node (set by the workflow; informational)
    nodes: int = 1  # nodes of the job (set by the workflow; informational)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = _checked(f.name, str(f.type), getattr(self, f.name))
            object.__setattr__(self, f.name, value)  # ints given for floats become floats
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
        from protprof.esm_config import check_init_from

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
        overrides = {
            k: _checked(f"model_overrides.{k}", type(base[k]).__name__, v)
            for k, v in self.model_overrides.items()
        }
        return ModelConfig(**{**base, **overrides})


# Intervals of the numeric settings. lr <= 1: beyond, AdamW's step size overflows float32.
_BOUNDS = {
    "mlm_weight": "[0, inf)",
    "profile_weight": "[0, inf)",
    "mask_prob": "(0, 1)",
    "max_len": "[1, inf)",
    "max_tokens": "[1, inf)",
    "accum_steps": "[1, inf)",
    "global_tokens": "[0, inf)",
    "lr": "(0, 1]",
    "weight_decay": "[0, inf)",
    "warmup_steps": "[0, inf)",
    "max_steps": "[1, inf)",
    "min_lr_ratio": "[0, 1]",
    "grad_clip": "(0, inf)",
    "eval_every": "[1, inf)",
    "eval_batches": "[0, inf)",
    "checkpoint_every": "[1, inf)",
    "stop_after": "[0, inf)",
    "seed": "[0, inf)",
    "num_workers": "[0, inf)",
    "devices": "[0, inf)",
    "nodes": "[1, inf)",
    "model_overrides.n_layers": "[1, inf)",
    "model_overrides.d_model": "[1, inf)",
    "model_overrides.n_heads": "[1, inf)",
    "model_overrides.d_ff": "[1, inf)",
    "model_overrides.dropout": "[0, 1)",
    "model_overrides.rope_base": "(0, inf)",
    "model_overrides.layer_norm_eps": "(0, inf)",
}
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_CHOICES = {
    "objective": OBJECTIVES,
    "model": tuple(PRESETS),
    "device": ("auto", "cpu", "cuda"),
    "precision": PRECISIONS,
    "strategy": ("ddp", "fsdp"),
}


def _checked(key: str, kind: str, value: Any) -> Any:
    """`value` if it has the setting's type and lies in its interval (an int is accepted for a
    float and returned as one); otherwise a ConfigError naming the key and the value."""
    if kind in ("int", "float"):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "int" and not (number and isinstance(value, int)):
            raise ConfigError(f"train.{key} must be an integer{_bounds(key)}, got {value!r}")
        if not number or not math.isfinite(value):
            raise ConfigError(f"train.{key} must be a finite number{_bounds(key)}, got {value!r}")
        value = int(value) if kind == "int" else float(value)
        if key in _BOUNDS and not _within(value, _BOUNDS[key]):
            raise ConfigError(f"train.{key} must be{_bounds(key)}, got {value!r}")
        return value
    expected = {"str": str, "bool": bool, "dict": dict}[kind]
    if not isinstance(value, expected):
        raise ConfigError(f"train.{key} must be a {kind}, got {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"train.{key} must be one of {_CHOICES[key]}, got {value!r}")
    if key == "store" and not value:
        raise ConfigError("train: 'store' is required (the profile store to train on)")
    return value


def _within(value: float, interval: str) -> bool:
    low, high = (float(x) for x in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def _bounds(key: str) -> str:
    """' >= 1' or ' in (0, 1]': the interval as the error message states it."""
    interval = _BOUNDS.get(key)
    if interval is None:
        return ""
    if interval.endswith("inf)"):
        return f" {'>=' if interval[0] == '[' else '>'} {interval[1:].split(',')[0]}"
    return f" in {interval}"


_FIELDS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def describe_keys() -> str:
    """One line per training key: name, type, default and what is allowed (`train --help`)."""
    lines = []
    for f in dataclasses.fields(TrainConfig):
        factory: Any = f.default_factory  # a callable when the field has no plain default
        default = factory() if f.default is dataclasses.MISSING else f.default
        allowed = _bounds(f.name).strip() if f.name in _BOUNDS else ""
        if f.name in _CHOICES:
            allowed = "one of " + ", ".join(_CHOICES[f.name])
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
