"""What the Snakemake workflow needs from Python, kept here so it is tested: the parameters a
config means (validated at parse time, so `--dry-run` names a bad value), the option strings
its rules pass to `protprof`, and the resource model that sizes its jobs.

Functions take the workflow's validated `config` dict. Nothing here imports torch or zarr:
Snakemake parses the workflow once per job.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
from typing import Any

from protprof.alignments.files import ImportJobs, ImportParams, discover, in_shard
from protprof.alignments.filters import FilterParams
from protprof.alignments.folder import MsaOutput
from protprof.alignments.profiles import ProfileParams
from protprof.alphabet import N_STANDARD, VOCAB_SIZE
from protprof.errors import ConfigError
from protprof.evaluation.settings import BenchmarkData, GuardParams, Limits
from protprof.jackhmmer import Preset, SearchParams, search_params
from protprof.model.config import PRESETS, ModelConfig
from protprof.params import from_config, option_string, schema_mismatch, schema_of
from protprof.queries.clusters import mmseqs_program
from protprof.queries.ingest import IngestParams, ShardParams
from protprof.search.family import ReuseParams

# Measured on the demo data (bench/RESULTS.md): pyhmmer holds ~3 bytes per database residue.
DB_BYTES_PER_RESIDUE = 3
WORKING_SET_MB = 1024
# Search cost per (query residue x database residue x iteration), CPU seconds: measured
# 1.5e-10 (demo) and 1.8e-10 (comparison) on this machine's cores, doubled for slower cluster
# cores. Runtimes get a further 1.5x margin.
SEARCH_SECONDS_PER_CELL = 3e-10
RUNTIME_MARGIN = 1.5
# A job's runtime limit: queues commonly allow 24 hours (config `max_job_hours`).
MAX_JOB_HOURS = 24
# The store holds 21 bytes per residue (tokens + profiles); assemble holds one shard at a time
# and writes it, so 2x. Measured: 6 shards of 5.9 M residues, peak RSS 275 MB.
STORE_BYTES_PER_RESIDUE = 21
# A gzip FASTA of proteins is ~2.5x smaller than the text (UniProt files); a plain FASTA has
# about one byte per residue (headers make it an overestimate, the safe side for resources).
GZIP_RATIO = 2.5
# The zero-shot assays' wild types that `protprof reference` searches: 6 sequences of 1,234
# residues together (`evaluation.datasets.variant_wild_types` on the benchmark data).
REFERENCE_RESIDUES = 1234


def ingest(config: dict[str, Any]) -> IngestParams:
    """The config's ingest parameters (the dataclass validates them); `split_method: mmseqs`
    without MMseqs2 is refused here, so `--dry-run` says so before any job runs."""
    params: IngestParams = from_config(IngestParams, config["ingest"])
    if params.split_method == "mmseqs":
        mmseqs_program()
    return params


def search(config: dict[str, Any]) -> SearchParams:
    """The config's search parameters: its preset with the non-null overrides."""
    section = config["search"]
    overrides = {k: v for k, v in section.items() if k in SearchParams.__dataclass_fields__}
    return search_params(section.get("preset", Preset.preset), **overrides)


def profile(config: dict[str, Any]) -> ProfileParams:
    """The config's profile parameters."""
    return from_config(ProfileParams, config["profile"])


def reuse(config: dict[str, Any]) -> ReuseParams:
    """The config's family-scale search settings, refused where the workflow cannot run them:
    reuse needs the profile cache (the plan cuts the jobs between families, and assembly
    finds representatives' and members' profiles there), MMseqs2 for more than one job, and a
    whole database per job (a family's searches run one after another in one process)."""
    params: ReuseParams = from_config(ReuseParams, config["search"])
    if params.mode != "none":
        if config.get("cache") is False:
            raise ConfigError(
                f"search.reuse: {params.mode} needs the profile cache (cache: false)"
            )
        if config.get("database_chunks"):
            raise ConfigError(
                f"search.reuse: {params.mode} cannot run with database_chunks > 0 (members wait "
                "on their representative's whole-database search within one job)"
            )
        if config.get("shards", 1) > 1 and shutil.which("mmseqs") is None:
            raise ConfigError(
                f"search.reuse: {params.mode} with shards > 1 keeps families in one job with "
                "MMseqs2 clustering: install it (Debian: apt-get install mmseqs2) or set shards: 1"
            )
    return params


