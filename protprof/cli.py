"""The `protprof` command line: thin shells over the library's functions.

User errors (`ProtprofError`) become one line on stderr and exit status 1; tracebacks are
for bugs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from protprof import __version__
from protprof.errors import ProtprofError, StoreError

log = logging.getLogger(__name__)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {}


# Internal steps the workflow runs, hidden from the top-level help (each keeps its --help).
HIDDEN: set[str] = set()


def command(name: str, help: str, hidden: bool = False) -> Callable:
    """Register `add_arguments` for a subcommand; its `run` is found as `_run_<name>`."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable:
        COMMANDS[name] = (help, add_arguments)
        if hidden:
            HIDDEN.add(name)
        return add_arguments

    return register


def _add_search_options(p: argparse.ArgumentParser) -> None:
    from protprof.alignments.folder import MsaOutput
    from protprof.alignments.profiles import ProfileParams
    from protprof.jackhmmer import Preset, SearchParams
    from protprof.params import add_options

    g = p.add_argument_group("search (jackhmmer's option names; defaults from --preset)")
    add_options(g, Preset)
    add_options(g, SearchParams, defaults=False)
    g.add_argument(
        "--threads",
        "--cpu",
        type=_threads,
        default=1,
        help="cores to use (default 1; --cpu: HMMER's name)",
    )
    g = p.add_argument_group("profiles")
    add_options(g, ProfileParams)
    g.add_argument("--msa-dir", type=Path, help="also keep each query's final alignment here")
    add_options(g, MsaOutput)
    _add_filter_options(p)


def _add_filter_options(p: argparse.ArgumentParser) -> None:
    from protprof.alignments.filters import FilterParams
    from protprof.params import add_options

    g = p.add_argument_group(
        "alignment filters (hhfilter's meaning; off by default; part of the cache context)"
    )
    add_options(g, FilterParams)


def _filter_params(args: argparse.Namespace) -> Any:
    from protprof.alignments.filters import FilterParams
    from protprof.params import from_args

    return from_args(FilterParams, args)


def _add_reuse_options(p: argparse.ArgumentParser) -> None:
    from protprof.params import add_options
    from protprof.search.family import ReuseParams

    g = p.add_argument_group("family-scale search (one whole-database search per family)")
    add_options(g, ReuseParams)


def _reuse_params(args: argparse.Namespace) -> Any:
    from protprof.params import from_args
    from protprof.search.family import ReuseParams

    return from_args(ReuseParams, args)


def _search_settings(args: argparse.Namespace) -> tuple[Any, Any]:
    from protprof.alignments.profiles import ProfileParams
    from protprof.jackhmmer import SearchParams, search_params
    from protprof.params import flags_named, from_args, given

    with flags_named(SearchParams, args):
        search = search_params(args.preset, **given(SearchParams, args))
    return search, from_args(ProfileParams, args)


def _add_ingest_options(
    p: argparse.ArgumentParser, title: str = "ingest", defaults: bool = True
) -> None:
    from protprof.params import add_options
    from protprof.queries.ingest import IngestParams

    add_options(p.add_argument_group(title), IngestParams, defaults)


def _ingest_params(args: argparse.Namespace) -> Any:
    from protprof.params import from_args
    from protprof.queries.ingest import IngestParams

    return from_args(IngestParams, args)


def _add_exclude(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--exclude-stores",
        nargs="*",
        type=Path,
        default=[],
        help="leave out the queries whose sequence is in these stores (imported alignments "
        "the workflow prefers to a search)",
    )


def _excluded(args: argparse.Namespace, records: list[Any], splits: list[int]) -> Any:
    """The records (and their splits) whose sequence is in none of `--exclude-stores`."""
    from protprof.store.zarr_store import open_store, store_sequences

    if not args.exclude_stores:
        return records, splits
    known: set[str] = set()
    for path in args.exclude_stores:
        known.update(store_sequences(open_store(path).read_all()))
    kept = [i for i, r in enumerate(records) if r.sequence not in known]
    log.info(
        "%d queries left out: their sequences were imported from alignments",
        len(records) - len(kept),
    )
    return [records[i] for i in kept], [splits[i] for i in kept]


def _add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="replace existing outputs even when they are not protprof's own",
    )


@contextmanager
def _claim(args: argparse.Namespace, *outputs: tuple[Path | None, Any]) -> Iterator[None]:
    """Lock and check every (path, kind) output before any work: an unwritable, locked or
    foreign output fails now, in one line, not after a whole search."""
    from protprof.atomic import claim_output

    with ExitStack() as stack:
        for path, kind in outputs:
            if path is not None:
                stack.enter_context(claim_output(path, kind, args.force))
        yield


def _progress(total: int, unit: str) -> Any:
    from protprof.progress import Progress

    # A bar on a terminal; in a Snakemake or SLURM log file a line after the first unit, then
    # every 30 s (done/total, rate, ETA), so a multi-hour job shows where it is.
    return Progress(total, unit, {"query": "searched", "alignment": "imported"}.get(unit, unit))


@command("ingest", "validate query FASTA files and split them into shards")
def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("queries", nargs="+", type=Path, help="FASTA or FASTA.gz query files")
    p.add_argument("--out", nargs="+", type=Path, required=True, help="one path per shard")
    p.add_argument(
        "--threads", type=_threads, default=1, help="MMseqs2 threads for --split-method mmseqs"
    )
    _add_ingest_options(p)
    _add_force(p)


