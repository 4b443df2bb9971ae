"""Memory-mapped training data: a map-style Dataset over a profile store, a token-budget
length-bucketed batch sampler (DDP-aware, deterministic, resumable), collation and MLM masking.

Per item the Dataset slices memory maps of the store's raw chunk files, never zarr (a
thousand times slower per protein: bench/bench_loader.py). Files open lazily in each worker:
the Dataset pickles as its settings and the store's identity, and a worker reopens the store
and rebuilds the index, so it works under fork, spawn and forkserver.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from protprof.alphabet import FIRST_RESIDUE, IGNORE, MASK, N_STANDARD, pad_tokens
from protprof.errors import ConfigError, StoreError
from protprof.store.zarr_store import QUANT, SPLIT_NAMES, ProfileStore, open_store
from protprof.train.config import TrainConfig

_MIX = np.uint64(0x9E3779B97F4A7C15)


def _crop_start(seed: int, epoch: int, index: int, span: int) -> int:
    """A deterministic pseudo-random start in [0, span] for (seed, epoch, index) (splitmix64)."""
    with np.errstate(over="ignore"):
        x = np.uint64(seed) * _MIX + np.uint64(epoch) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x + np.uint64(index)) * _MIX
        x ^= x >> np.uint64(31)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(29)
    return int(x % np.uint64(span + 1))


class ProfileDataset(Dataset):
    """Sequences of one split of a store; item = (token ids uint8 (L,), quantised profile (L, 20)).

    Args:
        path: the store.
        split: "train", "valid", "test" or "all".
        max_len: residues kept per sequence; longer ones get a random crop, deterministic per
            (seed, epoch, index). The model adds 2 special tokens.
    """

    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        max_len: int = TrainConfig.max_len,
        seed: int = 0,
    ) -> None:
        self.path, self.split = Path(path), split
        self.max_len, self.seed, self.epoch = max_len, seed, 0
        self._open(open_store(path))

    def _open(self, store: ProfileStore) -> None:
        self.store = store
        split = self.split
        codes = self.store.split
        if len(codes) and int(codes.max()) >= len(SPLIT_NAMES):
            bad = np.flatnonzero(codes >= len(SPLIT_NAMES))
            raise StoreError(
                f"{store.path}: {len(bad)} sequences have a split code other than 0 (train), "
                f"1 (valid) or 2 (test), first {store.ids[int(bad[0])]!r} with "
                f"{int(codes[bad[0]])}; they would be in no split (`protprof verify` checks the "
                "store)"
            )
        if split == "all":
            self.indices = np.arange(len(self.store))
        elif split in SPLIT_NAMES:
            self.indices = np.flatnonzero(self.store.split == SPLIT_NAMES.index(split))
        else:
            raise ConfigError(f"split must be one of {SPLIT_NAMES} or 'all', got {split!r}")
        self.full_lengths = self.store.lengths[self.indices]
        # Python ints: per-item scalar access to a list is ~10x cheaper than to numpy.
        self._starts = self.store.offsets[self.indices].tolist()
        self._lengths = self.full_lengths.tolist()

    def __getstate__(self) -> dict[str, Any]:
        # A DataLoader worker gets the settings and the store's identity, not its index
        # arrays and lists (~80 MB at a million sequences, per worker), and rebuilds them.
        return {
            "path": self.path,
            "split": self.split,
            "max_len": self.max_len,
            "seed": self.seed,
            "epoch": self.epoch,
            "store": self.store,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        store = state.pop("store")
        self.__dict__.update(state)
        self._open(store)

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch`'s random crops (deterministic per epoch)."""
        self.epoch = epoch

    @property
    def lengths(self) -> np.ndarray:
        """Residues per item after cropping (what the sampler budgets)."""
        return np.minimum(self.full_lengths, self.max_len)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Item `i` cropped for the current epoch, or an `(epoch, i)` pair for that epoch's."""
        epoch, i = item if isinstance(item, tuple) else (self.epoch, item)
        start, length = self._starts[i], self._lengths[i]
        if length > self.max_len:
            start += _crop_start(self.seed, epoch, i, length - self.max_len)
            length = self.max_len
        store = self.store
        return store.rows("tokens", start, start + length), store.rows(
            "profiles", start, start + length
        )


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches whose padded size (longest item + 2 specials) x count stays within `max_tokens`.

    Items are shuffled, sorted by length inside pools of `pool` batches' worth (so batches hold
    similar lengths), batched greedily with at most `max_padding` of a batch's tokens being
    padding, and the batch order shuffled.
    Deterministic for (seed, epoch), and independent of the number of ranks: every rank cuts
    the same batches. Two ways to read them:

    - one epoch (`__iter__`, `batches`): each rank takes every num_replicas-th batch of a list
      truncated to a multiple of num_replicas (disjoint data, equal batch counts);
    - training's endless `stream`: epoch after epoch, nothing truncated, rank r taking global
      batches p + r, p + r + W, ... from the position p, each item tagged with its epoch.

    The position (`epoch`, `offset`: the next unread batch of the epoch, counted over all
    ranks) is what `state_dict` saves. It does not depend on the world size, so a run saved by
    W processes resumes on any other number and still reads every batch of each epoch once.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        max_tokens: int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        pool: int = 100,
        max_padding: float = 0.08,
    ) -> None:
        longest = int(lengths.max(initial=0)) + 2
        if max_tokens < longest:
            raise ConfigError(f"max_tokens {max_tokens} is below the longest item ({longest})")
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = np.asarray(lengths) + 2
        self.max_tokens, self.seed, self.shuffle = max_tokens, seed, shuffle
        self.num_replicas, self.rank, self.pool = num_replicas, rank, pool
        self.max_padding = max_padding
        self.epoch, self.offset = 0, 0
        self.consumed = 0  # global batches read since the start of training (all epochs)
        self._cache: dict[int, list[np.ndarray]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (every process must call it with the same epoch)."""
        self.epoch, self.offset = epoch, 0

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Every batch of `epoch`, over all ranks, none dropped."""
        if epoch not in self._cache:
            if len(self._cache) > 2:  # the stream reads at most two epochs at once
                self._cache.pop(min(self._cache))
            self._cache[epoch] = self._cut(epoch)
        return self._cache[epoch]

    def _all_batches(self) -> list[np.ndarray]:
        batches = self.epoch_batches(self.epoch)
        usable = len(batches) - len(batches) % self.num_replicas
        return batches[:usable]

    def _cut(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = (
            rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        )
        per_pool = max(1, self.pool * self.max_tokens // max(1, int(self.lengths.mean())))
        batches: list[np.ndarray] = []
        for p in range(0, len(order), per_pool):
            chunk = order[p : p + per_pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(self._greedy(chunk))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _greedy(self, sorted_items: np.ndarray) -> list[np.ndarray]:
        """Cut length-sorted items into batches within the token budget, also closing a batch
        when the next item would push its padding above `max_padding`."""
        batches, begin, longest, total = [], 0, 0, 0
        for j, item in enumerate(sorted_items):
            length = int(self.lengths[item])
            longest, total = max(longest, length), total + length
            padded = longest * (j - begin + 1)
            if padded > self.max_tokens or (padded - total) > self.max_padding * padded:
                batches.append(sorted_items[begin:j])
                begin, longest, total = j, length, length
        if begin < len(sorted_items):
            batches.append(sorted_items[begin:])
        return batches

    def batches(self) -> list[np.ndarray]:
        """This rank's batches for the current epoch (all of them, ignoring the position)."""
        return self._all_batches()[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch from the position on."""
        for batch in self._all_batches()[self.offset + self.rank :: self.num_replicas]:
            yield batch.tolist()

    def __len__(self) -> int:
        return len(self.batches())

    def stream(self) -> Iterator[list[tuple[int, int]]]:
        """This rank's batches from the position on, across epochs, as (epoch, item) pairs
        (`ProfileDataset` crops each item for its epoch). The position is read now: `advance`
        moves it for the checkpoint without disturbing a stream under way."""
        return self._stream(self.epoch, self.offset + self.rank)

    def _stream(self, epoch: int, offset: int) -> Iterator[list[tuple[int, int]]]:
        while True:
            batches = self.epoch_batches(epoch)
            while offset < len(batches):
                yield [(epoch, int(i)) for i in batches[offset]]
                offset += self.num_replicas
            epoch, offset = epoch + 1, offset - len(batches)

    def advance(self, batches: int) -> None:
        """Move the position past `batches` global batches (every rank's, across epochs)."""
        self.consumed += batches
        self.offset += batches
        while self.offset >= len(self.epoch_batches(self.epoch)):
            self.offset -= len(self.epoch_batches(self.epoch))
            self.epoch += 1

    def state_dict(self) -> dict[str, int]:
        """Where the sampler stands: all a resumed run needs, on any number of ranks."""
        return {
            "epoch": self.epoch,
            "offset": self.offset,
            "consumed": self.consumed,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a position `state_dict` returned."""
        if "offset" not in state:  # written before the position was counted over all ranks
            state = {**state, "offset": state["start_batch"], "consumed": state["start_batch"]}
        self.epoch, self.offset, self.consumed, self.seed = (
            state["epoch"],
            state["offset"],
            state["consumed"],
            state["seed"],
        )


def collate(items: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad a batch (`pad_tokens`); profile targets line up with tokens.

    Returns:
        tokens (B, T) int64; profiles (B, T, 20) uint8, quantised (zero rows at specials and
        padding; `profile_targets` turns them into float32 distributions, on the device, so
        host-to-device copies stay 4x smaller); residue_mask (B, T) bool, True on residues.
    """
    tokens = pad_tokens([tok for tok, _ in items])
    profiles = np.zeros((*tokens.shape, N_STANDARD), dtype=np.uint8)
    mask = np.zeros(tokens.shape, dtype=bool)
    for b, (tok, prof) in enumerate(items):
        profiles[b, 1 : len(tok) + 1] = prof
        mask[b, 1 : len(tok) + 1] = True
    return {
        "tokens": torch.from_numpy(tokens),
        "profiles": torch.from_numpy(profiles),  # (B, T, 20) uint8
        "residue_mask": torch.from_numpy(mask),
    }


def profile_targets(quantised: torch.Tensor) -> torch.Tensor:
    """Float32 target distributions of a batch's quantised profiles (rows sum to 1 or 0)."""
    return quantised.float().div_(QUANT)


def mask_tokens(
    tokens: torch.Tensor, p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose each residue with probability p; of those 80% become `<mask>`,
    10% a random standard residue, 10% stay. Special and padding tokens are never chosen.

    Returns:
        (inputs, labels): labels hold the original token at chosen positions, IGNORE elsewhere.
    """
    # One uniform draw u per position, set to 1 (never chosen) on specials and padding:
    # u < 0.8p -> <mask>, 0.8p <= u < 0.9p -> random residue, 0.9p <= u < p -> unchanged.
    # Few tensor ops: on CPU their fixed cost, not the arithmetic, dominates small batches.
    u = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    u.masked_fill_(tokens < FIRST_RESIDUE, 1.0)
    chosen = u < p
    inputs = tokens.masked_fill(u < 0.8 * p, MASK)
    swap = (u >= 0.8 * p) & (u < 0.9 * p)  # implies chosen
    n_swap = int(swap.sum())
    inputs[swap] = torch.randint(
        FIRST_RESIDUE,
        FIRST_RESIDUE + N_STANDARD,
        (n_swap,),
        generator=generator,
        device=tokens.device,
        dtype=tokens.dtype,
    )
    labels = tokens.masked_fill(~chosen, IGNORE)
    return inputs, labels


def loader(
    dataset: ProfileDataset,
    sampler: TokenBudgetBatchSampler | Iterable[list[Any]],
    num_workers: int = 0,
    **kwargs: Any,
) -> torch.utils.data.DataLoader:
    """A DataLoader over `dataset` with `sampler`'s batches (or a `stream`'s) and `collate`.

    It gets its own generator: creating a DataLoader iterator otherwise draws from the global
    torch RNG, which would make a resumed run's dropout differ from an uninterrupted one.
    """
    kwargs.setdefault("generator", torch.Generator().manual_seed(0))
    if num_workers:
        kwargs.setdefault("worker_init_fn", _ignore_stop_signals)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=False,
        **kwargs,
    )


def _ignore_stop_signals(worker_id: int) -> None:
    """SLURM signals every process of a job step: a worker that died of SIGTERM would fail the
    trainer's next batch before it could save. The trainer handles the signal; workers ignore
    it (and exit with their parent)."""
    import signal

    for number in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(number, signal.SIG_IGN)
