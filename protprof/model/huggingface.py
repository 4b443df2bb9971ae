"""Hugging Face ESM directories: export protprof models as `EsmForMaskedLM`, and read any local
ESM-2 directory as a protprof encoder (for embed, evaluate and `train --init-from`).

protprof's encoder has ESM-2's layout (`protprof.model.encoder`), so weights map one to one. Three
differences are bridged here:
- attention: protprof fuses the query, key and value projections; ESM keeps three.
- vocabulary: protprof has 30 tokens, ESM 33 with other ids. Every protprof token has an ESM
  twin; J, which ESM lacks, is ESM's `<unk>` (ESM's tokenizer also reads a J as `<unk>`, but a
  run of them as a single one). ESM's `.`, `-` and `<null_1>` have none: an export gives them a
  zero embedding and a logit bias of -10,000 (never predicted), an import drops them.
- the profile head: ESM has none. An export writes it beside the model as
  `profile_head.safetensors` (`load_profile_head`); a directory without it loads with a fresh
  head and `has_profile_head = False`.
Nothing here touches the network: `transformers` reads local directories only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from protprof.alphabet import STANDARD, VOCAB
from protprof.atomic import Kind, atomic_output
from protprof.errors import CheckpointError
from protprof.model.config import ModelConfig
from protprof.model.encoder import LoadedModel, ProteinEncoder, non_finite
from protprof.model.esm_config import ESM_TOKENS, REQUIRED, read_config
from protprof.store.file_versions import check, stamp

log = logging.getLogger(__name__)

_ESM_NAME = {"J": "<unk>"}  # protprof tokens ESM spells otherwise
# ESM id of each protprof token id.
TO_ESM = [ESM_TOKENS.index(_ESM_NAME.get(token, token)) for token in VOCAB]
UNUSED_LOGIT = -1e4  # bias of the ESM tokens protprof lacks: their probability is exactly 0

PROFILE_HEAD = "profile_head.safetensors"
PROVENANCE = "protprof.json"  # what `protprof export` wrote, and from which checkpoint


def _is_export(path: Path) -> bool:
    return path.is_dir() and (path / PROVENANCE).is_file() and (path / "config.json").is_file()


HF_EXPORT = Kind("a Hugging Face directory written by `protprof export`", _is_export)


# ---------------------------------------------------------------- weight names


def _pairs(n_layers: int) -> list[tuple[str, str]]:
    """(protprof name, `EsmForMaskedLM` name) of every tensor copied as it is."""
    pairs = [
        ("rotary.inv_freq", "esm.rotary_embeddings.inv_freq"),
        ("ln_f.weight", "esm.encoder.emb_layer_norm_after.weight"),
        ("ln_f.bias", "esm.encoder.emb_layer_norm_after.bias"),
        ("mlm_transform.0.weight", "lm_head.dense.weight"),
        ("mlm_transform.0.bias", "lm_head.dense.bias"),
        ("mlm_transform.2.weight", "lm_head.layer_norm.weight"),
        ("mlm_transform.2.bias", "lm_head.layer_norm.bias"),
    ]
    for i in range(n_layers):
        ours, theirs = f"blocks.{i}", f"esm.encoder.layer.{i}"
        for kind in ("weight", "bias"):
            pairs += [
                (f"{ours}.ln1.{kind}", f"{theirs}.attention.LayerNorm.{kind}"),
                (f"{ours}.out.{kind}", f"{theirs}.attention.output.dense.{kind}"),
                (f"{ours}.ln2.{kind}", f"{theirs}.LayerNorm.{kind}"),
                (f"{ours}.ff.0.{kind}", f"{theirs}.intermediate.dense.{kind}"),
                (f"{ours}.ff.2.{kind}", f"{theirs}.output.dense.{kind}"),
            ]
    return pairs


def _attention(i: int, kind: str) -> list[str]:
    return [f"esm.encoder.layer.{i}.attention.self.{p}.{kind}" for p in ("query", "key", "value")]


def to_esm_state(model: ProteinEncoder) -> dict[str, torch.Tensor]:
    """The encoder's weights under `EsmForMaskedLM`'s names and vocabulary (the contact head,
    which protprof does not train, is zero)."""
    ours = {k: v.detach().float() for k, v in model.state_dict().items()}
    c = model.config
    state = {theirs: ours[mine] for mine, theirs in _pairs(c.n_layers)}
    for i in range(c.n_layers):
        for kind in ("weight", "bias"):
            for name, part in zip(
                _attention(i, kind), ours[f"blocks.{i}.qkv.{kind}"].chunk(3), strict=True
            ):
                state[name] = part
    embed = torch.zeros(len(ESM_TOKENS), c.d_model)
    embed[TO_ESM] = ours["embed.weight"]
    bias = torch.full((len(ESM_TOKENS),), UNUSED_LOGIT)
    bias[TO_ESM] = ours["mlm_bias"]
    state["esm.embeddings.word_embeddings.weight"] = embed
    state["lm_head.decoder.weight"] = embed  # tied, as in ESM
    state["lm_head.bias"] = bias
    heads = c.n_layers * c.n_heads
    state["esm.contact_head.regression.weight"] = torch.zeros(1, heads)
    state["esm.contact_head.regression.bias"] = torch.zeros(1)
    return state


def from_esm_state(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """protprof's weights (profile head excluded) from an `EsmForMaskedLM` state dict."""
    state = {k: v.detach().float() for k, v in state.items()}
    ours = {mine: state[theirs] for mine, theirs in _pairs(config.n_layers)}
    for i in range(config.n_layers):
        for kind in ("weight", "bias"):
            ours[f"blocks.{i}.qkv.{kind}"] = torch.cat([state[n] for n in _attention(i, kind)])
    ours["embed.weight"] = state["esm.embeddings.word_embeddings.weight"][TO_ESM]
    ours["mlm_bias"] = state["lm_head.bias"][TO_ESM]
    return ours