def _run_ingest(args: argparse.Namespace) -> None:
    from protprof.queries.ingest import SHARD, ingest

    with _claim(args, *((path, SHARD) for path in args.out)):
        counts = ingest(args.queries, args.out, _ingest_params(args), args.threads)
    log.info("wrote %d shards with %s sequences", len(counts), counts)


@command("prepare-db", "count and checksum a target database (its fingerprint, for Z)")
def _prepare_db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("database", type=Path, help="target FASTA or FASTA.gz")
    p.add_argument("--out", type=Path, required=True, help="fingerprint JSON")
    _add_force(p)


def _run_prepare_db(args: argparse.Namespace) -> None:
    from protprof.atomic import atomic_output
    from protprof.jackhmmer import FINGERPRINT, fingerprint_database
    from protprof.store.file_versions import stamp

    with _claim(args, (args.out, FINGERPRINT)):
        fingerprint = fingerprint_database(args.database)
        with atomic_output(args.out, FINGERPRINT) as tmp:
            tmp.write_text(json.dumps({**stamp("fingerprint"), **fingerprint}, indent=2) + "\n")
    log.info(
        "database %s: %d sequences, %d residues",
        args.database,
        fingerprint["n_sequences"],
        fingerprint["n_residues"],
    )


def _load_database(args: argparse.Namespace) -> Any:
    from protprof.jackhmmer import load_database, read_fingerprint

    fingerprint = (
        read_fingerprint(args.fingerprint) if getattr(args, "fingerprint", None) else None
    )
    return load_database(args.database, fingerprint)


@command("search", "search one shard against the database and write its profile store")
def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("shard", type=Path, help="a shard FASTA written by `protprof ingest`")
    p.add_argument("--database", type=Path, required=True)
    p.add_argument("--fingerprint", type=Path, help="from `protprof prepare-db` (saves a pass)")
    p.add_argument("--out", type=Path, required=True, help="shard store (.zarr)")
    _add_search_options(p)
    _add_reuse_options(p)
    _add_force(p)


def _run_search(args: argparse.Namespace) -> None:
    from protprof.alignments.folder import MSA_DIR
    from protprof.queries.ingest import read_shard
    from protprof.search.journal import journal_path
    from protprof.stages import search_shard
    from protprof.store.zarr_store import STORE

    search, profile = _search_settings(args)
    reuse = _reuse_params(args)
    with _claim(args, (args.out, STORE), (args.msa_dir, MSA_DIR)):
        n = len(read_shard(args.shard)[0])
        database = _load_database(args)
        with _progress(n, "query") as bar:
            search_shard(
                args.shard,
                database,
                search,
                profile,
                args.threads,
                args.out,
                msa_dir=args.msa_dir,
                msa_format=args.msa_format,
                filters=_filter_params(args),
                progress=lambda _: bar.update(),
                reuse=reuse,
                journal=journal_path(args.out),
                resumed=bar.set_start,
            )
    log.info("wrote %s (%d queries)", args.out, n)


@command("split-db", "split a database into chunks of about equal residue counts")
def _split_db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("database", type=Path)
    p.add_argument("--out", nargs="+", type=Path, required=True, help="one FASTA per chunk")
    _add_force(p)


def _run_split_db(args: argparse.Namespace) -> None:
    from protprof.atomic import FILE
    from protprof.search.chunked import split_database

    with _claim(args, *((path, FILE) for path in args.out)):
        counts = split_database(args.database, args.out)
    log.info("wrote %d chunks with %s sequences", len(counts), counts)


def _chunked_options(p: argparse.ArgumentParser, state: str) -> None:
    p.add_argument("shard", type=Path, help="a shard FASTA written by `protprof ingest`")
    p.add_argument("--state", type=Path, help=state)
    p.add_argument("--out", type=Path, required=True)
    _add_search_options(p)
    _add_force(p)


@command("init-state", "chunked database: the query models iteration 1 searches with", hidden=True)
def _init_state_args(p: argparse.ArgumentParser) -> None:
    _chunked_options(p, argparse.SUPPRESS)


def _run_init_state(args: argparse.Namespace) -> None:
    from protprof.atomic import FILE
    from protprof.queries.ingest import read_shard
    from protprof.search import chunked

    with _claim(args, (args.out, FILE)):
        search, _ = _search_settings(args)
        records, _ = read_shard(args.shard)
        # Built once: every chunk job must search with the very same model (TopHits.merge checks).
        chunked.save(args.out, chunked.initial_states(records, search))


@command(
    "search-chunk", "chunked database: one iteration of a shard against one chunk", hidden=True
)
def _search_chunk_args(p: argparse.ArgumentParser) -> None:
    _chunked_options(p, "state after the previous iteration (from init-state for iteration 1)")
    p.add_argument("--chunk", type=Path, required=True, help="a chunk from split-db")
    p.add_argument("--fingerprint", type=Path, required=True, help="of the whole database (Z)")


def _run_search_chunk(args: argparse.Namespace) -> None:
    from protprof.atomic import FILE
    from protprof.jackhmmer import read_block, read_fingerprint
    from protprof.search import chunked

    with _claim(args, (args.out, FILE)):
        search, _ = _search_settings(args)
        states = chunked.load(args.state)
        z = int(read_fingerprint(args.fingerprint)["n_sequences"])
        chunk = read_block(args.chunk)
        chunked.save(args.out, chunked.search_chunk(states, chunk, search, z, args.threads))


@command("merge-iteration", "chunked database: merge one iteration's chunk hits", hidden=True)
def _merge_iteration_args(p: argparse.ArgumentParser) -> None:
    _chunked_options(p, "state after the previous iteration (from init-state for iteration 1)")
    p.add_argument("--hits", nargs="+", type=Path, required=True, help="from search-chunk")


