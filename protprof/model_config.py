"""Model shapes and training objectives, without torch: the workflow checks a training
configuration when Snakemake parses it, and every `protprof` command starts without importing
torch (~3 s)."""

from __future__ import annotations

from dataclasses import dataclass

from protprof.errors import ConfigError

OBJECTIVES = ("mlm", "profile", "multitask")


@dataclass(frozen=True)
class ModelConfig:
    """Encoder shape. `d_model` must divide by `n_heads`, and the head size must be even (RoPE).

    The layout is ESM-2's (`transformers.models.esm`). `token_dropout` is ESM-2's treatment of
    `<mask>`: its embedding is zeroed and every embedding is rescaled by
    (1 - 0.15 * 0.8) / (1 - the sequence's fraction of `<mask>`), in training and inference
    alike. protprof's own presets leave it off; the ESM-2 presets and imported ESM-2 models
    have it on, as ESM-2 was trained.
    """

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.0
    rope_base: float = 10_000.0
    token_dropout: bool = False
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if min(self.n_layers, self.d_model, self.n_heads, self.d_ff) < 1:
            raise ConfigError(f"model sizes must be >= 1, got {self}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must split into n_heads ({self.n_heads}) "
                "heads of even size"
            )
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"model.layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {self.dropout}")


PRESETS = {
    "tiny": ModelConfig(n_layers=2, d_model=64, n_heads=4, d_ff=256),  # ~0.1M: CPU demo
    "small": ModelConfig(n_layers=6, d_model=256, n_heads=8, d_ff=1024),  # ~4.8M
    "tape-base": ModelConfig(n_layers=12, d_model=768, n_heads=12, d_ff=3072),  # ~85M, TAPE
    "large": ModelConfig(n_layers=24, d_model=1024, n_heads=16, d_ff=4096),  # ~300M
    # ESM-2's shapes (Lin et al. 2023; the facebook/esm2_t*_UR50D checkpoints), for training
    # from scratch or continuing one of them (`init_from`).
    **{
        f"esm2-{size}": ModelConfig(
            n_layers=layers, d_model=width, n_heads=heads, d_ff=4 * width, token_dropout=True
        )
        for size, layers, width, heads in (
            ("8m", 6, 320, 20),
            ("35m", 12, 480, 20),
            ("150m", 30, 640, 20),
            ("650m", 33, 1280, 20),
            ("3b", 36, 2560, 40),
            ("15b", 48, 5120, 40),
        )
    },
}
