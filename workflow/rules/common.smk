# Path helpers and resource estimates only; the work is done by `protprof` subcommands.
import math
import os
import sys

RESULTS = config.get("results", "results")
SHARDS = [f"{k:04d}" for k in range(config["shards"])]
SEARCH = config["search"]
PROFILE = config["profile"]
ENV = "../../envs/protprof.yaml"
# database_chunks K > 0: search each iteration as K jobs against database chunks (memory / K).
N_CHUNKS = config.get("database_chunks", 0)
CHUNKS = [f"{c:03d}" for c in range(N_CHUNKS)]
GUARD = config["leakage_guard"]
EVALUATION = config["evaluation"]
OBJECTIVES = config["train"]["objectives"]
SEEDS = config["train"]["seeds"]
# Evaluation needs the benchmark data; without it the workflow stops at training, and says so.
EVALUATE = bool(EVALUATION["tasks"])
if EVALUATE and not os.path.isdir(EVALUATION["data"]):
    EVALUATE = False
    print(f"protprof: evaluation skipped: benchmark data folder {EVALUATION['data']} not found "
          "(set evaluation.data)", file=sys.stderr)
ITERATIONS = SEARCH["iterations"] or (1 if SEARCH["preset"] == "alphafold" else 5)

# Measured on the demo data (bench/RESULTS.md): pyhmmer holds ~3 bytes per database residue.
DB_BYTES_PER_RESIDUE = 3
SEARCH_WORKING_SET_MB = 1024
# Search cost per (query residue x database residue x iteration), CPU seconds, measured
# 1.5e-10 on this machine's 2 cores; doubled for slower cluster cores.
SEARCH_SECONDS_PER_CELL = 3e-10
# assemble_store holds one shard at a time: 21 store bytes per residue (tokens + profiles),
# doubled for the write path. Measured: 6 shards of 5.9M residues, peak RSS 275 MB.
STORE_BYTES_PER_RESIDUE = 21


def database_residues(path):
    """Estimate database residues from its file size (gzip FASTA compresses ~2.5x)."""
    size = os.path.getsize(path) if os.path.exists(path) else 0
    return size * 2.5 if path.endswith(".gz") else size


def query_residues_per_shard():
    total = config.get("query_residues") or sum(database_residues(q) for q in config["queries"])
    return min(total, config["ingest"]["max_length"] * 1e6) / len(SHARDS)


def target_residues():
    """The database's residue count: config `database_residues` when given (e.g. to plan a
    UniRef90 run in a dry run before the file is there), else estimated from the file."""
    return config.get("database_residues") or database_residues(config["database"])


def search_mem_mb(wildcards):
    db = target_residues() / max(1, N_CHUNKS)
    return int(SEARCH_WORKING_SET_MB + DB_BYTES_PER_RESIDUE * db / 1e6)


def assemble_mem_mb(wildcards):
    shard = query_residues_per_shard()
    return int(SEARCH_WORKING_SET_MB + 2 * STORE_BYTES_PER_RESIDUE * shard / 1e6)


def search_runtime_min(wildcards):
    # A whole search job runs every iteration; a chunk job one iteration against 1/K of it.
    iterations = 1 if N_CHUNKS else ITERATIONS
    db = target_residues() / max(1, N_CHUNKS)
    cells = query_residues_per_shard() * db * iterations
    seconds = cells * SEARCH_SECONDS_PER_CELL / SEARCH["threads"]
    return max(10, math.ceil(1.5 * seconds / 60))


def previous_state(wildcards):
    """The state a chunked iteration starts from (i0: the single-sequence models)."""
    return f"{RESULTS}/iterations/{wildcards.shard}/i{int(wildcards.iteration) - 1}/state.pkl"


def search_options():
    names = {"iterations": "-N", "E": "-E", "domE": "--domE", "incE": "--incE",
             "incdomE": "--incdomE", "F1": "--F1", "F2": "--F2", "F3": "--F3",
             "max_hits": "--max-hits"}  # fmt: skip
    options = [f"--preset {SEARCH['preset']}"]
    options += [f"{flag} {SEARCH[key]}" for key, flag in names.items() if SEARCH[key] is not None]
    options += [f"--profile-method {PROFILE['method']}", f"--pseudocount {PROFILE['pseudocount']}"]
    return " ".join(options)


def msa_option(wildcards):
    if not PROFILE["keep_msa"]:
        return ""
    return f"--msa-dir {RESULTS}/msas/{wildcards.shard} --msa-format {PROFILE['msa_format']}"


def ingest_options():
    i = config["ingest"]
    return (f"--min-length {i['min_length']} --max-length {i['max_length']} "
            f"--too-long {i['too_long']} --valid-fraction {i['valid_fraction']} "
            f"--test-fraction {i['test_fraction']}")  # fmt: skip


def train_launcher():
    """One process on CPU or one GPU; torchrun with one process per GPU beyond that."""
    devices = config["train"]["devices"]
    if devices > 1:
        return f"torchrun --standalone --nproc-per-node {devices} -m protprof.cli"
    return "protprof"


def train_slurm_extra():
    devices = config["train"]["devices"]
    return f"'--gpus={devices}'" if devices else ""


def ingest_inputs():
    """The query files, or what the leakage guard kept of them."""
    if GUARD["enabled"]:
        return [f"{RESULTS}/queries/guarded.fasta"]
    return config["queries"]


def evaluation_options():
    e = EVALUATION
    return (f"--data {e['data']} --tasks {' '.join(e['tasks'])} --max-train {e['max_train']} "
            f"--max-test {e['max_test']}")  # fmt: skip