def _run_merge_iteration(args: argparse.Namespace) -> None:
    from protprof.atomic import FILE
    from protprof.queries.ingest import read_shard
    from protprof.search import chunked

    with _claim(args, (args.out, FILE)):
        search, _ = _search_settings(args)
        records, _ = read_shard(args.shard)
        states = chunked.load(args.state)
        hits = [chunked.load(h) for h in args.hits]
        chunked.save(args.out, chunked.merge_iteration(records, states, hits, search))


@command(
    "finish-shard",
    "chunked database: profiles and the shard store from the last state",
    hidden=True,
)
def _finish_shard_args(p: argparse.ArgumentParser) -> None:
    _chunked_options(p, "state after the last iteration")
    p.add_argument("--fingerprint", type=Path, required=True, help="of the whole database")


def _run_finish_shard(args: argparse.Namespace) -> None:
    from protprof.jackhmmer import read_fingerprint
    from protprof.queries.ingest import read_shard
    from protprof.search import chunked
    from protprof.stages import finish_chunked_shard

    search, profile = _search_settings(args)
    from protprof.alignments.folder import MSA_DIR
    from protprof.store.zarr_store import STORE

    with _claim(args, (args.out, STORE), (args.msa_dir, MSA_DIR)):
        records, _ = read_shard(args.shard)
        results = chunked.results(records, chunked.load(args.state)) if records else []
        finish_chunked_shard(
            args.shard,
            results,
            read_fingerprint(args.fingerprint),
            search,
            profile,
            args.out,
            args.msa_dir,
            args.msa_format,
            _filter_params(args),
        )


@command(
    "assemble",
    "concatenate shard stores into one store (or, with --cache, publish them "
    "to the cache and build the store of --queries from it)",
)
def _assemble_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("shards", nargs="*", type=Path, help="shard stores (none: nothing searched)")
    p.add_argument("--out", type=Path, required=True)
    g = p.add_argument_group("through the profile cache")
    g.add_argument("--cache", type=Path, help="profile cache folder")
    g.add_argument("--queries", type=Path, help="every query of the store (from ingest)")
    g.add_argument("--fingerprint", type=Path, help="the database fingerprint (prepare-db)")
    _add_search_options(p)
    _add_reuse_options(p)
    _add_ingest_options(
        p, "ingest settings the shards were made with (recorded as provenance)", defaults=False
    )
    _add_exclude(p)
    _add_force(p)


def _run_assemble(args: argparse.Namespace) -> None:
    from protprof.params import given
    from protprof.queries.ingest import IngestParams, ingest_attrs
    from protprof.store.zarr_store import STORE, assemble

    ingest = ingest_attrs(_ingest_params(args)) if given(IngestParams, args) else None
    with _claim(args, (args.out, STORE)):
        if args.cache:
            _assemble_from_cache(args, ingest)
            return
        if not args.shards:
            raise ProtprofError("assemble: no shard stores given (or pass --cache)")
        assemble(args.shards, args.out, ingest)
    log.info("wrote %s from %d shards", args.out, len(args.shards))


def _assemble_from_cache(args: argparse.Namespace, ingest: dict[str, Any] | None) -> None:
    from protprof.jackhmmer import read_fingerprint
    from protprof.queries.ingest import read_shard
    from protprof.sources import SearchSource, assemble_cached
    from protprof.store import cache
    from protprof.store.reuse_records import settings_of
    from protprof.store.zarr_store import open_store

    if not (args.queries and args.fingerprint):
        raise ProtprofError("assemble --cache needs --queries and --fingerprint")
    search, profile = _search_settings(args)
    reuse = _reuse_params(args)
    # Assembly reads the cache only: the database enters by its fingerprint.
    fingerprint = read_fingerprint(args.fingerprint)
    source = SearchSource(fingerprint, search, profile, 1, reuse, _filter_params(args))
    records, splits = _excluded(args, *read_shard(args.queries))
    profiles = cache.ProfileCache(args.cache)
    searched = sum(profiles.publish(shard)[1] for shard in args.shards)
    shards = [dict(open_store(shard).attrs) for shard in args.shards]
    for shard, attrs in zip(args.shards, shards, strict=True):
        summary = attrs.get("reuse")
        if settings_of(summary) != settings_of(asdict(reuse)):
            raise ProtprofError(
                f"{shard}: searched with reuse {settings_of(summary)[0]} (coverage "
                f"{settings_of(summary)[1]}), not the --reuse {reuse.mode} (--coverage "
                f"{reuse.coverage}) given here; assemble with the settings it was searched with"
            )
    extra = {"ingest": ingest} if ingest else None
    assemble_cached(profiles, records, splits, source, args.out, searched, shards, extra)


@command("plan", "list the queries the profile cache lacks and shard them for searching")
def _plan_args(p: argparse.ArgumentParser) -> None:
    from protprof.params import add_options
    from protprof.queries.ingest import ShardParams

    p.add_argument("queries", type=Path, help="every query (one FASTA written by `ingest`)")
    p.add_argument("--fingerprint", type=Path, required=True, help="the database fingerprint")
    p.add_argument("--cache", type=Path, required=True, help="profile cache folder")
    add_options(p, ShardParams)
    p.add_argument(
        "--out-dir",
        type=Path,
        required=True,
        help="gets shards/NNNN.fasta (non-empty ones only) and plan.json",
    )
    _add_search_options(p)
    _add_reuse_options(p)
    _add_exclude(p)
    _add_force(p)


