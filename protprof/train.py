"""Multi-task pretraining from a profile store: MLM, profile prediction, or both.

AdamW with linear warmup then cosine decay, gradient clipping and accumulation, bf16 autocast on
CUDA, optional `torch.compile`, DDP through `torchrun` (NCCL on GPUs, gloo on CPU). Validation
every `eval_every` steps appends a line to `metrics.jsonl`; checkpoints are written atomically and
hold everything needed to continue bit-identically (model, optimizer, scheduler, sampler
position, RNG states, resolved config).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from protprof._atomic import atomic_output
from protprof.data import (IGNORE, ProfileDataset, TokenBudgetBatchSampler, loader, mask_tokens,
                           profile_targets)
from protprof.errors import ConfigError
from protprof.model import OBJECTIVES, PRESETS, ModelConfig, ProteinEncoder, total_loss

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """Every trainer setting. A YAML file gives some; `--set key=value` overrides any."""

    store: str = ""
    out_dir: str = "results/train"
    objective: str = "multitask"  # mlm | profile | multitask (the paper's three arms)
    mlm_weight: float = 1.0
    profile_weight: float = 1.0
    mask_prob: float = 0.15
    model: str = "tiny"  # a preset of protprof.model.PRESETS
    model_overrides: dict = field(default_factory=dict)  # e.g. {n_layers: 4}
    max_len: int = 512  # residues per sequence (random crop beyond)
    max_tokens: int = 8192  # padded tokens per micro-batch
    accum_steps: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_steps: int = 500
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 20  # validation batches per evaluation (0 = the whole split)
    checkpoint_every: int = 100
    stop_after: int = 0  # stop (checkpointed) after this many steps, e.g. a SLURM time limit
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False
    devices: int = 1  # processes torchrun starts (set by the workflow; informational)

    def __post_init__(self) -> None:
        if not self.store:
            raise ConfigError("train: 'store' is required (the profile store to train on)")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"train.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.model not in PRESETS:
            raise ConfigError(f"train.model must be one of {sorted(PRESETS)}, got {self.model!r}")
        for key in ("max_len", "max_tokens", "accum_steps", "max_steps", "eval_every",
                    "checkpoint_every"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.mask_prob < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise ConfigError("train: need 0 < mask_prob < 1, lr > 0 and warmup_steps >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        self.model_config()  # validates the overrides

    def model_config(self) -> ModelConfig:
        base = dataclasses.asdict(PRESETS[self.model])
        unknown = set(self.model_overrides) - set(base)
        if unknown:
            raise ConfigError(f"train.model_overrides: unknown keys {sorted(unknown)}")
        return ModelConfig(**{**base, **self.model_overrides})


def _coerce(key: str, text: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if key not in fields:
        raise ConfigError(f"train: unknown setting {key!r} (known: {', '.join(sorted(fields))})")
    value = yaml.safe_load(text)
    default = getattr(TrainConfig, key, None) if key != "model_overrides" else {}
    if isinstance(default, bool) != isinstance(value, bool) or (
        isinstance(default, (int, float)) and not isinstance(value, (int, float))
    ):
        raise ConfigError(f"train: {key} must be like {default!r}, got {text!r}")
    return float(value) if isinstance(default, float) else value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config and apply `key=value` overrides; unknown keys are errors."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the training config ({e})") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the training config must be a mapping")
        values = {k: _coerce(k, yaml.safe_dump(v)) for k, v in loaded.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"train: override {item!r} is not key=value")
        values[key] = _coerce(key, text)
    return TrainConfig(**values)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to min_ratio at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """Owns the model, optimizer, data and the loop; rank 0 writes metrics and checkpoints."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.rank, self.world = _init_distributed()
        self.device = _pick_device(config.device, self.rank)
        torch.manual_seed(config.seed)
        self.out = Path(config.out_dir)
        self.model = ProteinEncoder(config.model_config()).to(self.device)
        self.train_data = ProfileDataset(config.store, "train", config.max_len, config.seed)
        self.valid_data = ProfileDataset(config.store, "valid", config.max_len, config.seed)
        if not len(self.train_data):
            raise ConfigError(f"{config.store}: the train split is empty")
        self.sampler = TokenBudgetBatchSampler(self.train_data.lengths, config.max_tokens,
                                               config.seed, True, self.world, self.rank)  # fmt: skip
        if len(self.sampler) == 0:
            raise ConfigError(
                f"{config.store}: the train split ({len(self.train_data)} sequences) makes fewer "
                f"batches than processes ({self.world}) at max_tokens={config.max_tokens}"
            )
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        other = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": other, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98),
        )  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, config.warmup_steps, config.max_steps, config.min_lr_ratio),
        )
        self.mask_generator = torch.Generator().manual_seed(config.seed)
        self.step, self.epoch, self.batches_done = 0, 0, 0
        self.network = self._wrap(self.model)

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.config.compile else model

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "model_config": dataclasses.asdict(self.model.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "sampler": {"epoch": self.epoch, "start_batch": self.batches_done,
                        "seed": self.config.seed},  # fmt: skip
            "rng": {"torch": torch.get_rng_state(), "mask": self.mask_generator.get_state()},
        }

    def load(self, path: Path) -> None:
        """Continue from a checkpoint, refusing one made with another model shape."""
        state = load_checkpoint(path)
        mine = dataclasses.asdict(self.model.config)
        diff = {k: (state["model_config"].get(k), v) for k, v in mine.items()
                if state["model_config"].get(k) != v}  # fmt: skip
        if diff:
            raise ConfigError(
                f"{path}: cannot resume, the model config differs (checkpoint, now): {diff}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.epoch, self.batches_done = state["sampler"]["epoch"], state["sampler"]["start_batch"]
        torch.set_rng_state(state["rng"]["torch"])
        self.mask_generator.set_state(state["rng"]["mask"])
        log.info("resumed from %s at step %d", path, self.step)

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            self.sampler.set_epoch(self.epoch)
            self.train_data.set_epoch(self.epoch)
            self.sampler.start_batch = self.batches_done
            for batch in loader(self.train_data, self.sampler, self.config.num_workers):
                self.batches_done += 1
                yield batch
            self.epoch, self.batches_done = self.epoch + 1, 0

    def _inputs(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None
                ) -> dict[str, torch.Tensor | None]:  # fmt: skip
        """Model inputs on the device: masked tokens and MLM labels unless `generator` is None
        (profile prediction alone sees the whole sequence)."""
        tokens, labels = batch["tokens"], None
        if generator is not None:
            tokens, labels = mask_tokens(tokens, self.config.mask_prob, generator)
        moved = {"tokens": tokens, "mlm_labels": labels, "profiles": batch["profiles"],
                 "residue_mask": batch["residue_mask"]}  # fmt: skip
        moved = {k: (v.to(self.device, non_blocking=True) if v is not None else None)
                 for k, v in moved.items()}  # fmt: skip
        moved["profiles"] = profile_targets(moved["profiles"])  # type: ignore[arg-type]
        return moved

    def _autocast(self) -> Any:
        enabled = self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self, batches: Iterator[dict[str, torch.Tensor]]) -> dict[str, float]:
        """One optimizer step over `accum_steps` micro-batches."""
        c = self.config
        self.network.train()
        sums: dict[str, float] = {"loss": 0.0, "mlm_loss": 0.0, "profile_loss": 0.0}
        tokens = 0
        for _ in range(c.accum_steps):
            batch = next(batches)
            tokens += int(batch["residue_mask"].sum())
            with self._autocast():
                masking = None if c.objective == "profile" else self.mask_generator
                out = self.network(**self._inputs(batch, masking))
                loss = total_loss(out, c.objective, c.mlm_weight, c.profile_weight)
            (loss / c.accum_steps).backward()
            sums["loss"] += loss.item() / c.accum_steps
            for k in ("mlm_loss", "profile_loss"):
                if k in out:
                    sums[k] += out[k].item() / c.accum_steps
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return {**sums, "tokens": tokens}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """MLM perplexity, profile KL and argmax agreement on the valid split (fixed masks).

        Rank 0 evaluates the whole split with the unwrapped model (no collectives), so a valid
        split smaller than the world size still gets measured.
        """
        if not len(self.valid_data) or self.rank != 0:
            return {}
        self.network.eval()
        generator = torch.Generator().manual_seed(12345)
        sampler = TokenBudgetBatchSampler(self.valid_data.lengths, self.config.max_tokens,
                                          0, shuffle=False)  # fmt: skip
        totals = torch.zeros(5, dtype=torch.float64)  # ce, masked, kl, residues, agree
        for i, batch in enumerate(loader(self.valid_data, sampler)):
            if self.config.eval_batches and i >= self.config.eval_batches:
                break
            masked, whole = self._inputs(batch, generator), self._inputs(batch, None)
            with self._autocast():
                masked_out, out = self.model(**masked), self.model(**whole)
            residues = whole["residue_mask"]
            n_res, n_masked = int(residues.sum()), int((masked["mlm_labels"] != IGNORE).sum())
            agree = (out["profile_logits"].argmax(-1) == whole["profiles"].argmax(-1))[residues]
            mlm_sum = float(masked_out["mlm_loss"]) * n_masked if n_masked else 0.0
            totals += torch.tensor([mlm_sum, n_masked,
                                    float(out["profile_loss"]) * n_res, n_res,
                                    int(agree.sum())], dtype=torch.float64)
        ce, masked, kl, residues, agree = totals.tolist()
        return {"valid_mlm_perplexity": math.exp(ce / max(masked, 1)),
                "valid_profile_kl": kl / max(residues, 1),
                "valid_profile_argmax_agreement": agree / max(residues, 1)}  # fmt: skip

    def save(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.out / CHECKPOINT, self.state_dict())

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.out / METRICS, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def fit(self) -> None:
        """Train to `max_steps` (or `stop_after`), validating, logging and checkpointing."""
        from tqdm import tqdm

        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0 and self.step == 0:
            (self.out / METRICS).write_text("")
        batches = self._batches()
        stop = min(c.max_steps, c.stop_after or c.max_steps)
        bar = tqdm(total=c.max_steps, initial=self.step, disable=None if self.rank == 0 else True,
                   unit="step")  # fmt: skip
        start, tokens = time.perf_counter(), 0
        while self.step < stop:
            stats = self.train_step(batches)
            tokens += stats["tokens"] * self.world
            rate = tokens / (time.perf_counter() - start)
            bar.update()
            bar.set_postfix(loss=f"{stats['loss']:.3f}", tok_s=f"{rate:.0f}")
            last = self.step == c.max_steps
            if self.step % c.eval_every == 0 or last:
                record = {"step": self.step, "epoch": self.epoch,
                          "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": rate,
                          **{f"train_{k}": v for k, v in stats.items() if k != "tokens"},
                          **self.evaluate()}  # fmt: skip
                self._log(record)
                log.info("step %d %s", self.step, {k: round(v, 4) for k, v in record.items()
                                                    if isinstance(v, float)})  # fmt: skip
            if self.step % c.checkpoint_every == 0 or last or self.step == stop:
                self.save()
        bar.close()
        if self.rank == 0 and self.step == c.max_steps:
            plot_metrics(self.out / METRICS, self.out / "curves.png")


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _pick_device(choice: str, rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device is 'cuda' but no CUDA device is available")
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (plain dicts of tensors: loads with weights_only=True)."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, EOFError) as e:
        raise ConfigError(f"{path}: cannot read the checkpoint ({e})") from e


def load_model(path: str | Path) -> ProteinEncoder:
    """The trained encoder of a checkpoint, in eval mode on CPU."""
    return model_from_state(load_checkpoint(path))


def model_from_state(state: dict[str, Any]) -> ProteinEncoder:
    """The encoder of an already loaded checkpoint, in eval mode on CPU."""
    model = ProteinEncoder(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def plot_metrics(metrics: Path, out: Path) -> None:
    """Training and validation curves from metrics.jsonl, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    keys = [k for k in ("train_loss", "train_mlm_loss", "train_profile_loss",
                        "valid_mlm_perplexity", "valid_profile_kl") if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def train(config: TrainConfig, resume: bool = False) -> Trainer:
    """Train per `config`; with `resume`, continue from out_dir's checkpoint if there is one."""
    trainer = Trainer(config)
    checkpoint = Path(config.out_dir) / CHECKPOINT
    if resume and checkpoint.exists():
        trainer.load(checkpoint)
    elif checkpoint.exists():
        raise ConfigError(
            f"{checkpoint} exists: pass --resume to continue it, or remove it to start over"
        )
    if trainer.rank == 0:
        log.info("model %s: %d parameters; objective %s; %d train / %d valid sequences",
                 config.model, trainer.model.n_parameters(), config.objective,
                 len(trainer.train_data), len(trainer.valid_data))  # fmt: skip
    trainer.fit()
    if trainer.world > 1:
        dist.destroy_process_group()
    return trainer
