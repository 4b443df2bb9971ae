"""Transformer encoder with an MLM head (tied to the embedding) and a 20-way profile head.

The layout is exactly ESM-2's as `transformers.models.esm` implements it, so weights map one to
one (`protprof.model.huggingface`): pre-LayerNorm blocks, a final LayerNorm and none on the
embeddings; rotary position embeddings (RoFormer, Su et al. 2021) rotating the two halves of
each head; exact (erf) GELU; an MLM head of dense -> GELU -> LayerNorm -> the tied embedding
plus its own bias; optional ESM-2 token dropout. Attention is one fused q/k/v projection and
`torch.nn.functional.scaled_dot_product_attention` with a key-padding mask (its speed against
`transformers`' own ESM module: bench/bench_model.py, recorded in bench/RESULTS.md).
The vocabulary stays protprof's (`protprof.alphabet`); it maps onto ESM's at the boundary.
Losses: MLM = cross-entropy on masked positions; profile = KL(target || softmax(prediction))
over real residues (Sturmfels et al. 2020, arXiv 2012.00195). Each is a mean, or a sum that the
trainer divides by the step's count of masked positions or residues (token weighting).
`LoadedModel` is an encoder as the readers (`checkpoint`, `huggingface`, `loading`) return it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from protprof.alphabet import IGNORE, MASK, N_STANDARD, PAD, VOCAB_SIZE
from protprof.model.config import ModelConfig


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def rotary_frequencies(head_dim: int, base: float) -> torch.Tensor:
    """The rotary inverse frequencies base^(-2i / head_dim), i < head_dim / 2."""
    return 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)


class _Rotary(nn.Module):
    inv_freq: torch.Tensor  # a buffer (typed: nn.Module's attribute lookup is not)

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        # Saved with the weights: an imported model keeps its checkpoint's own frequencies
        # (older ESM checkpoints stored them rounded), not a recomputation.
        self.register_buffer("inv_freq", rotary_frequencies(head_dim, base))

    def forward(self, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.arange(length, device=self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(t, self.inv_freq)  # (T, head_dim / 2)
        return angles.cos().to(dtype), angles.sin().to(dtype)


class _Block(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = c.n_heads, c.dropout
        self.ln1 = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.ln2 = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.out = nn.Linear(c.d_model, c.d_model)
        self.ff = nn.Sequential(
            nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model)
        )
        self.drop = nn.Dropout(c.dropout)

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).unbind(2)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))  # (B, H, T, head_dim)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        attn = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=keep[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, head_dim)
        x = x + self.drop(self.out(attn.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class ProteinEncoder(nn.Module):
    """The encoder and its two heads. `forward` returns a dict (and losses given targets)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(VOCAB_SIZE, config.d_model, padding_idx=PAD)
        self.rotary = _Rotary(config.d_model // config.n_heads, config.rope_base)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        # Recompute each block's activations in the backward pass instead of keeping them
        # (training large models: memory for ~1/3 more compute). Not part of the checkpoint.
        self.activation_checkpointing = False
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.mlm_transform = nn.Sequential(
            nn.Linear(config.d_model, config.d_model),
            nn.GELU(),
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps),
        )
        self.mlm_bias = nn.Parameter(torch.zeros(VOCAB_SIZE))
        self.profile_head = nn.Linear(config.d_model, N_STANDARD)
        # BERT-style small init: N(0, 1) embeddings make the tied MLM logits ~sqrt(d) large.
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[PAD].zero_()
        self.register_load_state_dict_pre_hook(_default_frequencies)

    def n_parameters(self) -> int:
        """Number of parameters (the tied MLM decoder counted once)."""
        return sum(p.numel() for p in self.parameters())

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, d_model)."""
        keep = tokens != PAD  # (B, T): keys that may be attended to
        x = self.embed(tokens)
        if self.config.token_dropout:
            x = token_dropout(x, tokens, keep)
        cos, sin = self.rotary(tokens.shape[1], x.dtype)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                x = checkpoint(block, x, keep, cos, sin, use_reentrant=False)
            else:
                x = block(x, keep, cos, sin)
        return self.ln_f(x)

    def forward(
        self,
        tokens: torch.Tensor,
        mlm_labels: torch.Tensor | None = None,
        profiles: torch.Tensor | None = None,
        residue_mask: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> dict[str, torch.Tensor]:
        """Return `hidden`, `mlm_logits` (B, T, V), `profile_logits` (B, T, 20) and, for each
        target given, `mlm_loss` / `profile_loss` (their mean or sum: `reduction`)."""
        hidden = self.encode(tokens)
        out = {
            "hidden": hidden,
            "mlm_logits": self.mlm_transform(hidden) @ self.embed.weight.T + self.mlm_bias,
            "profile_logits": self.profile_head(hidden),
        }
        if mlm_labels is not None:
            out["mlm_loss"] = mlm_loss(out["mlm_logits"], mlm_labels, reduction)
        if profiles is not None and residue_mask is not None:
            out["profile_loss"] = profile_kl(
                out["profile_logits"], profiles, residue_mask, reduction
            )
        return out


def _default_frequencies(
    module: ProteinEncoder, state: dict[str, torch.Tensor], prefix: str, *args: object
) -> None:
    # Checkpoints written before the frequencies were saved: they are the recomputed ones.
    state.setdefault(f"{prefix}rotary.inv_freq", module.rotary.inv_freq.clone())


# ESM-2's training masked 15 % of residues and replaced 80 % of those with <mask>.
_ESM_MASK_RATIO = 0.15 * 0.8


def token_dropout(x: torch.Tensor, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """ESM-2's token dropout: zero the `<mask>` embeddings and rescale each sequence's
    embeddings by (1 - 0.12) / (1 - its fraction of `<mask>` among its non-padding tokens)."""
    masked = tokens == MASK
    x = x.masked_fill(masked.unsqueeze(-1), 0.0)
    observed = masked.sum(-1).float() / keep.sum(-1).float()
    return (x * ((1 - _ESM_MASK_RATIO) / (1 - observed))[:, None, None]).to(x.dtype)


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the positions whose label is not IGNORE: their sum, or their mean.

    A batch without a masked position has mean 0, not cross_entropy's 0/0 = NaN (masking draws
    no position in an L-residue sequence with probability (1 - p)^L: 4 % at L = 20).
    """
    total = F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    if reduction == "sum":
        return total
    return total / (labels != IGNORE).sum().clamp(min=1)