def _run_plan(args: argparse.Namespace) -> None:
    from protprof.jackhmmer import read_fingerprint
    from protprof.planning import PLAN, plan_searches, write_plan
    from protprof.queries.ingest import read_shard
    from protprof.sources import SearchSource
    from protprof.store import cache

    if args.shards < 1:
        raise ProtprofError(f"plan: --shards must be at least 1, got {args.shards}")
    with _claim(args, (args.out_dir, PLAN)):
        search, profile = _search_settings(args)
        records, _ = _excluded(args, *read_shard(args.queries))
        fingerprint = read_fingerprint(args.fingerprint)
        reuse, filters = _reuse_params(args), _filter_params(args)
        source = SearchSource(fingerprint, search, profile, args.threads, reuse, filters)
        plan = plan_searches(cache.ProfileCache(args.cache), records, source, args.shards)
        write_plan(plan, records, args.out_dir)
    figures = plan.summary
    log.info(
        "plan: %d of %d queries to search in %d shards, %d reused from %s%s",
        figures["missing"],
        figures["queries"],
        len(figures["shards"]),
        figures["queries"] - figures["missing"],
        args.cache,
        f" ({figures['reason']})" if figures["reason"] else "",
    )


@command("cache", "profile cache: `stats` (entries and bytes per context), `verify` or `gc`")
def _cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["stats", "verify", "gc"])
    p.add_argument("path", type=Path, help="profile cache folder")
    p.add_argument(
        "--keep-store",
        nargs="+",
        type=Path,
        default=[],
        help="gc: drop the segments none of these stores use",
    )
    p.add_argument(
        "--drop-corrupt",
        action="store_true",
        help="gc: drop the segments `verify` finds bad (their entries are searched again by "
        "the next build) and the temporaries of killed writers older than --grace-hours",
    )
    p.add_argument(
        "--grace-hours",
        type=float,
        default=24.0,
        help="gc --drop-corrupt: leave temporaries younger than this (a live writer's)",
    )
    p.add_argument("--json", action="store_true", help="stats: print JSON")


def _run_cache(args: argparse.Namespace) -> None:
    from protprof.store import cache

    profiles = cache.ProfileCache(args.path, create=False)
    if args.action == "gc":
        _cache_gc(profiles, args)
        return
    if args.action == "verify":
        bad = profiles.verify()
        problems = [
            f"{problems[0]} (bad segment {segment.name})" for segment, problems in bad.items()
        ]
        _fail_on_problems(args.path, problems, "cache verify")
        print(f"{args.path}: {len(profiles.segments())} segments intact")
        return
    info = profiles.stats()
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(f"{info['path']}: {info['entries']} entries, {info['bytes']} bytes")
    for key, row in info["contexts"].items():
        ctx = row["context"] or {}
        database, search = ctx.get("database", {}), ctx.get("search", {})
        copies = row["copies"] - row["entries"]
        differs = ", ".join(f"{k}={json.dumps(v)}" for k, v in row["differs"].items())
        print(
            f"  {key}: {row['entries']} entries"
            f"{f' (+{copies} duplicate copies)' if copies else ''} in {row['segments']} "
            f"segments, {row['bytes']} bytes "
            f"({row['bytes'] / max(row['residues'], 1):.1f}/residue); "
            f"database {str(database.get('sha256', '?'))[:12]} "
            f"({database.get('n_sequences')} sequences), -N {search.get('iterations')}"
            f"{f'; differs: {differs}' if differs else ''}"
        )
    for segment in info["corrupt"]:
        print(f"  {segment}: corrupt, not counted (`protprof cache gc --drop-corrupt` removes it)")
    for segment in info["uncommitted"]:
        print(f"  {segment}: its publish was not committed (being written, or killed), ignored")


def _cache_gc(profiles: Any, args: argparse.Namespace) -> None:
    if not args.keep_store and not args.drop_corrupt:
        raise ProtprofError(
            "cache gc: give --keep-store STORE... (the stores to keep) or --drop-corrupt"
        )
    counts = profiles.gc(args.keep_store, args.drop_corrupt, args.grace_hours * 3600)
    print(
        f"{args.path}: kept {counts['kept']} segments, removed {counts['removed']} unused, "
        f"{counts['corrupt']} corrupt and {counts['temporaries']} temporaries"
    )


@command("fetch", "download a file, UniRef90/50 or the evaluation data: resumable, verified")
def _fetch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "what",
        help="a URL, or uniref90, uniref50 (UniProt, checked against the release's MD5) or "
        "evaluation (every file of the evaluation data, checked against its sha256)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the file for a URL; the folder for uniref90, uniref50 and evaluation",
    )
    p.add_argument("--sha256", help="the URL's expected sha256 (hex)")
    p.add_argument("--md5", help="the URL's expected md5 (hex)")
    p.add_argument("--size", type=int, help="the URL's expected size in bytes")
    p.add_argument(
        "--base-url",
        help="a mirror: replaces https://ftp.uniprot.org/pub/databases/uniprot/uniref "
        "(uniref*) or https://raw.githubusercontent.com (evaluation)",
    )
    p.add_argument(
        "--only", nargs="+", default=[], help="evaluation: only files under these folders"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list URLs, sizes and destinations; fetch nothing"
    )
    p.add_argument(
        "--progress-seconds",
        type=float,
        default=30.0,
        help="seconds between progress lines in a log file (10 to 60; a bar on a terminal)",
    )
    _add_force(p)


