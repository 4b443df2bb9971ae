"""Family-scale search (`reuse`): representatives exact, pool searches exact where the pool
holds every homolog, family targets equal a hand computation with HMMER's own hmmalign, the
audit's figures, the CLI and the cache, on real sequences."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import DEMO_DB, DEMO_QUERIES, SHARED_DATA
from pyhmmer.easel import Alphabet, DigitalSequenceBlock, MSAFile
from pyhmmer.plan7 import HMM, Background, Builder

from protprof.alignments.profiles import ProfileParams, family_profile, profile_result
from protprof.cli import main
from protprof.errors import ConfigError
from protprof.jackhmmer import JackhmmerSearch, SearchParams
from protprof.queries.fasta import Record, read_fasta, write_fasta
from protprof.search.family import (
    ReuseParams,
    TargetIndex,
    audit_rank,
    family_shards,
    js_bits,
    search_with_reuse,
)
from protprof.store.reuse_records import MEMBER, combined_summary, per_query_summary, run_summary
from protprof.store.zarr_store import open_store

AMINO = Alphabet.amino()
PFAM = SHARED_DATA / "pfam_seeds_hmmer"
HMMALIGN = shutil.which("hmmalign", path=str(Path(sys.executable).parent)) or shutil.which(
    "hmmalign"
)
SEARCH = SearchParams(iterations=2)
# Real demo queries: three families (members found by phmmer among the demo queries; the
# first of each family is the longest) and one record of none of them.
FAMILY_IDS = [
    "tr|A0A0S3SKR9|A0A0S3SKR9_PHAAN",
    "tr|A0A078IC26|A0A078IC26_BRANA",
    "tr|R0I619|R0I619_9BRAS",
    "tr|A0A0F9RVQ1|A0A0F9RVQ1_9ZZZZ",
    "tr|Z5XS54|Z5XS54_9GAMM",
    "tr|A4CSP7|A4CSP7_SYNPV",
    "tr|C6YWU2|C6YWU2_9GAMM",
    "sp|A5URZ1|NUSB_ROSS1",
]


def _records(ids: list[str]) -> list[Record]:
    by_id = {r.id: r for r in read_fasta(DEMO_QUERIES)}
    return [by_id[i] for i in ids]


@pytest.fixture(scope="module")
def family_records() -> list[Record]:
    return _records(FAMILY_IDS)


@pytest.fixture(scope="module")
def per_query(family_records, demo_database):
    """Every record searched alone against the whole database (the peer)."""
    z = demo_database.fingerprint["n_sequences"]
    engine = JackhmmerSearch(demo_database.block, SEARCH, 2, z)
    return engine.run(family_records, finish=lambda r: profile_result(r, ProfileParams()))


@pytest.fixture(scope="module")
def pooled(family_records, demo_database):
    params = ReuseParams("pool", audit=1.0)
    return search_with_reuse(family_records, demo_database, SEARCH, ProfileParams(), params, 2)


def test_js_bits_hand_values():
    one_hot = np.eye(20, dtype=np.float32)[[0, 1]]
    assert js_bits(one_hot, one_hot) == 0.0
    # Disjoint distributions: 1 bit; [1, 0] vs [1/2, 1/2]: 0.5 log2(4/3) + 0.25 log2(2/3)*...
    assert js_bits(one_hot[:1], one_hot[1:]) == pytest.approx(1.0)
    half = np.zeros((1, 20), np.float32)
    half[0, :2] = 0.5
    m = np.array([0.75, 0.25])
    expected = 0.5 * (1 * math.log2(1 / 0.75)) + 0.5 * (
        0.5 * math.log2(0.5 / m[0]) + 0.5 * math.log2(0.5 / m[1])
    )
    assert js_bits(one_hot[:1], half) == pytest.approx(expected, abs=1e-6)


def test_reuse_params_are_validated():
    with pytest.raises(ConfigError, match="search.reuse must be one of"):
        ReuseParams("members")
    with pytest.raises(ConfigError, match="coverage"):
        ReuseParams("pool", coverage=0)
    with pytest.raises(ConfigError, match="audit"):
        ReuseParams("pool", audit=1.5)


def test_target_index_finds_every_position_of_a_name(demo_database):
    index = TargetIndex(demo_database.block)
    names = [s.name for s in demo_database.block]
    assert index.positions([names[7], names[4000]]).tolist() == [7, 4000]
    assert index.positions(["no such target"]).tolist() == []


@pytest.mark.integration
def test_pool_search_with_every_homolog_in_the_pool_is_the_per_query_search(
    demo_database, family_records
):
    """The engine's claim: with Z fixed, a pool holding every target the whole-database search
    reported (in any iteration) gives exactly the whole-database result, whatever else the
    pool holds."""
    z = demo_database.fingerprint["n_sequences"]
    engine = JackhmmerSearch(demo_database.block, SEARCH, 2, z)
    record = family_records[1]
    with engine.session() as submit:
        whole = submit(record, collect=True).result()
    reported = TargetIndex(demo_database.block).positions(sorted(whole.reported))
    others = random.Random(0).sample(range(len(demo_database.block)), 200)
    pool = np.union1d(reported, others)
    assert len(pool) > len(reported)  # more than the homologs: they must not change anything
    block = DigitalSequenceBlock(AMINO, [demo_database.block[int(i)] for i in pool])
    with engine.session() as submit:
        pooled = submit(record, targets=block).result()
    assert pooled.included == whole.included and pooled.n_hits == whole.n_hits > 1
    a = profile_result(whole, ProfileParams())
    b = profile_result(pooled, ProfileParams())
    assert np.array_equal(a.values, b.values) and a.neff == b.neff


@pytest.mark.slow
def test_representatives_are_per_query_bit_for_bit(pooled, per_query):
    reps = np.flatnonzero(pooled.roles != MEMBER)
    members = np.flatnonzero(pooled.roles == MEMBER)
    assert len(reps) == pooled.summary["representatives"] == pooled.summary["groups"]
    assert len(members) >= 2 and len(reps) >= 2
    for i in reps:
        assert np.array_equal(pooled.profiled[i].values, per_query[i].values)
        assert pooled.profiled[i].neff == per_query[i].neff
    # The search count: every representative once, every member audited (audit = 1).
    assert pooled.summary["full_searches"] == len(reps) + len(members)
    assert pooled.summary["pool_searches"] == len(members)


@pytest.mark.slow
def test_audit_figures_are_the_members_agreement(pooled, per_query):
    members = np.flatnonzero(pooled.roles == MEMBER)
    js = [js_bits(pooled.profiled[j].values, per_query[j].values) for j in members]
    same = [pooled.profiled[j].result.included == per_query[j].result.included for j in members]
    audit = pooled.summary["audit"]
    assert audit["audited"] == len(members)
    assert audit["fraction_within"] == pytest.approx(np.mean(np.array(js) <= 0.01))
    assert audit["identical_included"] == pytest.approx(np.mean(same))
    assert audit["max_js_bits"] == pytest.approx(max(js))


@pytest.mark.slow
def test_roles_do_not_depend_on_the_input_order(family_records, demo_database, pooled):
    shuffled = list(range(len(family_records)))
    random.Random(3).shuffle(shuffled)
    again = search_with_reuse(
        [family_records[i] for i in shuffled],
        demo_database,
        SEARCH,
        ProfileParams(),
        ReuseParams("pool", audit=0),
        2,
    )
    assert again.roles.tolist() == [pooled.roles[i] for i in shuffled]
    for k, i in enumerate(shuffled):
        assert np.array_equal(again.profiled[k].values, pooled.profiled[i].values)


@pytest.mark.slow
def test_family_members_get_their_representatives_family_targets(
    family_records, demo_database, per_query
):
    outcome = search_with_reuse(
        family_records,
        demo_database,
        SEARCH,
        ProfileParams(),
        ReuseParams("family", audit=0, audit_min=0),
        2,
    )
    summary = outcome.summary
    assert summary["pool_searches"] == 0 and summary["audit"]["audited"] == 0
    # every whole-database search: the representatives' and discarded speculative ones
    assert (
        summary["full_searches"] == summary["representatives"] + summary["discarded_speculative"]
    )
    members = np.flatnonzero(outcome.roles == MEMBER)
    assert len(members)
    for j in members:
        values = outcome.profiled[j].values
        assert values.shape == (len(family_records[j].sequence), 20)
        assert np.allclose(values.sum(axis=1), 1, atol=1e-5)
        # It is the emissions of some representative's family model, aligned to the member.
        assert any(
            np.allclose(
                values,
                family_profile(per_query[i].hmm, "m", family_records[j].sequence),
            )
            for i in np.flatnonzero(outcome.roles != MEMBER)
        )


def _hmm_file_emissions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Match and insert emissions (node 0..M) read from an HMMER3 text file by hand: each
    node's lines give -ln(probability)."""
    lines = path.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("HMM "))
    body = lines[start + 2 :]
    compo = 0 if not body[0].split()[0] == "COMPO" else 1
    match, insert = [np.zeros(20)], []
    insert.append(np.exp(-np.array([float(x) for x in body[compo].split()[:20]])))
    k = compo + 2  # past node 0's insert and transition lines
    while not body[k].startswith("//"):
        match.append(np.exp(-np.array([float(x) for x in body[k].split()[1:21]])))
        insert.append(np.exp(-np.array([float(x) for x in body[k + 1].split()[:20]])))
        k += 3
    return np.array(match), np.array(insert)


