rule train_model:
    input:
        store=f"{RESULTS}/store/profiles.zarr",
        config=config["train"]["config"],
    output:
        checkpoint=f"{RESULTS}/train/{{objective}}/seed{{seed}}/checkpoint.pt",
        metrics=f"{RESULTS}/train/{{objective}}/seed{{seed}}/metrics.jsonl",
        plot=f"{RESULTS}/train/{{objective}}/seed{{seed}}/curves.png",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.checkpoint),
        launcher=train_launcher(),
        devices=config["train"]["devices"],
    threads: 2
    log:
        f"{RESULTS}/logs/train_model/{{objective}}-seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{{objective}}-seed{{seed}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8192,
        runtime=24 * 60,
        gpu=config["train"]["devices"],
        slurm_extra=train_slurm_extra(),
    shell:
        "{params.launcher} train --config {input.config} --store {input.store} "
        "--out-dir {params.out_dir} --set devices={params.devices} objective={wildcards.objective} seed={wildcards.seed} "
        "2> {log}"
