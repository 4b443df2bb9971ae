rule train_model:
    input:
        store=f"{RESULTS}/store/profiles.zarr",
        config=config["train"]["config"],
        init_from=INIT_FROM_INPUTS,
    output:
        checkpoint=f"{RESULTS}/train/{{objective}}/seed{{seed}}/checkpoint.pt",
        metrics=f"{RESULTS}/train/{{objective}}/seed{{seed}}/metrics.jsonl",
        plot=report(
            f"{RESULTS}/train/{{objective}}/seed{{seed}}/curves.png",
            caption="../report/curves.rst",
            category="Training",
            labels={"objective": "{objective}", "seed": "{seed}"},
        ),
    log:
        f"{RESULTS}/logs/train_model/{{objective}}-seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{{objective}}-seed{{seed}}.tsv"
    conda:
        ENV
    threads: config["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
        **RESOURCES["train_model"],
        slurm_extra=TRAIN_SLURM_EXTRA,
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.checkpoint),
        launcher=TRAIN_LAUNCHER,
        devices=config["train"]["devices"],
        nodes=config["train"]["nodes"],
        init_from=INIT_FROM_OPTION,
    # --resume: continue from out_dir/last.pt, the rolling checkpoint a killed run leaves (not
    # an output, so Snakemake keeps it); the outputs appear only when training ends.
    shell:
        "{params.launcher} train --resume --config {input.config:q} --store {input.store:q} "
        "--out-dir {params.out_dir:q} --set devices={params.devices} nodes={params.nodes} "
        "objective={wildcards.objective} seed={wildcards.seed} {params.init_from} 2> {log:q}"
