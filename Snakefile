# protprof: query proteins x UniRef-style database -> jackhmmer profiles -> Zarr store -> training.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/search.smk"


if N_CHUNKS:

    include: "workflow/rules/chunked.smk"


include: "workflow/rules/store.smk"
include: "workflow/rules/train.smk"


rule all:
    input:
        store_summary=f"{RESULTS}/store/summary.json",
        checkpoint=f"{RESULTS}/train/checkpoint.pt",
        metrics=f"{RESULTS}/train/metrics.jsonl",
        plot=f"{RESULTS}/train/curves.png",
    default_target: True
