rule train_model:
    input:
        store=f"{RESULTS}/store/profiles.zarr",
        config=config["train"]["config"],
    output:
        checkpoint=f"{RESULTS}/train/{{objective}}/checkpoint.pt",
        metrics=f"{RESULTS}/train/{{objective}}/metrics.jsonl",
        plot=f"{RESULTS}/train/{{objective}}/curves.png",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.checkpoint),
        launcher=train_launcher(),
        devices=config["train"]["devices"],
    threads: 2
    log:
        "logs/train_model/{objective}.log",
    benchmark:
        "benchmarks/train_model/{objective}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8192,
        runtime=24 * 60,
        gpu=config["train"]["devices"],
        slurm_extra=train_slurm_extra(),
    shell:
        "{params.launcher} train --config {input.config} --store {input.store} "
        "--out-dir {params.out_dir} --set devices={params.devices} objective={wildcards.objective} "
        "2> {log}"
