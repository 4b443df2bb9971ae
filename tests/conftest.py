"""Shared fixtures: small real inputs cut from the embedded demo data (UniProtKB records)."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from protprof.fasta import read_fasta
from protprof.ingest import IngestParams, select_records
from protprof.pipeline import build
from protprof.profiles import ProfileParams
from protprof.search import SearchParams, load_database

ROOT = Path(__file__).resolve().parents[1]
DEMO_DB = ROOT / "data" / "demo" / "uniprot_5k.fasta.gz"
DEMO_QUERIES = ROOT / "data" / "demo" / "queries_150.fasta.gz"
SHARED_DATA = ROOT.parent / "shared" / "data"


def write_queries(path: Path, n: int, start: int = 0) -> Path:
    """Write `n` real demo query records (from index `start`) as plain FASTA."""
    records = read_fasta(DEMO_QUERIES)[start : start + n]
    path.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    return path


@pytest.fixture(scope="session")
def demo_database():
    return load_database(DEMO_DB)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, demo_database) -> Path:
    """A real store: 24 demo queries searched against the 5,000-sequence demo database."""
    tmp = tmp_path_factory.mktemp("store")
    queries = write_queries(tmp / "q.fasta", 24)
    params = IngestParams(max_length=400, valid_fraction=0.2, test_fraction=0.1)
    records = select_records([queries], params)
    return build(
        records,
        demo_database,
        tmp / "small.zarr",
        2,
        params,
        SearchParams(iterations=2),
        ProfileParams(),
    )


def esm_directory(path: Path, layers=2, width=64, heads=4, seed=0, **config) -> Path:
    """A random `EsmForMaskedLM` saved as `transformers` saves one: ESM-2's settings and
    vocabulary, every weight random (LayerNorms too, so no parameter can be mis-mapped
    unnoticed)."""
    import torch
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    from protprof.esm_config import ESM_TOKENS

    torch.manual_seed(seed)
    settings = dict(
        vocab_size=33,
        pad_token_id=1,
        mask_token_id=32,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        position_embedding_type="rotary",
        emb_layer_norm_before=False,
        token_dropout=True,
        layer_norm_eps=1e-5,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=1026,
    )
    esm = EsmForMaskedLM(EsmConfig(**{**settings, **config}))
    with torch.no_grad():
        for name, p in esm.named_parameters():
            if "inv_freq" not in name:
                p.add_(torch.randn_like(p) * 0.2)
    esm.save_pretrained(path)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(ESM_TOKENS) + "\n")
    EsmTokenizer(str(vocab)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(small_store, tmp_path_factory) -> Path:
    """The tiny multitask model trained 30 steps on `small_store` (a real checkpoint)."""
    from protprof.train import load_config, train

    out = tmp_path_factory.mktemp("tiny")
    values = {
        "store": small_store,
        "out_dir": out,
        "max_steps": 30,
        "eval_every": 10,
        "checkpoint_every": 30,
        "max_tokens": 2048,
        "max_len": 256,
        "warmup_steps": 5,
    }
    train(load_config(None, [f"{k}={v}" for k, v in values.items()]))
    return out / "checkpoint.pt"


@pytest.fixture
def gz_bytes():
    return lambda text: gzip.compress(text.encode())


def require_mounts() -> None:
    """Skip unless the tests may mount file systems (tmpfs, read-only binds, under the test's
    temporary folder, unmounted afterwards): that changes the system's mount table, so only
    under CI=true (a disposable machine) or with PROTPROF_TEST_MOUNTS=1."""
    if os.environ.get("CI") != "true" and os.environ.get("PROTPROF_TEST_MOUNTS") != "1":
        pytest.skip(
            "mounts a file system (root): set PROTPROF_TEST_MOUNTS=1 (or CI=true) to run it"
        )


def _mount_tmpfs(folder: Path, size: str) -> None:
    require_mounts()
    folder.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if run.returncode:
        print(f"cannot mount a tmpfs ({run.stderr.strip()})")
        pytest.skip(f"a full disk needs a tmpfs mount (root): {run.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB file system (tmpfs), unmounted afterwards."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    yield disk
    if subprocess.run(["umount", str(disk)]).returncode:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)
        pytest.fail(f"{disk}: a file was left open there (a failed save leaks its handle)")