def _run_fetch(args: argparse.Namespace) -> None:
    from protprof import fetch

    sources, derived = fetch.plan(
        args.what, args.out, args.base_url, args.sha256, args.md5, args.size, args.only
    )
    if args.dry_run:
        print(fetch.describe(sources, derived))
        return
    done, present = fetch.fetch_all(
        sources, derived, args.out, args.base_url, args.force, args.progress_seconds
    )
    if args.what == "evaluation" and not args.only:
        fetch.write_provenance(args.out)
    log.info("%d files fetched or made, %d already present and verified", done, present)


@command("build", "ingest, search, profile and store on one machine (no Snakemake)")
def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("queries", nargs="+", type=Path, help="FASTA or FASTA.gz query files")
    p.add_argument("--database", type=Path, required=True, help="target FASTA or FASTA.gz")
    p.add_argument("--out", type=Path, required=True, help="the store to write (.zarr)")
    p.add_argument(
        "--cache", type=Path, help="profile cache folder: search only queries it has no entry for"
    )
    _add_search_options(p)
    _add_reuse_options(p)
    _add_ingest_options(p)
    _add_force(p)


def _run_build(args: argparse.Namespace) -> None:
    from protprof.alignments.folder import MSA_DIR
    from protprof.queries.clusters import mmseqs_program
    from protprof.queries.ingest import assign_splits, ingest_attrs, select_records
    from protprof.search.journal import journal_path
    from protprof.search.to_store import check_filters
    from protprof.sources import SearchSource, build_cached
    from protprof.stages import build
    from protprof.store.zarr_store import STORE

    search, profile = _search_settings(args)
    reuse = _reuse_params(args)
    params = _ingest_params(args)
    if params.split_method == "mmseqs":
        mmseqs_program()  # refused before the slow database load
    filters = _filter_params(args)
    check_filters(filters, reuse)
    if args.cache and args.msa_dir:
        raise ProtprofError(
            "build: --msa-dir and --cache together are not supported yet (the "
            "cache keeps profiles, not alignments)"
        )
    with _claim(args, (args.out, STORE), (args.msa_dir, MSA_DIR)):
        records = select_records(args.queries, params)  # validate before the slow database load
        database = _load_database(args)
        with _progress(len(records), "query") as bar:
            if args.cache:
                source = SearchSource(
                    database.fingerprint, search, profile, args.threads, reuse, filters, database
                )
                splits = assign_splits([r.sequence for r in records], params, args.threads)
                extra = {"ingest": ingest_attrs(params)}
                build_cached(
                    records, splits, source, args.out, args.cache, lambda _: bar.update(), extra
                )
            else:
                build(
                    records,
                    database,
                    args.out,
                    args.threads,
                    params,
                    search,
                    profile,
                    msa_dir=args.msa_dir,
                    msa_format=args.msa_format,
                    progress=lambda _: bar.update(),
                    reuse=reuse,
                    filters=filters,
                    journal=journal_path(args.out),
                    resumed=bar.set_start,
                )
    log.info("wrote %s", args.out)


@command("import", "profiles from existing alignments (a3m, Stockholm, a2m): no search")
def _import_args(p: argparse.ArgumentParser) -> None:
    from protprof.alignments.files import ImportParams
    from protprof.alignments.profiles import ProfileParams
    from protprof.evaluation.settings import GuardParams
    from protprof.params import add_options

    p.add_argument(
        "alignments",
        nargs="+",
        help="alignment files, folders of them (a protprof --msa-dir as it is) or globs",
    )
    p.add_argument("--out", type=Path, required=True, help="the store to write (.zarr)")
    add_options(p, ImportParams)
    p.add_argument(
        "--threads", "--cpu", type=_threads, default=1, help="parallel readers and model builds"
    )
    p.add_argument(
        "--cache",
        type=Path,
        help="profile cache folder: build only alignments it has no entry for",
    )
    p.add_argument(
        "--shard",
        type=_shard,
        help="K/N: import job K (0-based) of N: the alignments whose ID hashes to K",
    )
    g = p.add_argument_group("leakage guard (as `protprof guard` on queries)")
    g.add_argument(
        "--guard-data",
        type=Path,
        help="the benchmark data folder: drop alignments whose query is homologous to a "
        "downstream test sequence",
    )
    add_options(g, GuardParams, prefix="guard")
    add_options(p.add_argument_group("profiles"), ProfileParams)
    _add_filter_options(p)
    _add_ingest_options(p)
    _add_force(p)


def _run_import(args: argparse.Namespace) -> None:
    from protprof.alignments.files import ImportParams
    from protprof.alignments.profiles import ProfileParams
    from protprof.evaluation.settings import GuardParams
    from protprof.params import from_args
    from protprof.sources import FileSource
    from protprof.stages import import_alignments
    from protprof.store.zarr_store import STORE

    params, profile = from_args(ImportParams, args), from_args(ProfileParams, args)
    guard = from_args(GuardParams, args, prefix="guard")  # bounds checked before any work
    source = FileSource(params, profile, _filter_params(args), args.threads)
    with _claim(args, (args.out, STORE)), ExitStack() as stack:
        bars: list[Any] = []

        def on_read(n: int) -> None:
            bars.append(stack.enter_context(_progress(n, "alignment")))

        import_alignments(
            args.alignments,
            args.out,
            source,
            _ingest_params(args),
            args.cache,
            progress=lambda _: bars[0].update(),
            on_read=on_read,
            shard=args.shard,
            guard_data=args.guard_data,
            guard_evalue=guard.evalue,
        )
    log.info("wrote %s", args.out)