def profile_kl(
    logits: torch.Tensor,
    target: torch.Tensor,
    residue_mask: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """KL(target || softmax(logits)) summed over the 20 residues, then summed or averaged over
    real residues."""
    log_q = F.log_softmax(logits.float(), dim=-1)
    kl = (torch.xlogy(target, target) - target * log_q).sum(-1)  # (B, T)
    weight = residue_mask.float()
    total = (kl * weight).sum()
    if reduction == "sum":
        return total
    return total / weight.sum().clamp(min=1)


def objective_weights(
    objective: str, mlm_weight: float, profile_weight: float
) -> tuple[float, float]:
    """The weights of the MLM and profile terms in the objective's loss."""
    if objective == "mlm":
        return 1.0, 0.0
    if objective == "profile":
        return 0.0, 1.0
    return mlm_weight, profile_weight


def total_loss(
    out: dict[str, torch.Tensor], objective: str, mlm_weight: float, profile_weight: float
) -> torch.Tensor:
    """The objective's loss from the terms in `out`: MLM, profile KL, or their weighted sum."""
    if objective == "mlm":
        return out["mlm_loss"]
    if objective == "profile":
        return out["profile_loss"]
    return mlm_weight * out["mlm_loss"] + profile_weight * out["profile_loss"]


def non_finite(weights: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in `weights` that hold NaN or inf."""
    return [
        name
        for name, w in weights.items()
        if isinstance(w, torch.Tensor)
        and w.is_floating_point()
        and not bool(torch.isfinite(w).all())
    ]


@dataclass
class LoadedModel:
    """An encoder ready for inference, and what is known about where it came from."""

    model: ProteinEncoder
    source: str  # the checkpoint file or Hugging Face directory
    step: int | None  # training steps (None: unknown, e.g. a downloaded ESM-2)
    training: dict[str, Any] = field(default_factory=dict)  # protprof's training settings
    has_profile_head: bool = True  # False: an ESM directory without protprof's profile head
