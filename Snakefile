# protprof: query proteins x UniRef-style database -> jackhmmer profiles -> Zarr store -> training.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


wildcard_constraints:
    objective="mlm|profile|multitask",
    seed=r"\d+",


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"


if QUERIES:

    include: "workflow/rules/search.smk"


if QUERIES and N_CHUNKS:

    include: "workflow/rules/chunked.smk"


if ALIGNMENTS:

    include: "workflow/rules/import.smk"


include: "workflow/rules/store.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        store_summary=f"{RESULTS}/store/summary.json",
        checkpoints=expand(
            f"{RESULTS}/train/{{objective}}/seed{{seed}}/checkpoint.pt",
            objective=OBJECTIVES,
            seed=SEEDS,
        ),
        plots=expand(
            f"{RESULTS}/train/{{objective}}/seed{{seed}}/curves.png",
            objective=OBJECTIVES,
            seed=SEEDS,
        ),
        evaluation=(
            [
                f"{RESULTS}/evaluation/comparison.md",
                f"{RESULTS}/evaluation/comparison.png",
            ]
            if EVALUATE
            else []
        ),
