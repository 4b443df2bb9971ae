"""Helpers shared by the test modules: paths, real inputs cut from the demo data, the CLI and
Snakemake in a child process, and checks used by several modules.

Test modules import them as `from helpers import ...` (pytest puts tests/ on sys.path); the
fixtures stay in conftest.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from protprof.cli import main
from protprof.queries.fasta import read_fasta
from protprof.store.zarr_store import StoreData, open_store

ROOT = Path(__file__).resolve().parents[1]
DEMO_DB = ROOT / "data" / "demo" / "uniprot_5k.fasta.gz"
DEMO_QUERIES = ROOT / "data" / "demo" / "queries_150.fasta.gz"
SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_DATA = ROOT / "tests" / "data"
# A committed store (see tests/data/make_tiny_store.py): tests about what reads a store use it
# instead of searching.
TINY_STORE = TEST_DATA / "tiny.zarr"
CLI = [sys.executable, "-m", "protprof.cli"]
BIN = Path(sys.executable).parent
SNAKEMAKE = shutil.which("snakemake", path=str(BIN)) or shutil.which("snakemake")


def write_queries(path: Path, n: int, start: int = 0) -> Path:
    """Write `n` real demo query records (from index `start`) as plain FASTA."""
    records = read_fasta(DEMO_QUERIES)[start : start + n]
    path.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    return path


def esm_directory(path: Path, layers=2, width=64, heads=4, seed=0, **config) -> Path:
    """A random `EsmForMaskedLM` saved as `transformers` saves one: ESM-2's settings and
    vocabulary, every weight random (LayerNorms too, so no parameter can be mis-mapped
    unnoticed)."""
    import torch
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    from protprof.model.esm_config import ESM_TOKENS

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


def require_mounts() -> None:
    """Skip unless the tests may mount file systems (tmpfs, read-only binds, under the test's
    temporary folder, unmounted afterwards): that changes the system's mount table, so only
    under CI=true (a disposable machine) or with PROTPROF_TEST_MOUNTS=1."""
    if os.environ.get("CI") != "true" and os.environ.get("PROTPROF_TEST_MOUNTS") != "1":
        pytest.skip(
            "mounts a file system (root): set PROTPROF_TEST_MOUNTS=1 (or CI=true) to run it"
        )


def one_error_line(capsys, *expected: str) -> str:
    """The single stderr line of a refused command, checked to contain every `expected`."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def assert_same_arrays(a: Path, b: Path) -> None:
    """Two stores hold the same ids and arrays, element for element."""
    x, y = open_store(a).read_all(), open_store(b).read_all()
    assert x.ids == y.ids
    for name in ("tokens", "profiles", "offsets", "n_hits", "neff", "split"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), name)


def assert_same_rows(whole: StoreData, part: StoreData, splits: bool = True) -> None:
    """Every sequence of `part` is in `whole` with the same tokens, profile, hits and Neff (and
    split, unless `splits` is False), whatever the order of the rows."""
    row = {query: i for i, query in enumerate(whole.ids)}
    assert part.ids and set(part.ids) <= set(row)
    for j, query in enumerate(part.ids):
        i = row[query]
        ours, theirs = slice(*whole.offsets[i : i + 2]), slice(*part.offsets[j : j + 2])
        np.testing.assert_array_equal(whole.tokens[ours], part.tokens[theirs], query)
        np.testing.assert_array_equal(whole.profiles[ours], part.profiles[theirs], query)
        assert (whole.n_hits[i], whole.neff[i]) == (part.n_hits[j], part.neff[j]), query
        assert not splits or whole.split[i] == part.split[j], query


def build(queries: Path, out: Path, *options: str) -> None:
    """`protprof build` (in this process) of `queries` against the demo database, -N 2."""
    argv = [
        "-q",
        "build",
        str(queries),
        "--database",
        str(DEMO_DB),
        "--out",
        str(out),
        "--threads",
        "2",
        "-N",
        "2",
        *options,
    ]
    assert main(argv) == 0


# The workflow, run by Snakemake in a child process.


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the project's Snakefile in `workdir` on 2 cores; output captured."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        [
            SNAKEMAKE,
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--cores",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def write_config(workdir: Path, objectives=("multitask",), test="basic", **extra) -> None:
    """One of the runnable `.test/` configurations, its paths made absolute and results kept
    in `workdir/results`, with `extra` top-level keys."""
    config = yaml.safe_load((ROOT / f".test/config-{test}.yaml").read_text())
    config["queries"] = [str(ROOT / q) for q in config["queries"]]
    config["database"] = str(ROOT / config["database"])
    config["train"] = {
        **config["train"],
        "config": str(ROOT / config["train"]["config"]),
        "objectives": list(objectives),
    }
    config["results"] = "results"
    shutil.copy(ROOT / config["queries"][0], workdir / "queries.fasta")
    (workdir / "config.yaml").write_text(yaml.safe_dump({**config, **extra}))


