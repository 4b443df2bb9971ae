# Import: profiles from alignment files people already have (`alignments:` in the config), no
# search. Each job takes the alignments whose ID hashes to it, through the profile cache, so a
# rerun with more files builds only the new ones.


rule import_alignments:
    input:
        lambda wildcards: IMPORT_INPUTS[int(wildcards.job)],
    output:
        directory(f"{RESULTS}/import/{{job}}.zarr"),
    log:
        f"{RESULTS}/logs/import_alignments/{{job}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/import_alignments/{{job}}.tsv"
    conda:
        ENV
    threads: IMPORT["threads"]
    resources:
        mem_mb=RESOURCES["import_alignments"]["mem_mb"],
        runtime=lambda wildcards, threads: workflow_params.import_runtime_min(
            len(IMPORT_INPUTS[int(wildcards.job)]), threads
        ),
    params:
        paths=alignment_paths(),
        shard=lambda wildcards: f"{int(wildcards.job)}/{len(IMPORT_INPUTS)}",
        cache=f"--cache {shlex.quote(CACHE)}" if CACHE else "",
        guard=(
            f"--guard-data {shlex.quote(GUARD['data'])} --guard-evalue {GUARD['evalue']}"
            if GUARD["enabled"]
            else ""
        ),
        options=IMPORT_OPTIONS,
        ingest=INGEST_OPTIONS,
    shell:
        "protprof import {params.paths} --shard {params.shard} --out {output:q} "
        "{params.cache} {params.guard} {params.options} {params.ingest} "
        "--threads {threads} 2> {log:q}"


# The store: the import jobs' stores, with the searched queries' store when queries are given.
rule combine_store:
    input:
        imported=IMPORTED,
        searched=[SEARCHED_STORE] if QUERIES else [],
    output:
        directory(f"{RESULTS}/store/profiles.zarr"),
    log:
        f"{RESULTS}/logs/combine_store/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/combine_store/all.tsv"
    conda:
        ENV
    resources:
        **RESOURCES["combine_store"],
    params:
        searched=lambda wildcards, input: (
            f"--searched {shlex.quote(input.searched[0])}" if input.searched else ""
        ),
        prefer=IMPORT["prefer"],
        ingest=INGEST_OPTIONS,
    shell:
        "protprof combine {input.imported:q} {params.searched} --prefer {params.prefer} "
        "--out {output:q} {params.ingest} 2> {log:q}"
