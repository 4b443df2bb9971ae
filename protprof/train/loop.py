"""Multi-task pretraining from a profile store: MLM, profile prediction, or both.

AdamW with linear warmup then cosine decay, gradient clipping and accumulation, autocast in bf16
or fp16 (with a gradient scaler) or none (`precision`), optional `torch.compile`, DDP through
`torchrun` (NCCL on GPUs, gloo on CPU).

The files of a run's `out_dir` (rolling while training, published at the end) are described and
handled in `protprof.train.run_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist

from protprof.alphabet import IGNORE
from protprof.errors import CheckpointError, ConfigError, Preempted, TrainingError
from protprof.model.checkpoint import load_checkpoint, model_state, save_checkpoint
from protprof.model.config import ModelConfig
from protprof.model.encoder import ProteinEncoder, non_finite, objective_weights
from protprof.train.config import TrainConfig
from protprof.train.data import (
    ProfileDataset,
    TokenBudgetBatchSampler,
    loader,
    mask_tokens,
    profile_targets,
)
from protprof.train.run_dir import (
    LAST,
    LAST_METRICS,
    lock_run,
    publish,
    resume_source,
    start_rolling,
)

log = logging.getLogger(__name__)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to min_ratio at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _non_finite_optimizer(state: dict[str, Any]) -> str:
    """The first optimizer state tensor holding NaN or inf, described ('' if none)."""
    for index, values in state.get("state", {}).items():
        for name in non_finite(values):
            return f"{name} of parameter {index}"
    return ""


class Trainer:
    """Owns the model, optimizer, data and the loop; rank 0 writes metrics and checkpoints."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.rank, self.world = _init_distributed()
        self.device = _pick_device(config.device, self.rank)
        self.precision = resolve_precision(config.precision, self.device)
        # fp16's narrow range underflows small gradients: scale the loss, unscale before
        # clipping. Disabled, the scaler passes everything through (bf16, fp32).
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        torch.manual_seed(config.seed)
        self.out = Path(config.out_dir)
        self.model = ProteinEncoder(config.model_config()).to(self.device)
        self.train_data = ProfileDataset(config.store, "train", config.max_len, config.seed)
        self.valid_data = ProfileDataset(config.store, "valid", config.max_len, config.seed)
        if not len(self.train_data):
            raise ConfigError(f"{config.store}: the train split is empty")
        self.store_id = self.train_data.store.identity
        self.sampler = TokenBudgetBatchSampler(
            self.train_data.lengths, config.max_tokens, config.seed, True, self.world, self.rank
        )
        self.accum = config.accumulation(self.world)  # micro-batches per rank and step
        # fsdp checkpoints hold whole tensors keyed by name on any world size (one rank too)
        self.fsdp = config.strategy == "fsdp"
        self.sharded = self.fsdp and self.world > 1
        self.network = self._wrap(self.model)  # before the optimizer: sharding replaces params
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        other = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": other, "weight_decay": 0.0},
            ],
            lr=config.lr,
            betas=(0.9, 0.98),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, config.warmup_steps, config.max_steps, config.min_lr_ratio),
        )
        self.step = 0
        self.seen = {"samples": 0, "tokens": 0}  # over all ranks; tokens are residues
        self.saved_step: int | None = None  # step of the last rolling checkpoint
        self.resumed: tuple[Path, int] | None = None  # the checkpoint resumed from, its step

    def _wrap(self, model: ProteinEncoder) -> torch.nn.Module:
        model.activation_checkpointing = self.config.activation_checkpointing
        if self.sharded:
            from protprof.train.sharding import shard

            shard(model)  # in place: the model is its own sharded network
        network: torch.nn.Module = model
        if self.world > 1 and not self.sharded:
            ids = [self.device.index] if self.device.type == "cuda" else None
            network = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return cast(torch.nn.Module, torch.compile(network)) if self.config.compile else network

    def layout(self) -> str:
        """How the model is spread over the processes, and the global batch, for the log."""
        c = self.config
        how = "sharded (fsdp)" if self.sharded else "replicated (ddp)" if self.world > 1 else ""
        per_rank = c.max_tokens * self.accum
        return (
            f"{self.world} process{'es' if self.world > 1 else ''}{' ' + how if how else ''}; "
            f"up to {per_rank * self.world} tokens per step ({c.max_tokens} x {self.accum} "
            f"micro-batches per rank)"
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit-identically (collective under
        fsdp: every rank gathers)."""
        state = model_state(self.model, dataclasses.asdict(self.config), self.step)
        optimizer = self.optimizer.state_dict()
        if self.fsdp:
            from protprof.train.sharding import full_state

            state["model"], optimizer = full_state(self.model, self.optimizer)
        return {
            **state,
            "store_id": self.store_id,  # a rebuilt store must not be resumed on
            "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "seen": dict(self.seen),
            "world": self.world,
            "accum": self.accum,
        }

    def load(self, path: Path) -> None:
        """Continue from a checkpoint, refusing one made with other settings."""
        state = load_checkpoint(path)
        missing = [k for k in ("optimizer", "scheduler", "sampler", "rng") if k not in state]
        if missing:
            raise CheckpointError(
                f"{path}: cannot resume, it holds a model but not the training "
                f"state ({', '.join(missing)})"
            )
        _check_same_run(path, state, self.config, self.model.config)
        damaged = _non_finite_optimizer(state["optimizer"])
        if damaged:
            raise CheckpointError(
                f"{path}: cannot resume, its optimizer state holds NaN or inf ({damaged}); the "
                "file is damaged or was saved after training diverged: resume from an earlier "
                "copy or start over"
            )
        if state.get("store_id", self.store_id) != self.store_id:
            raise ConfigError(
                f"{path}: cannot resume, it was trained on another store (store_id "
                f"{state['store_id']}; {self.config.store} is now {self.store_id}); remove it "
                "to start over"
            )
        if self.fsdp:
            from protprof.train.sharding import load_full_state

            load_full_state(self.model, self.optimizer, state["model"], state["optimizer"])
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])  # a run moved to fp16 starts afresh
        self.step = self.saved_step = state["step"]
        self.seen = dict(state.get("seen", self.seen))
        self.resumed = (Path(path), self.step)
        torch.set_rng_state(state["rng"]["torch"])
        log.info("resumed from %s at step %d", path, self.step)
        self._note_world_change(state)

    def _note_world_change(self, state: dict[str, Any]) -> None:
        """Say when a resumed run reads another global batch than the saved one (another world
        size or accum_steps): the data continues exactly, the optimisation does not."""
        world = state.get("world", 1)
        accum = state.get("accum", state["config"].get("accum_steps", 1))
        before = self.config.max_tokens * accum * world
        now = self.config.max_tokens * self.accum * self.world
        if world != self.world:
            log.info("resumed on %d processes (saved on %d)", self.world, world)
        if before != now:
            log.warning(
                "the global batch changed from %d to %d tokens per step (max_tokens x "
                "accum_steps x processes); set global_tokens to keep it",
                before,
                now,
            )

    def start_from(self, directory: str | Path) -> None:
        """Take the weights of a Hugging Face ESM directory (its shape was checked with the
        settings); the profile head too if protprof exported it, else it stays fresh."""
        from protprof.model.esm_config import describe
        from protprof.model.huggingface import load_directory

        loaded = load_directory(directory)
        theirs = dataclasses.replace(loaded.model.config, dropout=self.model.config.dropout)
        if theirs != self.model.config:  # the directory changed since the settings were read
            ours = dataclasses.asdict(self.model.config)
            raise ConfigError(
                f"train.init_from: {directory}: its model "
                f"({describe(dataclasses.asdict(theirs))}) is not the model "
                f"{self.config.model!r} ({describe(ours)})"
            )
        weights = loaded.model.state_dict()
        if not loaded.has_profile_head:
            weights = {k: v for k, v in weights.items() if not k.startswith("profile_head.")}
        if self.fsdp:
            from protprof.train.sharding import load_full_state

            load_full_state(self.model, None, weights, strict=loaded.has_profile_head)
        else:
            self.model.load_state_dict(weights, strict=loaded.has_profile_head)
        log.info(
            "starting from %s (%s profile head)",
            directory,
            "its" if loaded.has_profile_head else "a fresh",
        )

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's batches from the sampler's position on (which `train_step` advances
        past the batches every rank read)."""
        return iter(loader(self.train_data, self.sampler.stream(), self.config.num_workers))

    def _inputs(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, Any]:
        """Model inputs on the device: masked tokens and MLM labels unless `generator` is None
        (profile prediction alone sees the whole sequence)."""
        tokens, labels = batch["tokens"], None
        if generator is not None:
            tokens, labels = mask_tokens(tokens, self.config.mask_prob, generator)
        moved = {
            "tokens": tokens,
            "mlm_labels": labels,
            "profiles": batch["profiles"],
            "residue_mask": batch["residue_mask"],
        }
        moved = {
            k: (v.to(self.device, non_blocking=True) if v is not None else None)
            for k, v in moved.items()
        }
        moved["profiles"] = profile_targets(moved["profiles"])  # type: ignore[arg-type]
        return moved

    def _autocast(self) -> Any:
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.precision != "fp32")

    def train_step(self, batches: Iterator[dict[str, torch.Tensor]]) -> dict[str, float]:
        """One optimizer step over `accum` micro-batches per rank, token-weighted.

        Each loss term is its sum over the step's positions (masked positions for MLM, real
        residues for the profile) divided by their count over every micro-batch and rank, so a
        micro-batch weighs by its positions, and one without a masked position adds nothing.
        The masks are drawn for the whole step first (in the order they always were drawn),
        because the counts must be known before the first backward pass.

        Raises:
            TrainingError: a loss term or the gradient norm is not finite (before the update,
                so the weights stay as they were).
        """
        c = self.config
        self.network.train()
        mlm_w, profile_w = objective_weights(c.objective, c.mlm_weight, c.profile_weight)
        micro = []
        for i in range(self.accum):
            # This rank's i-th micro-batch is global batch `consumed + i * world + rank`.
            position = self.sampler.consumed + i * self.world + self.rank
            masking = None if c.objective == "profile" else _mask_generator(c.seed, position)
            micro.append(self._inputs(next(batches), masking))
        facts = [_micro_batch_facts(inputs) for inputs in micro]
        n_masked, n_residues, n_sequences = self._sum_over_ranks(
            [sum(f[k] for f in facts) for k in ("masked positions", "residues", "sequences")]
        )
        # DDP averages gradients over ranks: scale by the world size to get the global sum.
        scale = {
            "mlm_loss": mlm_w * self.world / max(n_masked, 1),
            "profile_loss": profile_w * self.world / max(n_residues, 1),
        }
        sums = {"mlm_loss": 0.0, "profile_loss": 0.0}
        for i, inputs in enumerate(micro):
            with self._autocast():
                out = self.network(**inputs, reduction="sum")
            terms = {k: out[k] for k in sums if k in out}
            loss = sum(
                (scale[k] * v for k, v in terms.items() if scale[k]),
                torch.zeros((), device=self.device),
            )
            for k, v in [*terms.items(), ("loss", loss)]:
                value = float(v.detach())
                if not math.isfinite(value):
                    raise self._non_finite(k, value, inputs, facts[i], i, len(micro))
                sums[k] = sums.get(k, 0.0) + value
            self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip))
        if not math.isfinite(norm):
            if not self.scaler.is_enabled():
                raise self._diverged(f"the gradient norm is {norm} at step {self.step + 1}", True)
            # fp16 overflow: the scaler skips this update and halves its scale
            log.warning(
                "fp16: gradient overflow at step %d, update skipped (loss scale %g)",
                self.step + 1,
                self.scaler.get_scale(),
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        self.sampler.advance(self.world * self.accum)
        self.seen["samples"] += int(n_sequences)
        self.seen["tokens"] += int(n_residues)
        mlm_sum, profile_sum = self._sum_over_ranks([sums["mlm_loss"], sums["profile_loss"]])
        means = {
            "mlm_loss": mlm_sum / max(n_masked, 1),
            "profile_loss": profile_sum / max(n_residues, 1),
        }
        return {
            "loss": mlm_w * means["mlm_loss"] + profile_w * means["profile_loss"],
            **means,
            "masked_positions": n_masked,
            "tokens": n_residues,  # over every rank
        }

    def _sum_over_ranks(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return [float(v) for v in total.tolist()]

    def _non_finite(
        self,
        term: str,
        value: float,
        inputs: dict[str, Any],
        facts: dict[str, int],
        index: int,
        count: int,
    ) -> TrainingError:
        """Say which term went non-finite, on what micro-batch, and whether its inputs were sound
        (only then is the learning rate the likely cause)."""
        name = {"mlm_loss": "the MLM loss", "profile_loss": "the profile loss"}.get(
            term, "the loss"
        )
        described = ", ".join(f"{n} {k}" for k, n in facts.items())
        what = (
            f"{name} is {value} at step {self.step + 1} "
            f"(micro-batch {index + 1} of {count}: {described})"
        )
        unsound = _unsound_inputs(inputs)
        if unsound:
            return self._diverged(f"{what}; {unsound}", advise_lr=False)
        return self._diverged(f"{what}; its inputs were sound", advise_lr=True)

    def _diverged(self, what: str, advise_lr: bool) -> TrainingError:
        suspect = self.resumed is not None and self.saved_step == self.resumed[1]
        if self.resumed is not None and suspect:
            # Nothing saved since the resume: the checkpoint resumed from may be the cause.
            kept = (
                f"no checkpoint was written since resuming from {self.resumed[0]} (step "
                f"{self.resumed[1]}), which may itself be damaged (its optimizer state or "
                "weights): resume from an earlier copy or start over"
            )
        elif self.saved_step is not None:
            kept = f"the last good checkpoint is {self.out / LAST} (step {self.saved_step})"
        else:
            kept = "no checkpoint was written yet"
        advice = "; try a lower lr" if advise_lr and not suspect else ""
        return TrainingError(f"{what}: training stopped; {kept}{advice}")

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """MLM perplexity, profile KL and argmax agreement on the valid split (fixed masks).

        Rank 0 evaluates the whole split with the unwrapped model (no collectives), so a valid
        split smaller than the world size still gets measured. A sharded model needs every rank
        for its forward passes: all evaluate the same batches, rank 0 reports.
        """
        if not len(self.valid_data) or (self.rank != 0 and not self.sharded):
            return {}
        self.network.eval()
        generator = torch.Generator().manual_seed(12345)
        sampler = TokenBudgetBatchSampler(
            self.valid_data.lengths, self.config.max_tokens, 0, shuffle=False
        )
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
            totals += torch.tensor(
                [mlm_sum, n_masked, float(out["profile_loss"]) * n_res, n_res, int(agree.sum())],
                dtype=torch.float64,
            )
        ce, masked, kl, residues, agree = totals.tolist()
        if self.rank != 0:
            return {}
        return {
            "valid_mlm_perplexity": math.exp(ce / max(masked, 1)),
            "valid_profile_kl": kl / max(residues, 1),
            "valid_profile_argmax_agreement": agree / max(residues, 1),
        }

    def save(self) -> None:
        """Write the rolling checkpoint (rank 0), refusing non-finite weights."""
        if self.rank != 0 and not self.sharded:
            return
        state = self.state_dict()  # every rank gathers a sharded model's tensors
        if self.rank != 0:
            return
        bad = non_finite(state["model"])
        if bad:
            raise self._diverged(
                f"the weights hold NaN or inf at step {self.step} ({bad[0]})", True
            )
        save_checkpoint(self.out / LAST, state)
        self.saved_step = self.step

    def _stop_requested(self, received: list[int]) -> bool:
        """Whether any rank received a stop signal (all ranks agree, so they stop at the same
        step boundary and rank 0's checkpoint is everyone's)."""
        if self.world == 1:
            return bool(received)
        flag = torch.tensor([float(bool(received))], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.out / LAST_METRICS, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def fit(self) -> None:
        """Train to `max_steps`, validating, logging and checkpointing to the rolling files.

        Raises:
            TrainingError: `stop_after` steps were run before `max_steps` (checkpointed), or
                training diverged (the last good checkpoint is kept).
            Preempted: SIGTERM or SIGUSR1 arrived; the step under way was finished and saved.
        """
        from tqdm import tqdm

        c = self.config
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        stop = min(c.max_steps, self.step + c.stop_after) if c.stop_after else c.max_steps
        batches = self._batches()
        bar = tqdm(
            total=c.max_steps,
            initial=self.step,
            disable=None if self.rank == 0 else True,
            unit="step",
        )
        start, tokens = time.perf_counter(), 0.0
        with _stop_signals() as received:
            while self.step < stop:
                stats = self.train_step(batches)
                tokens += stats["tokens"]
                rate = tokens / (time.perf_counter() - start)
                bar.update()
                bar.set_postfix(loss=f"{stats['loss']:.3f}", tok_s=f"{rate:.0f}")
                if self.step % c.eval_every == 0 or self.step == c.max_steps:
                    record = {
                        "step": self.step,
                        "epoch": self.sampler.epoch,
                        "lr": self.scheduler.get_last_lr()[0],
                        "tokens_per_s": rate,
                        "samples_seen": self.seen["samples"],
                        "tokens_seen": self.seen["tokens"],
                        **{f"train_{k}": v for k, v in stats.items() if k != "tokens"},
                        **self.evaluate(),
                    }
                    self._log(record)
                    log.info(
                        "step %d %s",
                        self.step,
                        {k: round(v, 4) for k, v in record.items() if isinstance(v, float)},
                    )
                stopping = self._stop_requested(received)
                if stopping or self.step % c.checkpoint_every == 0 or self.step == stop:
                    self.save()
                if stopping:
                    bar.close()
                    raise Preempted(
                        f"stopped by {_signal_names(received)} at step {self.step}; saved "
                        f"{self.out / LAST}; rerun with --resume to continue"
                    )
        bar.close()
        if self.step < c.max_steps:
            raise TrainingError(
                f"stopped at step {self.step} (stop_after); rerun with --resume "
                f"to continue from {self.out / LAST}"
            )


# SLURM sends SIGTERM at a job's time limit (then SIGKILL after KillWait, 30 s by default), and
# `--signal=USR1@<seconds>` sends SIGUSR1 that long before it.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """Record STOP_SIGNALS instead of dying, so the loop saves at the next step boundary; the
    previous handlers come back afterwards. Only the main thread may set handlers: elsewhere
    (a test's thread) the signals keep their defaults."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.signal(s, lambda n, _: received.append(n)) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _signal_names(received: list[int]) -> str:
    # Another rank may have received it: this one then has nothing to name.
    return signal.Signals(received[0]).name if received else "a signal on another rank"


def _mask_generator(seed: int, position: int) -> torch.Generator:
    """The MLM masks of global batch `position`: keyed by the batch, not by the rank that
    reads it, so a run on any number of processes masks each batch alike."""
    return torch.Generator().manual_seed(seed * 2**32 + position)


def _micro_batch_facts(inputs: dict[str, Any]) -> dict[str, int]:
    labels = inputs["mlm_labels"]
    return {
        "sequences": int(inputs["tokens"].shape[0]),
        "residues": int(inputs["residue_mask"].sum()),
        "masked positions": int((labels != IGNORE).sum()) if labels is not None else 0,
    }


def _unsound_inputs(inputs: dict[str, Any]) -> str | None:
    """What is wrong with a micro-batch's inputs, or None."""
    if not int(inputs["residue_mask"].sum()):
        return "the micro-batch holds no residue"
    if not bool(torch.isfinite(inputs["profiles"]).all()):
        return "its profile targets hold NaN or inf (check the store with protprof verify)"
    return None


# Settings a resumed run may change: they do not alter the trained weights, or (max_steps,
# stop_after) are why one resumes. Any other difference is refused rather than mixed in.
_RESUMABLE = {
    "store",
    "out_dir",
    "max_steps",
    "stop_after",
    "eval_every",
    "eval_batches",
    "checkpoint_every",
    "num_workers",
    "device",
    "compile",
    "precision",  # weights and optimizer state stay fp32 whatever the autocast dtype
    "activation_checkpointing",  # recomputes the same activations
    "devices",
    "nodes",
    # The data position is counted over all ranks: a run may resume on another number of
    # processes, or accumulate differently (the global batch change is logged).
    "accum_steps",
    "init_from",  # read only when a run starts: a resumed run may drop it or lose the folder
}


def _check_same_run(
    path: Path, state: dict[str, Any], config: TrainConfig, model: ModelConfig
) -> None:
    # Settings added since a checkpoint was written compare as their defaults.
    unknown = set(state["model_config"]) - {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown:
        raise ConfigError(
            f"{path}: cannot resume, it was written by a newer protprof (model settings "
            f"{sorted(unknown)} are unknown here)"
        )
    saved = dataclasses.asdict(ModelConfig(**state["model_config"]))
    diff = {k: (saved[k], v) for k, v in dataclasses.asdict(model).items() if saved[k] != v}
    if diff:
        raise ConfigError(
            f"{path}: cannot resume, the model config differs (checkpoint, now): {diff}"
        )
    now = dataclasses.asdict(config)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    old = {k: state["config"].get(k, defaults[k]) for k in now}
    changed = {k: (old[k], v) for k, v in now.items() if k not in _RESUMABLE and old[k] != v}
    if changed:
        listed = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ConfigError(
            f"{path}: cannot resume, it was trained with other settings "
            f"({listed}); remove it to start over"
        )


def resolve_precision(choice: str, device: torch.device) -> str:
    """`precision` as trained: `auto` is bf16 on CUDA and fp32 elsewhere."""
    if choice == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return choice


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


def train(config: TrainConfig, resume: bool = False) -> Trainer:
    """Train per `config` in its out_dir and publish the results when `max_steps` is reached.

    With `resume`, continue from out_dir's last.pt (an interrupted run) or checkpoint.pt (a
    finished one, e.g. with a larger max_steps) if there is one, else start afresh.

    Raises:
        OutputError: another run holds out_dir, or it cannot be written.
        ConfigError: a checkpoint exists without `resume`, or was trained with other settings.
        TrainingError: stopped by `stop_after`, or diverged; the rolling checkpoint is kept.
        Preempted: stopped by SIGTERM or SIGUSR1 after saving the rolling checkpoint.
    """
    out = Path(config.out_dir)
    if resume_source(out, resume) is None:
        config.check_init_from()  # before anything is written; a resumed run never reads it
    with lock_run(out):
        trainer = Trainer(config)
        source = resume_source(out, resume)
        if source is not None:
            trainer.load(source)
        elif config.init_from:
            trainer.start_from(config.init_from)
        if trainer.rank == 0:
            start_rolling(out, source, trainer.step)
            log.info(
                "model %s: %d parameters; objective %s; precision %s; %s; %d train / %d valid "
                "sequences",
                config.model,
                trainer.model.n_parameters(),
                config.objective,
                trainer.precision,
                trainer.layout(),
                len(trainer.train_data),
                len(trainer.valid_data),
            )
        trainer.fit()
        if trainer.rank == 0:
            publish(out)
    if trainer.world > 1:
        dist.destroy_process_group()
    return trainer