def _esm_config(config: ModelConfig) -> dict[str, Any]:
    """`EsmConfig` keyword arguments of an encoder shape."""
    return {
        **REQUIRED,
        "architectures": ["EsmForMaskedLM"],
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.d_ff,
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.dropout,
        "layer_norm_eps": config.layer_norm_eps,
        "rope_theta": config.rope_base,
        "token_dropout": config.token_dropout,
        "max_position_embeddings": 1026,  # ESM-2's; unused with rotary positions
        "tie_word_embeddings": True,
        "hidden_act": "gelu",
    }


# ---------------------------------------------------------------- export


def export(loaded: LoadedModel, out: str | Path, force: bool = False) -> None:
    """Write a Hugging Face directory: config.json, model.safetensors, the tokenizer files,
    profile_head.safetensors (when the model has one) and protprof.json. Atomic: a failed
    export leaves nothing."""
    from safetensors.torch import save_file
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    _quiet_transformers()
    model = loaded.model
    # Built on the meta device and given protprof's tensors: no random initialisation, and no
    # second copy of a large model in memory.
    with torch.device("meta"):
        esm = EsmForMaskedLM(EsmConfig(**_esm_config(model.config)))
    result = esm.load_state_dict(to_esm_state(model), strict=False, assign=True)
    esm.tie_weights()
    # Not strict only because transformers 5 leaves the tied decoder out of state_dict():
    # anything else missing or left over is a bug in the name table.
    missing = [k for k in result.missing_keys if k != "lm_head.decoder.weight"]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"export: weight names out of step with transformers: {result}")
    decoder, embedding = esm.lm_head.decoder.weight, esm.esm.embeddings.word_embeddings.weight
    if decoder.data_ptr() != embedding.data_ptr():
        raise RuntimeError("export: the MLM decoder is not tied to the embeddings")
    provenance = {
        **stamp("export"),
        "exported_by": "protprof export",
        "source": str(Path(loaded.source).resolve()),
        "step": loaded.step,
        "training": loaded.training,
        "model_config": dataclasses.asdict(model.config),
        "profile_head": PROFILE_HEAD if loaded.has_profile_head else None,
        "vocabulary": "ESM-2's 33 tokens; protprof's J is <unk>; '.', '-' and <null_1> "
        f"have zero embeddings and logit bias {UNUSED_LOGIT:g}",
        "contact_head": "zero (protprof does not train it)",
    }
    with atomic_output(out, HF_EXPORT, force) as tmp:
        tmp.mkdir()
        esm.save_pretrained(tmp)
        with _vocabulary_file(tmp) as vocab:
            EsmTokenizer(str(vocab)).save_pretrained(tmp)
        if loaded.has_profile_head:
            head = model.profile_head
            save_file(
                {
                    "weight": head.weight.detach().float().contiguous(),
                    "bias": head.bias.detach().float().contiguous(),
                },
                str(tmp / PROFILE_HEAD),
                metadata={
                    "format": "protprof profile head",
                    "input": "EsmModel last_hidden_state (d_model)",
                    "output": "logits over the 20 residues; softmax gives the profile",
                    "columns": STANDARD,
                },
            )
        # safetensors carries no checksum: a flipped bit in a weight would load silently.
        provenance["sha256"] = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=1, default=str) + "\n")


