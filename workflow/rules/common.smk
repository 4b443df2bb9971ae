# Path helpers and input functions only. Parameters, option strings and the resource model live
# in protprof/workflow_params.py (tested); they are computed once here, when Snakemake parses the workflow,
# so a bad value fails at --dry-run naming it.
import os
import shlex

from protprof import workflow_params
from protprof.fetch import uniref_name

RESULTS = config.get("results", "results")
# The profile cache (may be shared by several workflows, a lab-wide folder); false: none.
CACHE = f"{RESULTS}/cache" if config["cache"] is None else config["cache"]
# `shards`, raised where needed so that no search job's estimated runtime exceeds
# max_job_hours (workflow_params.search_shards); the dry run says so.
N_SHARDS = workflow_params.search_shards(config)
SHARDS = [f"{k:04d}" for k in range(N_SHARDS)]
if workflow.is_main_process:
    logger.info(workflow_params.plan_summary(config))
PROFILE = config["profile"]
ENV = "../../envs/protprof.yaml"
# database_chunks K > 0: search each iteration as K jobs against database chunks (memory / K).
N_CHUNKS = config["database_chunks"]
CHUNKS = [f"{c:03d}" for c in range(N_CHUNKS)]
GUARD = config["leakage_guard"]
EVALUATION = config["evaluation"]
OBJECTIVES = config["train"]["objectives"]
SEEDS = config["train"]["seeds"]
SEARCH_THREADS = config["search"]["threads"]

# What the store is made of: queries searched against the database, alignment files imported,
# or both (then combined; a sequence given both ways keeps `alignments.prefer`'s profile).
QUERIES, ALIGNMENTS = workflow_params.check_sources(config)
INGEST_OPTIONS = workflow_params.ingest_options(config)
SEARCH_OPTIONS = workflow_params.search_options(config)
REUSE_OPTIONS = workflow_params.reuse_options(config)
ITERATIONS = workflow_params.iterations(config)
# Every rule's mem_mb and runtime (one table, keyed by rule name; see workflow_params.resources).
RESOURCES = workflow_params.resources(config)
EVALUATION_OPTIONS = workflow_params.evaluation_options(config)
# The alignment reference of the zero-shot task: searched once per store.
REFERENCE = f"{RESULTS}/evaluation/alignment_reference.npz"
EVALUATION_STORE = EVALUATION["store"] or f"{RESULTS}/store/profiles.zarr"
REFERENCE_INPUTS = [REFERENCE] if workflow_params.reference_needed(config) else []
LABELS = workflow_params.evaluation_labels(config)
TRAIN_LAUNCHER = workflow_params.train_launcher(config)
TRAIN_SLURM_EXTRA = workflow_params.train_slurm_extra(config)
TRAIN_RESOURCES = workflow_params.train_resources(config)
INIT_FROM_OPTION = workflow_params.init_from_option(config)
INIT_FROM_INPUTS = workflow_params.init_from_inputs(config)
workflow_params.check_training(config, store=f"{RESULTS}/store/profiles.zarr")
# uniref90 / uniref50 when `database` names UniProt's file: the workflow can fetch it.
UNIREF = uniref_name(config["database"]) if QUERIES else None

# Import jobs: each one's alignment files (found now, so a missing path fails the dry run);
# the store of the searched queries is combined with the imported ones when both are given.
IMPORT = workflow_params.alignment_section(config)
IMPORT_INPUTS = workflow_params.import_inputs(config) if ALIGNMENTS else []
IMPORT_OPTIONS = workflow_params.import_options(config) if ALIGNMENTS else ""
IMPORTED = [f"{RESULTS}/import/{k:04d}.zarr" for k in range(len(IMPORT_INPUTS))]
SEARCHED_STORE = f"{RESULTS}/store/" + (
    "searched.zarr" if ALIGNMENTS else "profiles.zarr"
)
# The plan leaves imported sequences out of the search when the alignment is preferred.
EXCLUDE_IMPORTED = IMPORTED if CACHE and IMPORT["prefer"] == "alignment" else []

# Evaluation needs the benchmark data; without it the workflow stops at training, and says so
# once, when the run starts (not in every job's log).
EVALUATE = bool(EVALUATION["tasks"]) and os.path.isdir(EVALUATION["data"])


onstart:
    if EVALUATION["tasks"] and not EVALUATE:
        logger.warning(
            f"protprof: evaluation skipped: benchmark data folder {EVALUATION['data']} "
            "not found (set evaluation.data)"
        )


def previous_state(wildcards):
    """The state a chunked iteration starts from (i0: the single-sequence models)."""
    return f"{RESULTS}/iterations/{wildcards.shard}/i{int(wildcards.iteration) - 1}/state.pkl"


def msa_option(wildcards):
    if not PROFILE["keep_msa"]:
        return ""
    msa_dir = shlex.quote(f"{RESULTS}/msas/{wildcards.shard}")
    return f"--msa-dir {msa_dir} --msa-format {PROFILE['msa_format']}"


def searched_shards(wildcards):
    """The shard stores this run searches: one per non-empty shard of the plan."""
    plan = checkpoints.plan_searches.get().output[0]
    shards = glob_wildcards(os.path.join(plan, "shards", "{shard}.fasta")).shard
    return expand(f"{RESULTS}/search/{{shard}}.zarr", shard=sorted(shards))


def ingest_inputs():
    """The query files, or what the leakage guard kept of them."""
    if GUARD["enabled"]:
        return [f"{RESULTS}/queries/guarded.fasta"]
    return config["queries"]


def exclude_option(wildcards, input):
    """`--exclude-stores` of the imported stores, when the plan leaves their sequences out."""
    stores = input.get("imported", [])
    return ("--exclude-stores " + " ".join(map(shlex.quote, stores))) if stores else ""


def alignment_paths():
    """The configured alignment paths, quoted for the shell."""
    return " ".join(shlex.quote(str(p)) for p in IMPORT["paths"])
