rule guard_queries:
    input:
        config["queries"],
    output:
        fasta=f"{RESULTS}/queries/guarded.fasta",
        report=f"{RESULTS}/queries/guard_report.json",
    log:
        f"{RESULTS}/logs/guard_queries/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/guard_queries/all.tsv"
    conda:
        ENV
    threads: GUARD["threads"]
    resources:
        **RESOURCES["guard_queries"],
    params:
        data=GUARD["data"],
        evalue=GUARD["evalue"],
    shell:
        "protprof guard {input:q} --data {params.data:q} -E {params.evalue} "
        "--threads {threads} --out {output.fasta:q} --report {output.report:q} 2> {log:q}"


if CACHE:

    rule ingest_queries:
        input:
            ingest_inputs(),
        output:
            f"{RESULTS}/queries/ingested.fasta",
        log:
            f"{RESULTS}/logs/ingest_queries/all.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest_queries/all.tsv"
        conda:
            ENV
        threads: 2  # MMseqs2's all-against-all search for the splits
        resources:
            **RESOURCES["ingest_queries"],
        params:
            options=INGEST_OPTIONS,
        shell:
            "protprof ingest {input:q} --out {output:q} {params.options} "
            "--threads {threads} 2> {log:q}"

    # Which queries the profile cache lacks: only they are sharded and searched. A checkpoint,
    # because the number of search jobs depends on the cache's contents.
    checkpoint plan_searches:
        input:
            queries=f"{RESULTS}/queries/ingested.fasta",
            fingerprint=f"{RESULTS}/database/fingerprint.json",
            imported=EXCLUDE_IMPORTED,
        output:
            directory(f"{RESULTS}/plan"),
        log:
            f"{RESULTS}/logs/plan_searches/all.log",
        benchmark:
            f"{RESULTS}/benchmarks/plan_searches/all.tsv"
        conda:
            ENV
        resources:
            **RESOURCES["plan_searches"],
        params:
            cache=CACHE,
            shards=N_SHARDS,
            options=SEARCH_OPTIONS,
            reuse=REUSE_OPTIONS,
            exclude=exclude_option,
        shell:
            "protprof plan {input.queries:q} --fingerprint {input.fingerprint:q} "
            "--cache {params.cache:q} --shards {params.shards} --out-dir {output:q} "
            "{params.options} {params.reuse} {params.exclude} 2> {log:q}"

else:
    # No cache: every query is searched, in config `shards` shards (the DAG is known at
    # once, so a dry run plans a full-size run).

    rule ingest_queries:
        input:
            ingest_inputs(),
        output:
            expand(f"{RESULTS}/plan/shards/{{shard}}.fasta", shard=SHARDS),
        log:
            f"{RESULTS}/logs/ingest_queries/all.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest_queries/all.tsv"
        conda:
            ENV
        threads: 2  # MMseqs2's all-against-all search for the splits
        resources:
            **RESOURCES["ingest_queries"],
        params:
            options=INGEST_OPTIONS,
        shell:
            "protprof ingest {input:q} --out {output:q} {params.options} "
            "--threads {threads} 2> {log:q}"


rule prepare_database:
    input:
        config["database"],
    output:
        f"{RESULTS}/database/fingerprint.json",
    log:
        f"{RESULTS}/logs/prepare_database/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_database/all.tsv"
    conda:
        ENV
    resources:
        **RESOURCES["prepare_database"],
    shell:
        "protprof prepare-db {input:q} --out {output:q} 2> {log:q}"


if not N_CHUNKS:

    rule search_shard:
        input:
            shard=f"{RESULTS}/plan/shards/{{shard}}.fasta",
            database=config["database"],
            fingerprint=f"{RESULTS}/database/fingerprint.json",
        output:
            directory(f"{RESULTS}/search/{{shard}}.zarr"),
        log:
            f"{RESULTS}/logs/search_shard/{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/search_shard/{{shard}}.tsv"
        conda:
            ENV
        threads: SEARCH_THREADS
        resources:
            **RESOURCES["search_shard"],
        params:
            options=SEARCH_OPTIONS,
            reuse=REUSE_OPTIONS,
            msa=msa_option,
        shell:
            "protprof search {input.shard:q} --database {input.database:q} "
            "--fingerprint {input.fingerprint:q} --out {output:q} --threads {threads} "
            "{params.options} {params.reuse} {params.msa} 2> {log:q}"
