rule evaluate_model:
    input:
        checkpoint=f"{RESULTS}/train/{{objective}}/checkpoint.pt",
        store=f"{RESULTS}/store/profiles.zarr",
    output:
        report=f"{RESULTS}/evaluation/{{objective}}/report.md",
        numbers=f"{RESULTS}/evaluation/{{objective}}/report.json",
        plot=f"{RESULTS}/evaluation/{{objective}}/report.png",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.report),
        options=evaluation_options(),
    threads: 2
    log:
        "logs/evaluate_model/{objective}.log",
    benchmark:
        "benchmarks/evaluate_model/{objective}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8192,
        runtime=120,
    shell:
        "protprof evaluate {input.checkpoint} --store {input.store} {params.options} "
        "--out {params.out_dir} 2> {log}"


rule compare_models:
    input:
        expand(f"{RESULTS}/evaluation/{{objective}}/report.json", objective=OBJECTIVES),
    output:
        f"{RESULTS}/evaluation/comparison.md",
    log:
        "logs/compare_models/all.log",
    conda:
        ENV
    resources:
        mem_mb=1024,
        runtime=10,
    shell:
        "protprof compare {input} --out {output} 2> {log}"