def set_queries(workdir: Path, queries: Path, **search) -> None:
    """Point `workdir`'s config at `queries`, with `search` settings changed."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["queries"] = [str(queries)]
    config["search"] = {**config["search"], **search}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def run_until_store(workdir: Path) -> dict:
    """Run the workflow up to the store; its search plan (plan.json)."""
    run = snakemake(workdir, "results/store/profiles.zarr")
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads((workdir / "results/plan/plan.json").read_text())


def job_counts(stdout: str) -> dict[str, int]:
    """The 'job  count' table of a Snakemake dry run."""
    counts = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


def commands(stdout: str) -> dict[str, list[list[str]]]:
    """Each rule's shell commands in a dry run's output (`-p`), split as the shell would."""
    found: dict[str, list[list[str]]] = {}
    rule = ""
    for line in stdout.splitlines():
        if line.startswith(("rule ", "checkpoint ")) and line.endswith(":"):
            rule = line.split()[1][:-1]
        elif line.startswith("Shell command: ") and not line.endswith("None"):
            found.setdefault(rule, []).append(shlex.split(line.removeprefix("Shell command: ")))
    return found


# Processes of a local SLURM cluster's jobs.


def slurm_job_pids(*words: str) -> list[int]:
    """PIDs of the processes of the local cluster's running jobs, as SLURM lists them
    (`scontrol listpids`: only processes the cluster started for a job of its own), whose
    command line contains every one of `words`. No process outside those jobs is considered."""
    jobs = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True
    ).stdout.split()
    pids = []
    for job in jobs:
        listed = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True)
        for line in listed.stdout.splitlines()[1:]:  # PID JOBID STEPID LOCALID GLOBALID
            pid = line.split()[0] if line.split() else ""
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):  # ended meanwhile
                continue
            if pid.isdigit() and all(word in argv for word in words):
                pids.append(int(pid))
    return pids


def kill_pids(pids: list[int]) -> None:
    """SIGKILL each of `pids`; one already gone is fine."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# Checkpoints that protprof must refuse.


def checkpoint_state(seed: int = 0) -> dict:
    """A real checkpoint's contents: the tiny model, random, at step 7."""
    import torch

    from protprof.model.checkpoint import model_state
    from protprof.model.config import PRESETS
    from protprof.model.encoder import ProteinEncoder

    torch.manual_seed(seed)
    return model_state(ProteinEncoder(PRESETS["tiny"]), {"objective": "mlm"}, step=7)


def write_bad(kind: str, path: Path) -> Path:
    """A file that is not a usable protprof checkpoint, of the given kind (a key of BAD)."""
    import torch

    from protprof.model.checkpoint import save_checkpoint

    good = checkpoint_state()
    if kind == "text":
        path.write_text("model_config: tiny\n")
    elif kind == "tensor":
        torch.save(torch.randn(3, 4), path)
    elif kind == "foreign dict":
        torch.save({"state_dict": good["model"], "epoch": 3}, path)  # e.g. another trainer's
    elif kind == "truncated":
        save_checkpoint(path, good)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "nan weights":
        good["model"]["blocks.0.ff.0.weight"][3, 5] = float("nan")
        save_checkpoint(path, good)
    elif kind == "inf weights":
        good["model"]["embed.weight"][0, 0] = float("inf")
        save_checkpoint(path, good)
    elif kind == "flipped bit":  # a finite, wrong weight: only the archive's CRC tells
        save_checkpoint(path, good)
        with zipfile.ZipFile(path) as archive:
            member = max(archive.infolist(), key=lambda m: m.file_size)
        data = bytearray(path.read_bytes())
        head = member.header_offset  # local header: 30 bytes, then the name and the extra
        name, extra = (int.from_bytes(data[head + k : head + k + 2], "little") for k in (26, 28))
        start = head + 30 + name + extra
        data[start + 4 * (member.file_size // 8)] ^= 1  # a float32's lowest mantissa bit
        path.write_bytes(bytes(data))
    elif kind == "other shape":
        good["model_config"]["d_model"] = 128
        save_checkpoint(path, good)
    return path


BAD = {  # kind: what the one line must say
    "text": "not a protprof checkpoint (not a PyTorch archive)",
    "tensor": "not a protprof checkpoint (no model_config, model, config, step; found Tensor)",
    "foreign dict": "not a protprof checkpoint (no model_config, model, config, step; found a "
    "dict without them)",
    "truncated": "the checkpoint is truncated or corrupt",
    "nan weights": "the weights hold NaN or inf (1 of 35 tensors, first blocks.0.ff.0.weight); "
    "refusing a corrupt model",
    "inf weights": "the weights hold NaN or inf (1 of 35 tensors, first embed.weight); refusing "
    "a corrupt model",
    "other shape": "the weights do not fit the checkpoint's model_config",
    "flipped bit": "the checkpoint is corrupt (",
}