def reuse_options(config: dict[str, Any]) -> str:
    """The `--reuse ...` options of `protprof plan`, `search` and `assemble`."""
    return option_string(reuse(config))


def ingest_options(config: dict[str, Any]) -> str:
    """The `protprof ingest` / `assemble` options of the config."""
    return option_string(ingest(config))


def search_options(config: dict[str, Any]) -> str:
    """Every search and profile option, fully resolved (the preset's values written out, so a
    job's command line says exactly what it ran)."""
    parts = [
        option_string(from_config(Preset, config["search"])),
        option_string(search(config)),
        option_string(profile(config)),
        filter_options(config),
    ]
    return " ".join(p for p in parts if p)


def iterations(config: dict[str, Any]) -> int:
    """Iterations the chunked path runs (its DAG waits on the last one's state)."""
    return search(config).iterations


def file_residues(path: str) -> float:
    """Residues in a FASTA(.gz) file, estimated from its size (0 if it is not there yet)."""
    size = os.path.getsize(path) if os.path.exists(path) else 0
    return size * GZIP_RATIO if path.endswith(".gz") else size


def database_residues(config: dict[str, Any]) -> float:
    """`database_residues` when given (to plan a run before the file exists), else estimated."""
    if not config.get("database"):  # alignments only: nothing is searched
        return 0.0
    return config.get("database_residues") or file_residues(config["database"])


def _query_residues(config: dict[str, Any]) -> float:
    return config.get("query_residues") or sum(file_residues(q) for q in config["queries"])


def query_residues_per_shard(config: dict[str, Any]) -> float:
    """Query residues per search job: `query_residues` or the files' estimate, per shard."""
    return _query_residues(config) / search_shards(config)


def search_mem_mb(config: dict[str, Any]) -> int:
    """A search job holds the database (or one of its chunks) plus a working set."""
    chunk = database_residues(config) / max(1, config["database_chunks"])
    return int(WORKING_SET_MB + DB_BYTES_PER_RESIDUE * chunk / 1e6)


def _search_minutes(config: dict[str, Any], query_residues: float) -> int:
    """A whole search job runs every iteration; a chunk job one iteration on 1/K of the
    database. With reuse the estimate stays one whole-database search per query (the safe
    side: how many families the queries hold is known only after searching)."""
    k = config["database_chunks"]
    cells = query_residues * database_residues(config) / max(1, k)
    cells *= 1 if k else iterations(config)
    seconds = cells * SEARCH_SECONDS_PER_CELL / config["search"]["threads"]
    return max(10, math.ceil(RUNTIME_MARGIN * seconds / 60))


def max_job_minutes(config: dict[str, Any]) -> int:
    """`max_job_hours` (a queue's time limit) in minutes."""
    return math.floor(60 * config.get("max_job_hours", MAX_JOB_HOURS))


def search_shards(config: dict[str, Any]) -> int:
    """`shards`, raised until the estimated runtime of every search job fits `max_job_hours`.

    Raises:
        ConfigError: one query of `ingest.max_length` residues alone would exceed it: only
            more database chunks or threads per job can shorten that.
    """
    if not config.get("queries"):  # alignments only: no search jobs
        return config["shards"]
    limit, total = max_job_minutes(config), _query_residues(config)
    max_length = config["ingest"].get("max_length", IngestParams.max_length)
    one_query = _search_minutes(config, max_length)
    if one_query > limit:
        raise ConfigError(
            f"max_job_hours: {limit / 60:g} h is shorter than the estimated search of one "
            f"query of ingest.max_length residues ({one_query / 60:.1f} h); raise "
            "database_chunks or search.threads, or max_job_hours"
        )
    shards = config["shards"]
    minutes = _search_minutes(config, total / shards)
    if minutes > limit:
        shards = max(shards, math.ceil(shards * minutes / limit))
        while _search_minutes(config, total / shards) > limit:  # the estimate rounds up
            shards += 1
    return shards


