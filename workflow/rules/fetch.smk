# Downloads: UniRef90/50 when `database` names UniProt's file and it is not there yet, and the
# evaluation data on request (`snakemake fetch_evaluation_data`). Both resume, are verified
# (UniProt's MD5, the manifest's sha256) and appear only when complete.


if UNIREF:

    rule fetch_database:
        output:
            config["database"],
        log:
            f"{RESULTS}/logs/fetch_database/{UNIREF}.log",
        benchmark:
            f"{RESULTS}/benchmarks/fetch_database/{UNIREF}.tsv"
        conda:
            ENV
        resources:
            **RESOURCES["fetch_database"],
        params:
            folder=lambda wildcards, output: os.path.dirname(output[0]) or ".",
        shell:
            "protprof fetch {UNIREF} --out {params.folder:q} 2> {log:q}"


rule fetch_evaluation_data:
    output:
        f"{EVALUATION['data']}/PROVENANCE.tsv",
    log:
        f"{RESULTS}/logs/fetch_evaluation_data/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/fetch_evaluation_data/all.tsv"
    conda:
        ENV
    resources:
        **RESOURCES["fetch_evaluation_data"],
    params:
        folder=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "protprof fetch evaluation --out {params.folder:q} 2> {log:q}"
