"""Training speed of the ESM-2-compatible encoder on CPU, against two peers in the same run.

For each preset (tiny, esm2-8m, tape-base), multitask training steps (MLM + profile KL, AdamW)
on the same real batches of a profile store, in rounds that alternate the implementations:
- `protprof`: `protprof.model.encoder.ProteinEncoder` as it is now;
- `before`: the encoder before the ESM-2 changes (protprof/model.py at commit BASELINE, read
  from git), the figure the interop issue must stay within 0.9x of;
- `transformers`: `transformers.EsmForMaskedLM` (SDPA attention) of the same shape plus a
  20-way profile head: the alternative of building protprof's encoder on `EsmModel`.
Reports the median tokens/s per implementation and the ratios.

Usage: python bench/bench_model.py [STORE]   (default: a 48-query demo store built once into
bench/work/model/)
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import record  # noqa: E402

from protprof.alphabet import IGNORE  # noqa: E402
from protprof.model.config import PRESETS, ModelConfig  # noqa: E402
from protprof.model.encoder import ProteinEncoder, profile_kl, total_loss  # noqa: E402
from protprof.model.huggingface import TO_ESM  # noqa: E402
from protprof.train.data import (  # noqa: E402
    ProfileDataset,
    TokenBudgetBatchSampler,
    collate,
    mask_tokens,
    profile_targets,
)

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "model"
BASELINE = "e92175c"  # main before the ESM-2 interop work
# preset: (timed steps per round, rounds)
PLAN = {"tiny": (20, 3), "esm2-8m": (4, 3), "tape-base": (2, 2)}


def demo_store() -> Path:
    store = WORK / "store.zarr"
    if not store.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        from protprof.queries.fasta import read_fasta

        queries = WORK / "queries.fasta"
        records = read_fasta(ROOT / "data/demo/queries_150.fasta.gz")[:48]
        queries.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
        subprocess.run(
            [
                "protprof",
                "build",
                str(queries),
                "--database",
                str(ROOT / "data/demo/uniprot_5k.fasta.gz"),
                "--out",
                str(store),
                "-N",
                "2",
            ],
            check=True,
        )
    return store


def baseline_encoder() -> type:
    """ProteinEncoder as it was at BASELINE (read from git, imported under another name)."""
    source = subprocess.run(
        ["git", "show", f"{BASELINE}:protprof/model.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # The configuration it imports has moved since (protprof/model_config.py -> model/config.py).
    source = source.replace("protprof.model_config import", "protprof.model.config import")
    path = WORK / "model_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("protprof_model_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ProteinEncoder


class EsmWithProfileHead(torch.nn.Module):
    """transformers' EsmForMaskedLM plus protprof's profile head, taking protprof's tokens."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        from transformers import EsmConfig, EsmForMaskedLM

        from protprof.model.huggingface import _esm_config

        self.esm = EsmForMaskedLM._from_config(
            EsmConfig(**_esm_config(c)), attn_implementation="sdpa"
        )
        self.profile_head = torch.nn.Linear(c.d_model, 20)
        self.register_buffer("to_esm", torch.tensor(TO_ESM))

    def forward(self, tokens, mlm_labels, profiles, residue_mask):
        ids = self.to_esm[tokens.long()]
        labels = torch.where(mlm_labels == IGNORE, IGNORE, self.to_esm[mlm_labels.clamp(min=0)])
        out = self.esm(
            input_ids=ids,
            attention_mask=(tokens != 0).long(),
            labels=labels,
            output_hidden_states=True,
        )
        profile_logits = self.profile_head(out.hidden_states[-1])
        return {
            "mlm_loss": out.loss,
            "profile_loss": profile_kl(profile_logits, profiles, residue_mask),
        }


def rate(model: torch.nn.Module, batches: list[dict], steps: int) -> float:
    """Tokens/s of `steps` multitask training steps after one warm-up step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    tokens = 0
    for k in range(steps + 1):
        if k == 1:
            start = time.perf_counter()
        batch = batches[k % len(batches)]
        inputs, labels = mask_tokens(batch["tokens"], 0.15, generator)
        out = model(inputs, labels, profile_targets(batch["profiles"]), batch["residue_mask"])
        total_loss(out, "multitask", 1.0, 1.0).backward()
        optimizer.step()
        optimizer.zero_grad()
        if k >= 1:
            tokens += batch["tokens"].numel()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(2)
    store = Path(sys.argv[1]) if len(sys.argv) > 1 else demo_store()
    data = ProfileDataset(store, "all", max_len=256)
    sampler = TokenBudgetBatchSampler(data.lengths, 4096, seed=0)
    batches = [collate([data[i] for i in b]) for b in sampler.batches()[:24]]
    before = baseline_encoder()
    builders: dict[str, Callable[[ModelConfig], torch.nn.Module]] = {
        "protprof": ProteinEncoder,
        "before": before,
        "transformers": EsmWithProfileHead,
    }
    lines = [
        f"Store: `{store.relative_to(ROOT) if store.is_relative_to(ROOT) else store}`; "
        f"batches of <= 4,096 padded tokens; `before` = protprof/model.py at {BASELINE}; "
        "`transformers` = EsmForMaskedLM (SDPA) + profile head. Median tokens/s over rounds "
        "that alternate the implementations.",
        "",
        "| preset | protprof | before | transformers | protprof / before | "
        "transformers / protprof |",
        "|---|---|---|---|---|---|",
    ]
    for preset, (steps, rounds) in PLAN.items():
        config = PRESETS[preset]
        names = [n for n in builders if not (n == "before" and config.token_dropout)]
        rates: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(rounds):
            for name in names:
                torch.manual_seed(0)
                rates[name].append(rate(builders[name](config), batches, steps))
                print(preset, name, f"{rates[name][-1]:,.0f} tokens/s", flush=True)
        median = {n: statistics.median(r) for n, r in rates.items()}
        old = f"{median['before']:,.0f}" if "before" in median else "n/a (new preset)"
        ratio = f"**{median['protprof'] / median['before']:.2f}**" if "before" in median else "-"
        lines.append(
            f"| {preset} | {median['protprof']:,.0f} | {old} | {median['transformers']:,.0f} "
            f"| {ratio} | {median['transformers'] / median['protprof']:.2f} |"
        )
    lines.append("")
    lines.append("Target: protprof / before >= 0.9 for tiny and tape-base.")
    record("encoder training speed: ESM-2 layout vs before vs transformers", lines)


if __name__ == "__main__":
    main()