def search_runtime_min(config: dict[str, Any]) -> int:
    """The estimated runtime of a search job (whole shard, or one chunk and iteration)."""
    return _search_minutes(config, query_residues_per_shard(config))


def plan_summary(config: dict[str, Any]) -> str:
    """One line for the dry run: the search jobs' size against `max_job_hours`."""
    shards, limit = search_shards(config), max_job_minutes(config)
    raised = (
        f" (raised from shards: {config['shards']} so that none exceeds it)"
        if shards != config["shards"]
        else ""
    )
    return (
        f"protprof plan: {shards} search shards{raised}; the longest search job is estimated "
        f"at {search_runtime_min(config) / 60:.1f} h of max_job_hours {limit / 60:g}"
    )


def reference_mem_mb(config: dict[str, Any]) -> int:
    """`protprof reference` searches the zero-shot wild types against the whole database in
    one process (never a chunk, whatever `database_chunks` is), plus a working set."""
    return int(WORKING_SET_MB + DB_BYTES_PER_RESIDUE * database_residues(config) / 1e6)


def reference_runtime_min(config: dict[str, Any]) -> int:
    """Every iteration of the wild types' search on the whole database, at the search jobs'
    rate and margin, on the evaluation's threads."""
    cells = REFERENCE_RESIDUES * database_residues(config) * iterations(config)
    seconds = cells * SEARCH_SECONDS_PER_CELL / config["evaluation"]["threads"]
    return max(10, math.ceil(RUNTIME_MARGIN * seconds / 60))


def assemble_mem_mb(config: dict[str, Any]) -> int:
    """Memory of the assemble job, which holds one shard at a time."""
    shard = query_residues_per_shard(config)
    return int(WORKING_SET_MB + 2 * STORE_BYTES_PER_RESIDUE * shard / 1e6)


def evaluation_options(config: dict[str, Any]) -> str:
    """The `protprof evaluate` options of the config.

    Raises:
        ConfigError: a task name the registry does not know.
    """
    from protprof.evaluation import registry

    e = config["evaluation"]
    unknown = [t for t in e["tasks"] if t not in registry.names()]
    if unknown:
        raise ConfigError(
            f"evaluation.tasks: unknown task(s) {unknown} (choose from "
            f"{', '.join(registry.names())})"
        )
    return (
        f"{option_string(from_config(BenchmarkData, e))} --tasks {' '.join(e['tasks'])} "
        f"{option_string(from_config(Limits, e))}"
    )


def reference_needed(config: dict[str, Any]) -> bool:
    """Whether an evaluation task scores against the alignment reference (the workflow then
    searches its sequences once per store)."""
    from protprof.evaluation import registry

    return any(
        registry.get(t).reference_sequences is not None for t in config["evaluation"]["tasks"]
    )


def evaluation_labels(config: dict[str, Any]) -> dict[str, str]:
    """Each objective's arm label in reports (`evaluation.label`, `{objective}` filled).

    Raises:
        ConfigError: the template names another field, is malformed, or gives two objectives
            the same label (their reports would merge into one arm).
    """
    template = str(config["evaluation"].get("label", "{objective}"))
    try:
        labels = {o: template.format(objective=o) for o in config["train"]["objectives"]}
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"evaluation.label {template!r}: only {{objective}} may be filled in ({e})"
        ) from None
    if len(set(labels.values())) < len(labels):
        raise ConfigError(
            f"evaluation.label {template!r} gives several objectives one label: include "
            "{objective}"
        )
    return labels


