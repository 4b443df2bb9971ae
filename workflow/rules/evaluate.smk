rule alignment_reference:
    input:
        store=EVALUATION_STORE,
    output:
        REFERENCE,
    log:
        f"{RESULTS}/logs/alignment_reference.log",
    benchmark:
        f"{RESULTS}/benchmarks/alignment_reference.tsv"
    conda:
        ENV
    threads: EVALUATION["threads"]
    resources:
        # The whole database, whatever database_chunks is: the reference is one process.
        **RESOURCES["alignment_reference"],
    params:
        data=EVALUATION["data"],
    # The zero-shot assays' wild types searched once, as the store's queries were; every
    # evaluation reads the profiles.
    shell:
        "protprof reference --store {input.store:q} --data {params.data:q} "
        "--threads {threads} --out {output:q} 2> {log:q}"


rule evaluate_model:
    input:
        checkpoint=f"{RESULTS}/train/{{objective}}/seed{{seed}}/checkpoint.pt",
        store=EVALUATION_STORE,
        reference=REFERENCE_INPUTS,
    output:
        report=f"{RESULTS}/evaluation/{{objective}}/seed{{seed}}/report.md",
        numbers=f"{RESULTS}/evaluation/{{objective}}/seed{{seed}}/report.json",
        plot=report(
            f"{RESULTS}/evaluation/{{objective}}/seed{{seed}}/report.png",
            caption="../report/evaluation.rst",
            category="Evaluation",
            labels={"objective": "{objective}", "seed": "{seed}"},
        ),
    log:
        f"{RESULTS}/logs/evaluate_model/{{objective}}-seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_model/{{objective}}-seed{{seed}}.tsv"
    conda:
        ENV
    threads: EVALUATION["threads"]
    resources:
        **RESOURCES["evaluate_model"],
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.report),
        options=EVALUATION_OPTIONS,
        reference=lambda wildcards, input: (
            f"--reference {shlex.quote(input.reference[0])}" if input.reference else ""
        ),
        label=lambda wildcards: shlex.quote(LABELS[wildcards.objective]),
    shell:
        "protprof evaluate {input.checkpoint:q} --store {input.store:q} {params.options} "
        "{params.reference} --label {params.label} --out {params.out_dir:q} 2> {log:q}"


rule compare_models:
    input:
        expand(
            f"{RESULTS}/evaluation/{{objective}}/seed{{seed}}/report.json",
            objective=OBJECTIVES,
            seed=SEEDS,
        ),
    output:
        table=report(
            f"{RESULTS}/evaluation/comparison.md",
            caption="../report/comparison.rst",
            category="Evaluation",
        ),
        figure=report(
            f"{RESULTS}/evaluation/comparison.png",
            caption="../report/comparison.rst",
            category="Evaluation",
        ),
    log:
        f"{RESULTS}/logs/compare_models/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare_models/all.tsv"
    conda:
        ENV
    resources:
        **RESOURCES["compare_models"],
    shell:
        "protprof compare {input:q} --out {output.table:q} --figure {output.figure:q} "
        "2> {log:q}"