class _vocabulary_file:
    """ESM's vocab.txt in a scratch file, for building the tokenizer (it reads a path)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".vocab-source.txt"

    def __enter__(self) -> Path:
        self.path.write_text("\n".join(ESM_TOKENS) + "\n")
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def load_profile_head(directory: str | Path, d_model: int | None = None) -> torch.nn.Linear:
    """The profile head of an exported directory: a `Linear(d_model, 20)` to apply to
    `EsmModel`'s `last_hidden_state`; softmax over the last axis gives the profile, columns in
    `ACDEFGHIKLMNPQRSTVWY` order.

    Raises:
        CheckpointError: the directory has no profile head, or it is unreadable.
    """
    from safetensors.torch import load_file

    path = Path(directory) / PROFILE_HEAD
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {PROFILE_HEAD} (not exported by protprof)")
    try:
        weights = load_file(str(path))
        weight, bias = weights["weight"], weights["bias"]
    except Exception as e:  # any unreadable file is a bad file here
        raise CheckpointError(f"{path}: cannot read the profile head ({e})") from e
    width = weight.shape[1] if weight.ndim == 2 else None
    if (
        weight.ndim != 2
        or weight.shape[0] != len(STANDARD)
        or bias.shape != (len(STANDARD),)
        or (d_model is not None and width != d_model)
    ):
        wanted = f" for d_model {d_model}" if d_model is not None else ""
        raise CheckpointError(
            f"{path}: not a profile head{wanted} (weight {tuple(weight.shape)}, bias "
            f"{tuple(bias.shape)}; expected (20, d_model) and (20,))"
        )
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise CheckpointError(f"{path}: the profile head holds NaN or inf")
    head = torch.nn.Linear(weight.shape[1], len(STANDARD))
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head


# ---------------------------------------------------------------- import


def load_directory(directory: str | Path) -> LoadedModel:
    """A protprof encoder from a local `EsmForMaskedLM` directory, in eval mode on CPU; with
    the profile head written by `protprof export` when there is one.

    Raises:
        CheckpointError: one line: see `read_config`; weights missing or of another shape; a
            recorded file missing or changed.
        InputFormatError: protprof.json of another format or major version.
    """
    directory = Path(directory)
    check_files(directory)
    config = read_config(directory)
    esm = _read_weights(directory)
    model = ProteinEncoder(config)
    missing, unexpected = model.load_state_dict(from_esm_state(esm, config), strict=False)
    if unexpected or set(missing) != {"profile_head.weight", "profile_head.bias"}:
        raise RuntimeError(f"import: weight names out of step with protprof: {missing}")
    provenance = _provenance(directory)
    has_head = (directory / PROFILE_HEAD).is_file()
    if has_head:
        model.profile_head = load_profile_head(directory, config.d_model)
    return LoadedModel(
        model.eval(),
        str(directory),
        provenance.get("step"),
        provenance.get("training", {}),
        has_head,
    )


def _quiet_transformers() -> None:
    """No progress bars or missing-weight reports from `transformers`: protprof checks the
    loading itself and reports in one line."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_files(directory: Path) -> None:
    """Check the files `protprof export` recorded in protprof.json against their SHA-256
    (a directory from elsewhere, or from an older protprof, records none and is not checked).

    Raises:
        CheckpointError: a recorded file is missing or its bytes changed.
        InputFormatError: protprof.json of another format or major version.
    """
    recorded = _provenance(directory).get("sha256")
    if not isinstance(recorded, dict):
        return
    for name, want in recorded.items():
        path = directory / str(name)
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (protprof export wrote it; see {PROVENANCE})")
        if _sha256(path) != want:
            raise CheckpointError(
                f"{path}: its SHA-256 differs from the one protprof export recorded in "
                f"{PROVENANCE}: the file is damaged or was changed; export the model again"
            )