def check_training(config: dict[str, Any], store: str) -> None:
    """Validate the training YAML with every objective and seed the workflow will train, so a
    bad key or value fails at `--dry-run`, naming it, before any search runs."""
    from protprof.train.config import load_config

    train = config["train"]
    for objective in train["objectives"]:
        for seed in train["seeds"]:
            settings = load_config(
                train["config"],
                [
                    f"store={store}",
                    f"objective={objective}",
                    f"seed={seed}",
                    f"devices={train['devices']}",
                    f"nodes={train.get('nodes', 1)}",
                    *init_from_override(config),
                ],
            )
            settings.check_init_from()


def init_from_override(config: dict[str, Any]) -> list[str]:
    """The trainer's `init_from=DIR` setting when the workflow's `train.init_from` is set (it
    overrides the training YAML's); nothing otherwise."""
    directory = config["train"].get("init_from", "")
    return [f"init_from={directory}"] if directory else []


def init_from_option(config: dict[str, Any]) -> str:
    """`init_from_override` as shell words for the train command."""
    return " ".join(shlex.quote(word) for word in init_from_override(config))


def init_from_inputs(config: dict[str, Any]) -> list[str]:
    """The files of `train.init_from` (config, weights, tokenizer), inputs of the training
    jobs: another directory, or a file in it replaced by a newer one, retrains."""
    directory = config["train"].get("init_from", "")
    if not directory or not os.path.isdir(directory):
        return [f"{directory}/config.json"] if directory else []  # missing: dry run says so
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if os.path.isfile(os.path.join(directory, name)) and not name.startswith(".")
    )


# The c10d rendezvous port on the first node of a multi-node training job (torchrun's default
# master port).
RDZV_PORT = 29500
# The first node of the SLURM allocation, evaluated by the job's shell (sed, not head: head's
# early exit can fail the pipe under `set -o pipefail`).
FIRST_NODE = '$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)'


def torchrun_command(nodes: int, per_node: int, endpoint: str, rdzv_id: str) -> str:
    """torchrun for `nodes` nodes of `per_node` processes meeting at `endpoint` (host:port)
    through c10d: run once on each node, by srun or by hand, with the same arguments."""
    return (
        f"torchrun --nnodes {nodes} --nproc-per-node {per_node} --rdzv-backend c10d "
        f"--rdzv-id {rdzv_id} --rdzv-endpoint {endpoint} -m protprof.cli"
    )


def train_launcher(config: dict[str, Any]) -> str:
    """One process on CPU or one GPU; torchrun with one process per GPU beyond that; on
    several nodes, srun starts one torchrun per node (one per GPU, or one on CPU nodes), all
    meeting on the allocation's first node."""
    devices, nodes = config["train"]["devices"], config["train"].get("nodes", 1)
    if nodes > 1:
        torchrun = torchrun_command(
            nodes, max(devices, 1), f"{FIRST_NODE}:{RDZV_PORT}", "$SLURM_JOB_ID"
        )
        return f"srun --nodes {nodes} --ntasks-per-node 1 {torchrun}"
    if devices > 1:
        return f"torchrun --standalone --nproc-per-node {devices} -m protprof.cli"
    return "protprof"


def train_resources(config: dict[str, Any]) -> dict[str, Any]:
    """The training job's node count and tasks. A multi-node job is an `mpi` job to the
    SLURM executor: it asks for one task per node and runs the rule's own srun instead of
    wrapping the command in `srun -n1` (which would start one torchrun on one node)."""
    devices, nodes = config["train"]["devices"], config["train"].get("nodes", 1)
    if nodes > 1:
        # GPUs per node go in slurm_extra: with the `gpu` resource the executor would turn
        # `tasks` into --ntasks-per-gpu.
        return {"nodes": nodes, "tasks": nodes, "mpi": "srun", "gpu": 0}
    return {"nodes": 1, "gpu": devices}