def _stockholm_row(text: str) -> tuple[str, str]:
    """The RF line and the one sequence's row of a Stockholm file (joined over blocks)."""
    reference, row = [], []
    for line in text.splitlines():
        if line.startswith("#=GC RF"):
            reference.append(line.split()[-1])
        elif line and not line.startswith(("#", "//")):
            row.append(line.split()[-1])
    return "".join(reference), "".join(row)


@pytest.mark.integration
@pytest.mark.skipif(HMMALIGN is None, reason="HMMER's hmmalign program is not installed")
@pytest.mark.parametrize("family", ["RRM_1", "fn3"])
def test_family_targets_equal_a_hand_computation_with_hmmalign(tmp_path, family):
    """A real Pfam seed alignment's HMM; one of its members (with extra flanking residues)
    aligned by HMMER's hmmalign program; every residue labelled by hand from the HMM file's
    numbers: uppercase (match column k) -> match emissions of node k, lowercase inside the
    model -> insert emissions of the node before, flanks -> the background."""
    with MSAFile(str(PFAM / f"{family}.sto"), digital=True, alphabet=AMINO) as handle:
        msa = handle.read()
    msa.name = family.encode()
    hmm: HMM = Builder(AMINO).build_msa(msa, Background(AMINO))[0]
    hmm_path = tmp_path / f"{family}.hmm"
    with open(hmm_path, "wb") as handle:
        hmm.write(handle)
    row = msa.textize().alignment[2]
    member = "MSK" + row.replace("-", "").replace(".", "").upper() + "GEW"
    write_fasta(tmp_path / "member.fasta", [Record("member", member)])
    aligned = subprocess.run(
        [HMMALIGN, str(hmm_path), str(tmp_path / "member.fasta")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    reference, aligned_row = _stockholm_row(aligned)
    match, insert = _hmm_file_emissions(hmm_path)
    background = np.asarray(Background(AMINO).residue_frequencies)[:20]
    expected, node = [], 0
    for ref, residue in zip(reference, aligned_row, strict=True):
        node += ref == "x"
        if residue.isupper():
            expected.append(match[node])
        elif residue.islower():
            expected.append(insert[node] if 1 <= node < hmm.M else background)
    expected = np.array(expected)
    expected /= expected.sum(axis=1, keepdims=True)
    assert len(expected) == len(member)
    assert any(r.islower() for r in aligned_row[:3])  # the flank is really there
    values = family_profile(hmm, "member", member)
    assert np.allclose(values, expected, atol=2e-4)  # the file keeps 5 decimals of -ln p


def test_audit_chooses_members_by_a_stable_hash():
    assert audit_rank("MKV") == audit_rank("MKV")
    ranks = [audit_rank("".join(random.Random(k).choices("ACDEF", k=30))) for k in range(2000)]
    assert 0.015 < np.mean(np.array(ranks) < 0.02) < 0.025


def _fasta(tmp_path: Path, records: list[Record]) -> Path:
    path = tmp_path / "queries.fasta"
    write_fasta(path, records)
    return path


@pytest.mark.slow
def test_build_reuse_records_provenance_and_caches_members_apart(tmp_path, family_records, capsys):
    queries = _fasta(tmp_path, family_records)
    common = ["--database", str(DEMO_DB), "-N", "2", "--threads", "2"]
    common += ["--audit", "0", "--audit-min", "0"]
    cache = tmp_path / "cache"
    argv = ["build", str(queries), *common, "--reuse", "pool", "--cache", str(cache)]
    assert main([*argv, "--out", str(tmp_path / "a.zarr")]) == 0
    assert main(["inspect", str(tmp_path / "a.zarr"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    reuse = info["provenance"]["reuse"]
    assert reuse["mode"] == "pool"
    assert reuse["groups"] < len(family_records)
    assert reuse["full_searches"] == reuse["groups"] + reuse["discarded_speculative"]
    assert info["provenance"]["cache"] == {
        "path": str(cache),
        "searched": len(family_records),
        "reused": 0,
    }
    assert reuse["members_in_store"] == len(family_records) - reuse["groups"]
    # Again: nothing searched, the same arrays.
    assert main([*argv, "--out", str(tmp_path / "b.zarr")]) == 0
    again = open_store(tmp_path / "b.zarr")
    assert again.attrs["cache"]["searched"] == 0
    assert again.attrs["reuse"]["full_searches"] == 0
    a, b = open_store(tmp_path / "a.zarr").read_all(), again.read_all()
    assert np.array_equal(a.profiles, b.profiles) and np.array_equal(a.n_hits, b.n_hits)
    # Representatives went to the per-query context, members to their own.
    stats = json.loads(_run(["cache", "stats", str(cache), "--json"], capsys))
    contexts = [c["context"] for c in stats["contexts"].values()]
    assert sorted(c.get("reuse", {}).get("mode", "none") for c in contexts) == ["none", "pool"]
    # A per-query build with the same cache reuses the representatives, searches the members.
    plain = ["build", str(queries), *common, "--cache", str(cache), "--out"]
    assert main([*plain, str(tmp_path / "c.zarr")]) == 0
    searched = open_store(tmp_path / "c.zarr").attrs["cache"]["searched"]
    assert searched == len(family_records) - reuse["groups"]


@pytest.mark.slow
def test_a_family_build_through_a_warm_per_query_cache_gets_family_targets(
    tmp_path, family_records, capsys
):
    """A per-query build fills the cache first; a family build through the same cache must
    still give members their family targets, not the per-query profiles it finds there."""
    queries = _fasta(tmp_path, family_records)
    common = ["--database", str(DEMO_DB), "-N", "2", "--threads", "2", "--cache"]
    common += [str(tmp_path / "cache"), "--audit", "0", "--audit-min", "0"]
    assert main(["build", str(queries), *common, "--out", str(tmp_path / "p.zarr")]) == 0
    family = ["build", str(queries), *common, "--reuse", "family"]
    assert main([*family, "--out", str(tmp_path / "f.zarr")]) == 0
    warm = open_store(tmp_path / "f.zarr")
    assert warm.attrs["reuse"]["members_in_store"] > 0
    # The same arrays as a family build with a cache of its own.
    cold = ["build", str(queries), "--database", str(DEMO_DB), "-N", "2", "--threads", "2"]
    cold += ["--cache", str(tmp_path / "cold"), "--audit", "0", "--audit-min", "0"]
    assert main([*cold, "--reuse", "family", "--out", str(tmp_path / "g.zarr")]) == 0
    a, b = warm.read_all(), open_store(tmp_path / "g.zarr").read_all()
    assert np.array_equal(a.profiles, b.profiles)
    per_query = open_store(tmp_path / "p.zarr").read_all()
    assert not np.array_equal(a.profiles, per_query.profiles)
    # And again through the now warm cache: nothing searched.
    assert main([*family, "--out", str(tmp_path / "h.zarr")]) == 0
    assert open_store(tmp_path / "h.zarr").attrs["cache"]["searched"] == 0


# Runs `protprof build`, SIGKILLed at the KILL-th atomic rename (0: none); prints the renames.
_KILLED_BUILD = """
import os, signal, sys
from protprof import atomic
from protprof.cli import main
kill, calls, rename = int(sys.argv[1]), [0], atomic._replace
def renamed(tmp, target):
    calls[0] += 1
    if calls[0] == kill:
        os.kill(os.getpid(), signal.SIGKILL)
    rename(tmp, target)
    print("renamed", target, flush=True)
atomic._replace = renamed
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_reuse_build_killed_at_any_publish_step_reruns_to_the_clean_store(
    tmp_path, family_records
):
    """Killed between its representatives' and its members' segments, a rerun grouped the
    members among themselves: the segments of one publish are committed together."""
    queries = _fasta(tmp_path, family_records[:5])  # two families

    def build(kill: int, name: str) -> subprocess.CompletedProcess:
        argv = ["build", str(queries), "--database", str(DEMO_DB), "-N", "2", "--threads", "2"]
        argv += ["--audit", "0", "--audit-min", "0", "--reuse", "pool"]
        argv += ["--cache", str(tmp_path / f"cache-{name}"), "--out", str(tmp_path / name)]
        return subprocess.run(
            [sys.executable, "-c", _KILLED_BUILD, str(kill), *argv], capture_output=True, text=True
        )

    clean = build(0, "clean.zarr")
    assert clean.returncode == 0, clean.stderr
    steps = clean.stdout.splitlines()
    # the search's shard, the representatives' and the members' segments, the commit, the store
    assert len(steps) == 5 and steps[3].endswith(".commit"), steps
    expected = open_store(tmp_path / "clean.zarr").read_all()
    for kill in range(1, len(steps) + 1):
        name = f"killed-{kill}.zarr"
        killed = build(kill, name)
        assert killed.returncode == -9 and not (tmp_path / name).exists()
        rerun = build(0, name)
        assert rerun.returncode == 0, rerun.stderr
        got = open_store(tmp_path / name).read_all()
        assert got.ids == expected.ids, kill
        for array in ("tokens", "profiles", "offsets", "n_hits", "neff", "split"):
            assert np.array_equal(getattr(got, array), getattr(expected, array)), (kill, array)
    # The killed publish's segments are ignored until `gc --drop-corrupt` removes them.
    cache = tmp_path / "cache-killed-3.zarr"
    segments = sorted(p.name for p in (cache / "segments").glob("*.zarr"))
    assert len(segments) == 3  # the killed publish's representatives, then the rerun's two
    assert main(["cache", "gc", str(cache), "--drop-corrupt", "--grace-hours", "0"]) == 0
    left = sorted(p.name for p in (cache / "segments").iterdir())
    assert len([p for p in left if p.endswith(".zarr")]) == 2
    assert not [p for p in left if p.startswith(".")], left


def _run(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.integration
def test_build_without_reuse_reports_one_search_per_query(tmp_path, family_records, capsys):
    queries = _fasta(tmp_path, family_records[:2])
    out = tmp_path / "s.zarr"
    assert (
        main(["build", str(queries), "--database", str(DEMO_DB), "-N", "1", "--out", str(out)])
        == 0
    )
    assert open_store(out).attrs["reuse"] == {"mode": "none", "groups": 2, "full_searches": 2}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--reuse", "pool", "--coverage", "0"], "coverage must be in"),
        (
            ["--reuse", "pool", "--audit", "2"],
            "--audit must be in [0, 1], got 2.0 (the config key search.audit)",
        ),
    ],
)
def test_bad_reuse_settings_fail_in_one_line(tmp_path, family_records, capsys, argv, message):
    queries = _fasta(tmp_path, family_records[:2])
    out = tmp_path / "s.zarr"
    code = main(["build", str(queries), "--database", str(DEMO_DB), "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err
    assert not out.exists()


MMSEQS = shutil.which("mmseqs")


@pytest.mark.slow
@pytest.mark.skipif(MMSEQS is None, reason="MMseqs2 is not installed (apt-get install mmseqs2)")
def test_family_shards_keep_families_together(family_records):
    sequences = [r.sequence for r in family_records]
    shards = family_shards(sequences, 3)
    # the three families (records 0-2, 3-4, 5-6) each stay in one job
    assert len({shards[0], shards[1], shards[2]}) == 1
    assert shards[3] == shards[4] and shards[5] == shards[6]
    assert len(set(shards)) > 1
    assert family_shards(sequences, 1) == [0] * len(sequences)


def _workflow(tmp_path: Path, records: list[Record], **search) -> Path:
    from helpers import set_queries, write_config

    write_config(tmp_path)
    set_queries(tmp_path, _fasta(tmp_path, records), **search)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pool", "family"])
def test_workflow_runs_each_reuse_mode_and_equals_build(tmp_path, family_records, mode):
    from helpers import assert_same_arrays, assert_same_rows, build, run_until_store

    shards = 2 if MMSEQS else 1
    workdir = _workflow(tmp_path, family_records, reuse=mode, audit=0.5)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["shards"] = shards
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    plan = run_until_store(workdir)
    assert plan["reuse"] == mode and plan["missing"] == len(family_records)
    store = open_store(workdir / "results/store/profiles.zarr")
    reuse = store.attrs["reuse"]
    assert reuse["full_searches"] < len(family_records) + reuse["audit"]["audited"]
    assert reuse["groups"] < len(family_records)
    # Each search job groups exactly as `build` of its queries does: the same rows.
    options = ["--max-length", "200", "--valid-fraction", "0.3", "--test-fraction", "0.1"]
    jobs = sorted((workdir / "results/plan/shards").glob("*.fasta"))
    assert len(jobs) == shards
    if shards == 1:  # one job: the same arrays, splits and order too
        build(workdir / "queries.fasta", tmp_path / "b.zarr", *options, "--reuse", mode)
        assert_same_arrays(store.path, tmp_path / "b.zarr")
    else:
        for k, job in enumerate(jobs):
            build(job, tmp_path / f"b{k}.zarr", *options, "--reuse", mode)
            part = open_store(tmp_path / f"b{k}.zarr").read_all()
            # splits aside: ingest splits a subset by its own clustering
            assert_same_rows(store.read_all(), part, splits=False)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"cache": False}, "needs the profile cache"),
        ({"database_chunks": 2}, "cannot run with database_chunks"),
    ],
)
def test_workflow_refuses_reuse_it_cannot_run(tmp_path, family_records, extra, message):
    from helpers import snakemake

    workdir = _workflow(tmp_path, family_records[:2], reuse="pool")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    (workdir / "config.yaml").write_text(yaml.safe_dump({**config, **extra}))
    run = snakemake(workdir, "-n", "results/store/profiles.zarr")
    assert run.returncode != 0 and message in run.stderr + run.stdout


def test_provenance_of_several_shards_adds_up():
    pooled = {
        "mode": "pool",
        "coverage": 0.8,
        "groups": 2,
        "representatives": 2,
        "members": 3,
        "full_searches": 3,
        "pool_searches": 3,
        "audit": {"audited": 1, "fraction_within": 1.0, "identical_included": 0.0},
    }
    alone = per_query_summary(4)
    both = combined_summary([pooled, alone], 9)
    assert (both["groups"], both["full_searches"], both["members"]) == (6, 7, 3)
    assert both["audit"]["audited"] == 1 and both["audit"]["fraction_within"] == 1.0
    assert combined_summary([alone, per_query_summary(2)], 6) == per_query_summary(6)
    assert run_summary("family", [], 0) == {"mode": "family", "groups": 0, "full_searches": 0}


@pytest.mark.integration
def test_assemble_refuses_shards_searched_with_other_reuse_settings(
    tmp_path, family_records, capsys
):
    queries = _fasta(tmp_path, [family_records[0], family_records[7]])
    common = ["build", str(queries), "--database", str(DEMO_DB), "-N", "1", "--audit-min", "0"]
    assert main([*common, "--out", str(tmp_path / "a.zarr")]) == 0
    assert main([*common, "--reuse", "pool", "--out", str(tmp_path / "b.zarr")]) == 0
    capsys.readouterr()
    out = tmp_path / "ab.zarr"
    assert main(
        ["assemble", str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"), "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert "different reuse settings" in err and "Traceback" not in err and not out.exists()
    ingested = tmp_path / "ingested.fasta"
    assert main(["ingest", str(queries), "--out", str(ingested)]) == 0
    cache = ["--cache", str(tmp_path / "c"), "--queries", str(ingested), "--fingerprint"]
    fingerprint = tmp_path / "fp.json"
    assert main(["prepare-db", str(DEMO_DB), "--out", str(fingerprint)]) == 0
    argv = ["assemble", str(tmp_path / "b.zarr"), "--out", str(out), *cache, str(fingerprint)]
    assert main([*argv, "--reuse", "family"]) == 1
    assert "not the --reuse family" in capsys.readouterr().err and not out.exists()
