"""Model shapes and training objectives, without torch: the workflow checks a training
configuration when Snakemake parses it, and every `protprof` command starts without importing
torch (~3 s)."""

from __future__ import annotations

from dataclasses import dataclass

from protprof.errors import ConfigError

OBJECTIVES = ("mlm", "profile", "multitask")


@dataclass(frozen=True)
class ModelConfig:
    """Encoder shape. `d_model` must divide by `n_heads`, and the head size must be even (RoPE)."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.0
    rope_base: float = 10_000.0

    def __post_init__(self) -> None:
        if min(self.n_layers, self.d_model, self.n_heads, self.d_ff) < 1:
            raise ConfigError(f"model sizes must be >= 1, got {self}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must split into n_heads ({self.n_heads}) "
                "heads of even size"
            )
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {self.dropout}")


PRESETS = {
    "tiny": ModelConfig(n_layers=2, d_model=64, n_heads=4, d_ff=256),  # ~0.1M: CPU demo
    "small": ModelConfig(n_layers=6, d_model=256, n_heads=8, d_ff=1024),  # ~4.8M
    "tape-base": ModelConfig(n_layers=12, d_model=768, n_heads=12, d_ff=3072),  # ~85M, TAPE
    "large": ModelConfig(n_layers=24, d_model=1024, n_heads=16, d_ff=4096),  # ~300M
}