# Seconds before its time limit that SLURM signals a training job (SIGUSR1): time to finish the
# step under way and save last.pt, where KillWait (30 s by default) after SIGTERM may be short.
TRAIN_STOP_WARNING_S = 600


def train_slurm_extra(config: dict[str, Any]) -> str:
    """The training job's SLURM options: the early stop signal, and the GPUs (none on CPU;
    per node on several nodes, one task per node)."""
    devices, nodes = config["train"]["devices"], config["train"].get("nodes", 1)
    options = [f"--signal=USR1@{TRAIN_STOP_WARNING_S}"]
    if nodes > 1:
        options.append("--ntasks-per-node=1")
        if devices:
            options.append(f"--gpus-per-node={devices}")
    elif devices:
        options.append(f"--gpus={devices}")
    return "'" + " ".join(options) + "'"


# The throughput anchor of the GPU plans: NVIDIA BioNeMo's ESM-2 650M trains at ~42,700
# tokens/s per A100 (bf16, ~59 % MFU). Other shapes are scaled by their training FLOPs per
# token, i.e. at the same MFU: smaller models reach less, so for them the estimate is a lower
# bound on GPU-hours.
ANCHOR_MODEL = "esm2-650m"
ANCHOR_TOKENS_PER_S = 42_700
PLAN_SEQUENCE_TOKENS = 1024  # ESM-2's crop (max_len 1022 + 2 special tokens)


def model_parameters(model: ModelConfig, vocabulary: int = VOCAB_SIZE) -> int:
    """The encoder's parameters counted from its shape (the tied MLM decoder once), as
    `ProteinEncoder.n_parameters` counts them, without building it."""
    d, f = model.d_model, model.d_ff
    block = 4 * d * d + 2 * d * f + 9 * d + f  # attention, feed-forward, biases, 2 LayerNorms
    heads = vocabulary + d * d + 3 * d + N_STANDARD * d + N_STANDARD  # MLM transform, profile
    return vocabulary * d + model.n_layers * block + 2 * d + heads


def train_flops_per_token(model: ModelConfig, tokens: int = PLAN_SEQUENCE_TOKENS) -> float:
    """Training FLOPs per token: 6 per parameter (forward and backward) plus attention's
    scores and weighted sums over a `tokens`-long sequence (12 x layers x tokens x width)."""
    return 6 * model_parameters(model) + 12 * model.n_layers * tokens * model.d_model


def train_gpu_hours(model: ModelConfig, tokens: float) -> float:
    """GPU-hours to train `model` on `tokens` at the anchor's MFU (A100-class)."""
    anchor = train_flops_per_token(PRESETS[ANCHOR_MODEL])
    rate = ANCHOR_TOKENS_PER_S * anchor / train_flops_per_token(model)
    return tokens / rate / 3600


# The workflow config's sections made of params dataclasses: (section, dataclass, overrides).
# `search:`'s SearchParams keys are null by default: the preset's value.
SCHEMA_SECTIONS: tuple[tuple[str | None, Any, bool], ...] = (
    ("ingest", IngestParams, False),
    ("search", Preset, False),
    ("search", SearchParams, True),
    ("search", ReuseParams, False),
    ("profile", ProfileParams, False),
    ("profile", MsaOutput, False),
    ("filters", FilterParams, False),
    ("alignments", ImportParams, False),
    ("alignments", ImportJobs, False),
    (None, ShardParams, False),
    ("leakage_guard", BenchmarkData, False),
    ("leakage_guard", GuardParams, False),
    ("evaluation", BenchmarkData, False),
    ("evaluation", Limits, False),
)


def schema_defaults_mismatch(schema: dict[str, Any]) -> list[str]:
    """Where the workflow's JSON schema disagrees with the params dataclasses: each key's
    type or choices, bounds and default."""
    problems = []
    for section, cls, overrides in SCHEMA_SECTIONS:
        problems += schema_mismatch(schema, section, cls, overrides)
    return problems