def _provenance(directory: Path) -> dict[str, Any]:
    """protprof.json's records: none for a directory from elsewhere (no such file); a file
    that is there but unreadable is refused, or its checksums would go unchecked."""
    path = directory / PROVENANCE
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({e}); export the model again") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not protprof's export record (a JSON object expected)")
    check(value, "export", path)
    return value


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The weights as `EsmForMaskedLM` names them, read by `transformers` itself (so every
    layout it accepts is accepted: safetensors or .bin, sharded, older tensor names)."""
    from transformers import EsmForMaskedLM

    _quiet_transformers()
    try:
        loaded: Any = EsmForMaskedLM.from_pretrained(
            directory,
            local_files_only=True,
            output_loading_info=True,
            dtype=torch.float32,
            ignore_mismatched_sizes=True,  # reported below, naming the first one
        )
    except Exception as e:  # any failure to read the files (safetensors has its own errors)
        raise CheckpointError(f"{directory}: cannot read the weights ({_why(e)})") from e
    esm, info = loaded
    # The contact head is not protprof's: a directory without it is still a whole encoder.
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("esm.contact_head."))
    if missing and all(k.startswith("lm_head.") for k in missing):
        raise CheckpointError(
            f"{directory}: no MLM head (lm_head weights; saved from EsmModel alone?): protprof "
            "reads EsmForMaskedLM directories"
        )
    wrong = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info["mismatched_keys"])
    if missing or wrong:
        first = (missing or wrong)[0]
        raise CheckpointError(
            f"{directory}: the weights do not fit its config.json "
            f"({len(missing)} missing, {len(wrong)} of another shape; first {first})"
        )
    decoder, embedding = esm.lm_head.decoder.weight, esm.esm.embeddings.word_embeddings.weight
    if not torch.equal(decoder, embedding):
        raise CheckpointError(
            f"{directory}: its MLM decoder is not tied to the embeddings (tie_word_embeddings "
            "false); ESM-2's and protprof's are tied"
        )
    state = esm.state_dict()
    bad = non_finite(state)
    if bad:
        raise CheckpointError(
            f"{directory}: the weights hold NaN or inf ({len(bad)} of {len(state)} tensors, "
            f"first {bad[0]}); refusing a corrupt model"
        )
    return state


def _why(error: Exception) -> str:
    """The first line of a loading error, without torch's advice to unpickle unsafely."""
    if "weights_only" in str(error):
        return "a .bin file is not a readable PyTorch weights file"
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]
