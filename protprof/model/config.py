"""Model shapes, training objectives and inference batching, without torch: the workflow
checks a training configuration when Snakemake parses it, and every `protprof` command starts
without importing torch (seconds of start-up each search job would pay)."""

from __future__ import annotations

from dataclasses import dataclass

from protprof.errors import ConfigError
from protprof.params import declared, describe, param, within

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

    n_layers: int = param(2, help="encoder blocks", bounds="[1, inf)")
    d_model: int = param(64, help="width", bounds="[1, inf)")
    n_heads: int = param(4, help="attention heads", bounds="[1, inf)")
    d_ff: int = param(256, help="feed-forward width", bounds="[1, inf)")
    dropout: float = param(0.0, help="dropout probability", bounds="[0, 1)")
    rope_base: float = param(10_000.0, help="rotary embedding base", bounds="(0, inf)")
    token_dropout: bool = param(False, help="ESM-2's treatment of <mask>")
    layer_norm_eps: float = param(1e-5, help="LayerNorm epsilon", bounds="(0, inf)")

    def __post_init__(self) -> None:
        # Bounds only: the shape also comes from checkpoints and ESM configs, whose numbers
        # need not be Python's own types.
        for f, m in declared(self):
            value = getattr(self, f.name)
            if m.bounds is not None and not within(value, m.bounds):
                raise ConfigError(f"model.{f.name} must be{describe(m.bounds)}, got {value}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must split into n_heads ({self.n_heads}) "
                "heads of even size"
            )


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


@dataclass(frozen=True)
class EmbedParams:
    """How sequences are batched for a frozen model (`protprof embed`, every evaluation task)."""

    max_tokens: int = param(32768, help="padded tokens per batch", bounds="[1, inf)")