def _threads(text: str) -> int:
    """A thread count: a whole number >= 1 (0 or less was silently taken as 1)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"threads must be a whole number >= 1, got {text!r}")
    return int(text)


def _shard(text: str) -> tuple[int, int]:
    k, slash, n = text.partition("/")
    if not (slash and k.isdigit() and n.isdigit() and int(k) < int(n)):
        raise argparse.ArgumentTypeError(f"--shard must be K/N with 0 <= K < N, got {text!r}")
    return int(k), int(n)


@command(
    "combine",
    "one store of import jobs' stores and a searched store (the workflow's last store step "
    "when alignments are configured)",
)
def _combine_args(p: argparse.ArgumentParser) -> None:
    from protprof.alignments.files import ImportJobs
    from protprof.params import add_options

    p.add_argument("imported", nargs="+", type=Path, help="stores written by `import`")
    p.add_argument("--searched", type=Path, help="the store of the searched queries")
    p.add_argument("--out", type=Path, required=True)
    add_options(p, ImportJobs)
    _add_ingest_options(p)
    _add_force(p)


def _run_combine(args: argparse.Namespace) -> None:
    from protprof.stages import combine_sources
    from protprof.store.zarr_store import STORE

    with _claim(args, (args.out, STORE)):
        combine_sources(args.imported, args.searched, args.out, _ingest_params(args), args.prefer)


@command("inspect", "summarise a profile store")
def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", type=Path)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _run_inspect(args: argparse.Namespace) -> None:
    from protprof.store.zarr_store import open_store, summary

    info = summary(open_store(args.store))
    if args.json:
        print(json.dumps(info, indent=2))
        _fail_on_problems(args.store, info["problems"], "inspect")
        return
    search = info["provenance"].get("search", {})
    database = info["provenance"].get("database", {})
    print(f"{info['path']}: protprof store v{info['format_version']}")
    print(
        f"  sequences {info['n_sequences']}  residues {info['n_residues']}  "
        f"length {info['length']['min']}-{info['length']['max']} "
        f"(mean {info['length']['mean']:.0f})"
    )
    print(
        f"  split {info['split']}  without hits {info['no_hits']}  "
        f"median hits {info['n_hits_median']:.0f}  median Neff {info['neff_median']:.2f}"
    )
    sources = info["sources"]
    print(f"  profiles imported {sources['imported']}  searched {sources['searched']}")
    if database:
        print(
            f"  database {database.get('path')} ({database.get('n_sequences')} sequences)  "
            f"search -N {search.get('iterations')} -E {search.get('E')} "
            f"--incE {search.get('incE')}"
        )
    imported = info["provenance"].get("import")
    if imported:
        print(
            f"  imported from alignment files (layout {imported.get('layout')}, combine "
            f"{imported['reader'].get('combine')}, filters {imported.get('filters') or 'none'})"
        )
    reuse = info["provenance"].get("reuse")
    if reuse:
        print(
            f"  reuse {reuse.get('mode')}: {reuse.get('groups')} groups, "
            f"{reuse.get('full_searches')} whole-database searches"
            + (f", {reuse['members']} members" if "members" in reuse else "")
        )
    print(
        f"  on disk {info['bytes_on_disk']} bytes ({info['bytes_per_residue'] or 0:.1f}/residue)"
    )
    _fail_on_problems(args.store, info["problems"], "inspect")


def _fail_on_problems(store: Path, problems: list[str], command: str) -> None:
    """Print each problem on its own line, then fail with one summary line."""
    for problem in problems[:-1]:
        print(f"protprof {command}: {problem}", file=sys.stderr)
    if problems:
        raise StoreError(
            problems[-1]
            if len(problems) == 1
            else f"{problems[-1]} ({len(problems)} problems in {store})"
        )


@command("verify", "check a store's every array, chunk and metadata (checksums, invariants)")
def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", type=Path)


def _run_verify(args: argparse.Namespace) -> None:
    import time

    from protprof.store.zarr_store import open_store, unchecked, verify

    start = time.perf_counter()
    _fail_on_problems(args.store, verify(args.store), "verify")
    seconds = time.perf_counter() - start
    missing = unchecked(args.store)
    if missing:
        version = open_store(args.store).attrs["format_version"]
        print(
            f"{args.store}: unchecked: format {version} has no checksums for "
            f"{', '.join(missing)}; their invariants hold ({seconds:.1f} s)"
        )
        return
    print(f"{args.store}: intact ({seconds:.1f} s)")


@command("train", "pretrain a model on a profile store (MLM, profile or multitask)")
def _train_args(p: argparse.ArgumentParser) -> None:
    from protprof.train.config import describe_keys

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "training keys (the YAML's keys; --set KEY=VALUE):\n" + describe_keys()
    p.add_argument("--config", type=Path, help="training YAML (keys of TrainConfig)")
    p.add_argument("--store", help="profile store (overrides the config's)")
    p.add_argument(
        "--out-dir",
        help="checkpoint.pt, metrics.jsonl and curves.png appear here "
        "when training ends; meanwhile last.pt and last-metrics.jsonl hold the run",
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting, e.g. --set objective=mlm max_steps=100",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from out-dir's last.pt (an interrupted run) or else its "
        "checkpoint.pt (a finished run, e.g. with a larger max_steps); start afresh if "
        "neither exists. Without --resume either file stops the run. The workflow "
        "always passes it",
    )
    p.add_argument(
        "--init-from",
        metavar="DIR",
        help="start from a local Hugging Face ESM directory (e.g. esm2_t6_8M_UR50D with "
        "--set model=esm2-8m); its shape must be the model's. The profile head starts fresh "
        "unless protprof exported the directory (overrides the config's init_from)",
    )


def _run_train(args: argparse.Namespace) -> None:
    from protprof.train.config import load_config
    from protprof.train.loop import train

    overrides = list(args.set)
    overrides += [f"store={args.store}"] if args.store else []
    overrides += [f"init_from={args.init_from}"] if args.init_from else []
    overrides += [f"out_dir={args.out_dir}"] if args.out_dir else []
    train(load_config(args.config, overrides), resume=args.resume)


_MODEL_HELP = (
    "a protprof checkpoint (.pt) or a local Hugging Face ESM directory (e.g. a downloaded "
    "esm2_t6_8M_UR50D, or one written by `protprof export`)"
)


def _add_data(p: argparse.ArgumentParser) -> None:
    from protprof.evaluation.settings import BenchmarkData
    from protprof.params import add_options

    add_options(p, BenchmarkData)


@command("embed", "write per-residue and mean embeddings and predicted profiles (.npz)")
def _embed_args(p: argparse.ArgumentParser) -> None:
    from protprof.model.config import EmbedParams
    from protprof.params import add_options

    p.add_argument("checkpoint", type=Path, help=_MODEL_HELP)
    p.add_argument("fasta", type=Path, help="sequences to embed (FASTA or FASTA.gz)")
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    add_options(p, EmbedParams)
    _add_force(p)


def _run_embed(args: argparse.Namespace) -> None:
    from protprof.model.embed import EMBEDDINGS, embed_sequences, write_embeddings
    from protprof.model.loading import load_any
    from protprof.queries.fasta import read_fasta

    with _claim(args, (args.out, EMBEDDINGS)):
        records = read_fasta(args.fasta)
        loaded = load_any(args.checkpoint)
        hidden, profiles = embed_sequences(
            loaded.model, [r.sequence for r in records], args.max_tokens
        )
        if not loaded.has_profile_head:
            log.info("%s has no profile head: the .npz has no profiles", args.checkpoint)
        kept = profiles if loaded.has_profile_head else None
        write_embeddings(args.out, [r.id for r in records], hidden, kept)
    log.info("wrote %s (%d sequences)", args.out, len(records))


@command("export", "write a trained model as a Hugging Face directory (EsmForMaskedLM)")
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help=_MODEL_HELP)
    p.add_argument(
        "--format",
        choices=["hf"],
        default="hf",
        help="hf: config.json, model.safetensors and tokenizer files that transformers' "
        "EsmForMaskedLM and EsmTokenizer load, plus profile_head.safetensors (default)",
    )
    p.add_argument("--out", type=Path, required=True, help="the directory to write")
    _add_force(p)


def _run_export(args: argparse.Namespace) -> None:
    from protprof.model.huggingface import HF_EXPORT, export
    from protprof.model.loading import load_any

    with _claim(args, (args.out, HF_EXPORT)):
        loaded = load_any(args.checkpoint)
        export(loaded, args.out, args.force)
    log.info(
        "wrote %s: EsmForMaskedLM (%d layers x %d)%s; its contact head is zero (protprof does "
        "not train one)",
        args.out,
        loaded.model.config.n_layers,
        loaded.model.config.d_model,
        " and the profile head" if loaded.has_profile_head else "",
    )
    if args.checkpoint.is_dir() and not loaded.training:
        log.warning(
            "%s was an ESM directory: the export keeps its encoder and MLM head, not its "
            "contact head or its '.', '-' and <null_1> tokens",
            args.checkpoint,
        )


@command("guard", "drop queries homologous to any downstream test sequence (leakage guard)")
def _guard_args(p: argparse.ArgumentParser) -> None:
    from protprof.evaluation.settings import BenchmarkData, GuardParams
    from protprof.params import add_options

    p.add_argument("queries", nargs="+", type=Path, help="FASTA or FASTA.gz query files")
    add_options(p, BenchmarkData, required=("data",))
    p.add_argument("--out", type=Path, required=True, help="the kept queries (FASTA)")
    p.add_argument("--report", type=Path, help="JSON: counts and every dropped query")
    add_options(p, GuardParams)
    p.add_argument("--threads", type=_threads, default=1)
    _add_force(p)


def _run_guard(args: argparse.Namespace) -> None:
    from protprof.atomic import FILE

    with _claim(args, (args.out, FILE), (args.report, FILE)):
        _guard(args)


def _guard(args: argparse.Namespace) -> None:
    from protprof.atomic import atomic_output
    from protprof.evaluation.leakage import guard_files
    from protprof.evaluation.settings import GuardParams
    from protprof.params import from_args
    from protprof.queries.fasta import write_fasta
    from protprof.store.file_versions import stamp

    evalue = from_args(GuardParams, args).evalue  # bounds checked: E <= 0 would drop nothing
    result = guard_files(args.queries, args.data, evalue, args.threads)
    if not result.kept:
        raise ProtprofError(
            f"guard: every one of {len(result.dropped)} queries is homologous "
            "to a test sequence; nothing left to pretrain on"
        )
    report = result.report()
    if args.report:
        with atomic_output(args.report) as tmp:
            tmp.write_text(json.dumps({**stamp("guard"), **report}, indent=1) + "\n")
    with atomic_output(args.out) as tmp:
        write_fasta(tmp, result.kept)
    log.info(
        "leakage guard: dropped %d of %d queries (phmmer E <= %g against %d test sequences)",
        report["n_dropped"],
        report["n_queries"],
        evalue,
        result.n_test_sequences,
    )


@command("evaluate", "score a checkpoint on downstream tasks with probes on frozen embeddings")
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    from protprof.evaluation import registry
    from protprof.evaluation.settings import Limits
    from protprof.params import add_options

    p.add_argument("checkpoint", type=Path, help=_MODEL_HELP)
    p.add_argument(
        "--task",
        "--tasks",
        dest="tasks",
        nargs="+",
        default=list(registry.names()),
        choices=registry.names(),
        help="tasks to run (default: all registered tasks)",
    )
    _add_data(p)
    p.add_argument(
        "--store",
        type=Path,
        help="profile store whose test split the profile task scores; for the variants task, "
        "its database and settings make the alignment reference (unless --reference)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        help="the wild types' alignment profiles from `protprof reference` (searched once for "
        "many evaluations)",
    )
    p.add_argument(
        "--threads", type=_threads, default=2, help="for the alignment reference search"
    )
    add_options(p, Limits)
    p.add_argument("--label", help="name in reports and comparisons (default: the objective)")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for report.md, report.json and report.png"
    )
    _add_force(p)


def _run_evaluate(args: argparse.Namespace) -> None:
    from protprof.atomic import Kind
    from protprof.evaluation.evaluate import evaluate, markdown, write_report
    from protprof.evaluation.settings import Limits
    from protprof.params import from_args

    # The report files go into this folder: an existing one must be empty or a report's.
    folder = Kind(
        "an evaluation report folder (empty or with report.json)",
        lambda p: p.is_dir() and (not any(p.iterdir()) or (p / "report.json").is_file()),
    )
    with _claim(args, (args.out, folder)):
        limits = from_args(Limits, args)
        report = evaluate(
            args.checkpoint,
            args.tasks,
            args.data,
            args.store,
            limits,
            args.label,
            args.reference,
            args.threads,
        )
        write_report(report, args.out)
    print(markdown(report), end="")


@command("reference", "search the zero-shot assays' wild types as a store's queries were")
def _reference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, required=True, help="the profile store")
    _add_data(p)
    p.add_argument(
        "--database",
        type=Path,
        help="the store's database FASTA (default: the path its provenance records)",
    )
    p.add_argument("--threads", type=_threads, default=2)
    p.add_argument("--out", type=Path, required=True, help="the alignment reference (.npz)")
    _add_force(p)


def _run_reference(args: argparse.Namespace) -> None:
    from protprof.evaluation import reference
    from protprof.evaluation.datasets import variant_wild_types

    with _claim(args, (args.out, reference.REFERENCE)):
        wild_types = variant_wild_types(args.data)
        profiles = reference.compute(wild_types, args.store, args.database, args.threads)
        reference.write(args.out, profiles, wild_types, args.store)
    log.info("wrote %s (%d wild types)", args.out, len(profiles))


@command("compare", "one markdown table of several evaluation reports (e.g. the three arms)")
def _compare_args(p: argparse.ArgumentParser) -> None:
    from protprof.evaluation.settings import CompareParams
    from protprof.params import add_options

    p.add_argument("reports", nargs="+", type=Path, help="report.json files")
    p.add_argument("--out", type=Path, required=True, help="markdown table")
    add_options(p, CompareParams)
    p.add_argument(
        "--figure", type=Path, help="also draw every arm on every task with its interval (PNG)"
    )
    _add_force(p)


def _run_compare(args: argparse.Namespace) -> None:
    from protprof.atomic import FILE, atomic_output
    from protprof.evaluation.compare import compare

    with _claim(args, (args.out, FILE), (args.figure, FILE)):
        table = compare(args.reports, args.baseline, args.figure)
    with atomic_output(args.out, force=args.force) as tmp:
        tmp.write_text(table)
    print(table, end="")


def parser() -> argparse.ArgumentParser:
    """The `protprof` argument parser with every registered subcommand."""
    p = argparse.ArgumentParser(
        prog="protprof",
        description="Build per-residue MSA profiles with jackhmmer, store them in Zarr, and "
        "pretrain protein models on them.",
        epilog="The chunked database search's internal steps, which the workflow runs "
        "(init-state, search-chunk, merge-iteration, finish-shard), are not listed; each has "
        "its own --help.",
    )
    p.add_argument("--version", action="version", version=f"protprof {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help, add_arguments) in COMMANDS.items():
        # A subparser added without `help` is callable but not listed in the help.
        if name in HIDDEN:
            add_arguments(sub.add_parser(name, description=help))
        else:
            add_arguments(sub.add_parser(name, help=help, description=help))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit status: 0, or 1 after a ProtprofError's one
    line (75 for training stopped by SIGTERM or SIGUSR1, its checkpoint saved). Ctrl-C exits
    130 at once."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        globals()[f"_run_{args.command.replace('-', '_')}"](args)
    except ProtprofError as e:
        print(f"protprof {args.command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 1)
    except KeyboardInterrupt as e:
        # What was kept for a rerun (a search journal) says so in a note on the exception.
        kept = "; ".join(getattr(e, "__notes__", [])) or "nothing incomplete was left behind"
        print(f"protprof {args.command}: interrupted; {kept}", file=sys.stderr)
        # Abandon searches still running in worker threads (a chunk of a large database can
        # take minutes): exiting normally would wait for them. Outputs are safe: nothing
        # complete-looking exists before its final rename, and the kernel drops our locks.
        sys.stderr.flush()
        os._exit(130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
