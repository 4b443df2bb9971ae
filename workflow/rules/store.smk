if QUERIES and CACHE:

    # Publishes this run's shard stores to the profile cache, then builds the store of every query
    # from the cache (searched now or before).
    rule assemble_store:
        input:
            shards=searched_shards,
            queries=f"{RESULTS}/queries/ingested.fasta",
            fingerprint=f"{RESULTS}/database/fingerprint.json",
            imported=EXCLUDE_IMPORTED,
        output:
            directory(SEARCHED_STORE),
        log:
            f"{RESULTS}/logs/assemble_store/all.log",
        benchmark:
            f"{RESULTS}/benchmarks/assemble_store/all.tsv"
        conda:
            ENV
        resources:
            **RESOURCES["assemble_store"],
        params:
            cache=CACHE,
            options=SEARCH_OPTIONS,
            reuse=REUSE_OPTIONS,
            ingest=INGEST_OPTIONS,
            exclude=exclude_option,
        shell:
            "protprof assemble {input.shards:q} --cache {params.cache:q} "
            "--queries {input.queries:q} --fingerprint {input.fingerprint:q} --out {output:q} "
            "{params.options} {params.reuse} {params.ingest} {params.exclude} 2> {log:q}"

elif QUERIES:

    rule assemble_store:
        input:
            expand(f"{RESULTS}/search/{{shard}}.zarr", shard=SHARDS),
        output:
            directory(SEARCHED_STORE),
        log:
            f"{RESULTS}/logs/assemble_store/all.log",
        benchmark:
            f"{RESULTS}/benchmarks/assemble_store/all.tsv"
        conda:
            ENV
        resources:
            **RESOURCES["assemble_store"],
        params:
            ingest=INGEST_OPTIONS,
        shell:
            "protprof assemble {input:q} --out {output:q} {params.ingest} 2> {log:q}"


rule summarise_store:
    input:
        f"{RESULTS}/store/profiles.zarr",
    output:
        f"{RESULTS}/store/summary.json",
    log:
        f"{RESULTS}/logs/summarise_store/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/summarise_store/all.tsv"
    conda:
        ENV
    resources:
        **RESOURCES["summarise_store"],
    shell:
        "protprof inspect {input:q} --json > {output:q} 2> {log:q}"