def filters(config: dict[str, Any]) -> FilterParams:
    """The config's alignment filters (`filters:`; all off by default), refused with search
    reuse (members' profiles come from their family's alignment, which filters never see)."""
    params: FilterParams = from_config(FilterParams, config.get("filters") or {})
    if params.active and config["search"].get("reuse", "none") != "none":
        raise ConfigError(
            "filters: alignment filters do not combine with search.reuse; use one or the other"
        )
    return params


def filter_options(config: dict[str, Any]) -> str:
    """The `--max-seqs ...` options of the filters that are on (none: an empty string, so the
    command lines of a config without filters stay as they were)."""
    return option_string(filters(config))


def alignment_section(config: dict[str, Any]) -> dict[str, Any]:
    """The `alignments:` section with its defaults (paths empty: no import)."""
    defaults: dict[str, Any] = {"paths": []}
    for cls in (ImportParams, ImportJobs):
        defaults |= {k: v["default"] for k, v in schema_of(cls).items()}
    return {**defaults, **(config.get("alignments") or {})}


def import_params(config: dict[str, Any]) -> ImportParams:
    """How the config's alignment files are found and read (validated)."""
    return from_config(ImportParams, alignment_section(config))


def check_sources(config: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the config has queries to search and alignments to import; refuses a config
    with neither, queries without a database, and alignments only with an evaluation task
    that needs the alignment reference (it searches the database the store's queries were
    searched against)."""
    queries = bool(config.get("queries"))
    alignments = bool(alignment_section(config)["paths"])
    if not (queries or alignments):
        raise ConfigError("config: give queries, alignments.paths, or both")
    if queries and not config.get("database"):
        raise ConfigError("config: queries are searched against a database: set database")
    if not queries and reference_needed(config):
        raise ConfigError(
            "config: evaluation tasks with a zero-shot alignment reference search the database "
            "the store's queries were searched against; a store of imported alignments has "
            "none: drop those tasks (e.g. variants) or give queries and a database"
        )
    return queries, alignments


def import_options(config: dict[str, Any]) -> str:
    """Every `protprof import` option of the config but the paths, shard and cache."""
    parts = [
        option_string(import_params(config)),
        option_string(profile(config)),
        filter_options(config),
    ]
    return " ".join(p for p in parts if p)


def import_inputs(config: dict[str, Any]) -> list[list[str]]:
    """Each import job's alignment files (its Snakemake input: a new or changed file reruns
    only its job). Found when Snakemake parses the workflow: a missing path or an OpenFold
    chain without a picked file fails the dry run, naming it."""
    section = alignment_section(config)
    n_jobs = from_config(ImportJobs, section).jobs  # checked: an integer >= 1
    found = discover(section["paths"], import_params(config)).found
    return [
        [str(p) for f in found if in_shard(f, (k, n_jobs)) for p in f.paths] for k in range(n_jobs)
    ]


# Import cost: bench_import measured ~5-16 alignments/s/core on OpenFold's and ESM's real files
# (bench/RESULTS.md); 2/s/core leaves room for UniRef90-deep Stockholm files and slow disks.
IMPORT_ALIGNMENTS_PER_CORE_SECOND = 2.0


def import_runtime_min(n_files: int, threads: int) -> int:
    """Minutes for an import job of `n_files` alignment files on `threads` cores."""
    seconds = n_files / (IMPORT_ALIGNMENTS_PER_CORE_SECOND * max(1, threads))
    return max(30, math.ceil(seconds / 60 * RUNTIME_MARGIN))


# Training jobs' host memory: a base for the data loader, the store's arrays and torch, plus
# 16 bytes per parameter in each process on a node (fp32 weights, gradients and AdamW's two
# moments; on GPUs the CPU copy a checkpoint is gathered into). Runtime: the GPU-hours model
# above (a lower bound for models smaller than the anchor) with a 3x margin; on CPU nodes there
# is no measured rate, so a training job asks for the queue's limit (it saves on SLURM's early
# signal and a rerun resumes).
TRAIN_BASE_MB = 8192
TRAIN_BYTES_PER_PARAMETER = 16
TRAIN_RUNTIME_MARGIN = 3.0


def _training_settings(config: dict[str, Any]) -> Any:
    """The training YAML as the workflow runs it (objective and seed do not change a job's
    size)."""
    from protprof.train.config import load_config

    train = config["train"]
    overrides = [
        "store=-",
        f"devices={train['devices']}",
        f"nodes={train.get('nodes', 1)}",
        *init_from_override(config),
    ]
    return load_config(train["config"], overrides)


def train_job(config: dict[str, Any]) -> dict[str, int]:
    """A training job's `mem_mb` (by the model's parameters and the processes per node) and
    `runtime` (by its model, steps and tokens per step on its GPUs; the queue's limit on CPU),
    at most `max_job_hours`."""
    settings = _training_settings(config)
    devices, nodes = config["train"]["devices"], config["train"].get("nodes", 1)
    model = settings.model_config()
    per_process = TRAIN_BYTES_PER_PARAMETER * model_parameters(model) / 1e6
    mem_mb = math.ceil(TRAIN_BASE_MB + max(devices, 1) * per_process)
    limit = max_job_minutes(config)
    if not devices:
        return {"mem_mb": mem_mb, "runtime": limit}
    world = devices * nodes
    step_tokens = settings.global_tokens or settings.max_tokens * settings.accum_steps * world
    hours = train_gpu_hours(model, settings.max_steps * step_tokens) / world
    minutes = math.ceil(60 * hours * TRAIN_RUNTIME_MARGIN)
    return {"mem_mb": mem_mb, "runtime": min(limit, max(60, minutes))}


# Jobs whose size does not grow with the data: (mem_mb, runtime in minutes).
FIXED_JOBS = {
    "fetch_evaluation_data": (1024, 120),
    "guard_queries": (2048, 60),
    "ingest_queries": (2048, 30),
    "prepare_database": (2048, 120),
    "split_database": (4096, 120),
    "init_state": (2048, 30),
    "summarise_store": (1024, 10),
    "evaluate_model": (8192, 120),
    "compare_models": (1024, 10),
}
# Floor of the jobs that hold one shard's alignments or store.
SHARD_JOB_MIN_MB = 4096


def resources(config: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Every rule's `mem_mb` and `runtime` (minutes), keyed by rule name; the rules read
    theirs from this table. `import_alignments` has memory only (its runtime is per job,
    `import_runtime_min`)."""
    table = {rule: {"mem_mb": m, "runtime": t} for rule, (m, t) in FIXED_JOBS.items()}
    limit = max_job_minutes(config)
    table["fetch_database"] = {"mem_mb": 1024, "runtime": limit}  # resumable: a rerun continues
    if config.get("queries"):
        search = {"mem_mb": search_mem_mb(config), "runtime": search_runtime_min(config)}
        reference = {"mem_mb": reference_mem_mb(config), "runtime": reference_runtime_min(config)}
        store = assemble_mem_mb(config)
    else:  # alignments only: no search, no reference
        search, reference, store = {"mem_mb": 0, "runtime": 0}, {"mem_mb": 0, "runtime": 0}, 4096
    shard = {"mem_mb": max(SHARD_JOB_MIN_MB, store), "runtime": 60}
    table |= {
        "search_shard": search,
        "search_chunk": search,
        "alignment_reference": reference,
        "plan_searches": {"mem_mb": store, "runtime": 30},
        "assemble_store": {"mem_mb": store, "runtime": 60},
        "combine_store": {"mem_mb": store, "runtime": 60},
        "merge_iteration": shard,
        "finish_shard": dict(shard),
        "import_alignments": {"mem_mb": 4096},
        "train_model": train_job(config),
    }
    return table
