# database_chunks K > 0: every jackhmmer iteration of a shard is K search jobs (one database
# chunk each, Z fixed to the whole database) and a merge job; a final job builds the store.


rule split_database:
    input:
        config["database"],
    output:
        expand(f"{RESULTS}/database/chunks/{{chunk}}.fasta", chunk=CHUNKS),
    log:
        f"{RESULTS}/logs/split_database/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/split_database/all.tsv"
    conda:
        ENV
    resources:
        # Streams the database twice; holds only its lengths (8 B per sequence: 1.6 GB for
        # UniRef90's ~200 M sequences) and one record.
        **RESOURCES["split_database"],
    shell:
        "protprof split-db {input:q} --out {output:q} 2> {log:q}"


rule init_state:
    input:
        f"{RESULTS}/plan/shards/{{shard}}.fasta",
    output:
        temp(f"{RESULTS}/iterations/{{shard}}/i0/state.pkl"),
    log:
        f"{RESULTS}/logs/init_state/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/init_state/{{shard}}.tsv"
    conda:
        ENV
    resources:
        **RESOURCES["init_state"],
    params:
        options=SEARCH_OPTIONS,
    shell:
        "protprof init-state {input:q} --out {output:q} {params.options} 2> {log:q}"


rule search_chunk:
    input:
        shard=f"{RESULTS}/plan/shards/{{shard}}.fasta",
        chunk=f"{RESULTS}/database/chunks/{{chunk}}.fasta",
        fingerprint=f"{RESULTS}/database/fingerprint.json",
        state=previous_state,
    output:
        temp(f"{RESULTS}/iterations/{{shard}}/i{{iteration}}/hits_{{chunk}}.pkl"),
    log:
        f"{RESULTS}/logs/search_chunk/{{shard}}_i{{iteration}}_{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/search_chunk/{{shard}}_i{{iteration}}_{{chunk}}.tsv"
    wildcard_constraints:
        iteration=r"[1-9]\d*",
    conda:
        ENV
    threads: SEARCH_THREADS
    resources:
        **RESOURCES["search_chunk"],
    params:
        options=SEARCH_OPTIONS,
    shell:
        "protprof search-chunk {input.shard:q} --chunk {input.chunk:q} "
        "--fingerprint {input.fingerprint:q} --state {input.state:q} --out {output:q} "
        "--threads {threads} {params.options} 2> {log:q}"


rule merge_iteration:
    input:
        shard=f"{RESULTS}/plan/shards/{{shard}}.fasta",
        hits=expand(
            f"{RESULTS}/iterations/{{{{shard}}}}/i{{{{iteration}}}}/hits_{{chunk}}.pkl",
            chunk=CHUNKS,
        ),
        state=previous_state,
    output:
        temp(f"{RESULTS}/iterations/{{shard}}/i{{iteration}}/state.pkl"),
    log:
        f"{RESULTS}/logs/merge_iteration/{{shard}}_i{{iteration}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/merge_iteration/{{shard}}_i{{iteration}}.tsv"
    wildcard_constraints:
        iteration=r"[1-9]\d*",
    conda:
        ENV
    resources:
        **RESOURCES["merge_iteration"],
    params:
        options=SEARCH_OPTIONS,
    shell:
        "protprof merge-iteration {input.shard:q} --hits {input.hits:q} "
        "--state {input.state:q} --out {output:q} {params.options} 2> {log:q}"


rule finish_shard:
    input:
        shard=f"{RESULTS}/plan/shards/{{shard}}.fasta",
        state=f"{RESULTS}/iterations/{{shard}}/i{ITERATIONS}/state.pkl",
        fingerprint=f"{RESULTS}/database/fingerprint.json",
    output:
        directory(f"{RESULTS}/search/{{shard}}.zarr"),
    log:
        f"{RESULTS}/logs/finish_shard/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finish_shard/{{shard}}.tsv"
    conda:
        ENV
    resources:
        **RESOURCES["finish_shard"],
    params:
        options=SEARCH_OPTIONS,
        msa=msa_option,
    shell:
        "protprof finish-shard {input.shard:q} --state {input.state:q} "
        "--fingerprint {input.fingerprint:q} --out {output:q} {params.options} {params.msa} "
        "2> {log:q}"
