"""The task registry on real data: the leakage guard catches every task's test sequences, and a
task registered here (a toy task of real Pfam seed sequences) is picked up by `evaluate`,
`guard`, `compare` and the workflow's option check with no other edit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import DEMO_QUERIES, SHARED_DATA

from protprof import workflow_params
from protprof.cli import main
from protprof.errors import ConfigError
from protprof.evaluation import registry
from protprof.evaluation.leakage import evaluation_test_sequences, guard
from protprof.queries.fasta import Record, read_fasta

pytestmark = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"benchmark data {SHARED_DATA} not present"
)
BUILT_IN = ("ss", "homology", "stability", "fluorescence", "contacts", "variants", "profile")


@pytest.fixture(scope="module")
def tests() -> list[tuple[str, str]]:
    return evaluation_test_sequences(SHARED_DATA)


@pytest.fixture(scope="module")
def unrelated() -> Record:
    """A real demo query (UniProtKB) with no homologue among the test sequences."""
    return read_fasta(DEMO_QUERIES)[0]


def near_copy(sequence: str) -> str:
    """A 90 %-identical copy: every tenth residue changed."""
    return "".join("A" if k % 10 == 5 and c != "A" else c for k, c in enumerate(sequence))


def test_every_built_in_task_is_registered_and_declares_its_test_sequences(tests):
    assert registry.names()[: len(BUILT_IN)] == BUILT_IN
    names = {name for name, _ in tests}
    for name in BUILT_IN:
        own = registry.get(name).test_sequences(SHARED_DATA)
        # The store's test split is cut from the (guarded) queries themselves: nothing to add.
        assert bool(own) == (name != "profile"), name
        # Each one is in the guard's list (under the first task that tests on it).
        in_guard = {s for _, s in tests}
        assert all(s in in_guard for _, s in own), name
    # The six zero-shot wild types, the four added after the hand-written list included.
    wild_types = registry.get("variants").test_sequences(SHARED_DATA)
    assert [n for n, _ in wild_types] == ["BLAT_ECOLX", "Pab1", "Ube4b", "Bgl3", "GB1", "avGFP"]
    assert {"variants/Pab1", "variants/Ube4b", "variants/Bgl3", "variants/GB1"} <= names
    assert len({s for _, s in tests}) == len(tests)  # each sequence once


@pytest.mark.parametrize("task", [t for t in BUILT_IN if t != "profile"])
def test_guard_drops_each_tasks_test_sequences_and_keeps_an_unrelated_query(
    task, tests, unrelated
):
    """A probe set of the task's real test sequences (first, middle, last; for the zero-shot
    assays every wild type), verbatim and 90 %-identical, is dropped; a real unrelated query
    is kept."""
    own = registry.get(task).test_sequences(SHARED_DATA)
    probes = own if task == "variants" else [own[0], own[len(own) // 2], own[-1]]
    filed = {sequence: name for name, sequence in tests}
    queries = [Record(f"verbatim {n}", s) for n, s in probes]
    queries += [Record(f"copy {n}", near_copy(s)) for n, s in probes]
    result = guard([*queries, unrelated], tests)
    assert [r.id for r in result.kept] == [unrelated.id]
    assert [d["id"] for d in result.dropped] == [q.id for q in queries]
    for (_, sequence), hit in zip(probes, result.dropped, strict=False):
        assert hit["test_id"] == filed[sequence] and hit["evalue"] < 1e-10, hit


def read_stockholm(path) -> list[tuple[str, str]]:
    """The toy task's reader: (name, ungapped sequence) of a Stockholm alignment."""
    rows: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "//")):
            name, aligned = line.split()
            rows[name] = rows.get(name, "") + aligned
    return [(n, "".join(c for c in a.upper() if c.isalpha())) for n, a in rows.items()]


LUXC = SHARED_DATA / "pfam_seeds_hmmer" / "LuxC.sto"


def toy_sequences(data) -> list[tuple[str, str]]:
    """The toy task tests on the first three LuxC seed sequences (no built-in task has a
    homologue of them; the fourth is a query the guard must now catch)."""
    return read_stockholm(data / "pfam_seeds_hmmer" / "LuxC.sto")[:3]


def toy_run(model, inputs, limits):
    from protprof.evaluation.tasks import Result, mean_embeddings

    sequences = [s for _, s in toy_sequences(inputs.data)]
    value = float(np.abs(mean_embeddings(model, sequences)).mean())
    return [
        Result("toy task (LuxC)", "toy distance", value, value, value, 0, len(sequences)),
        Result("toy task (LuxC)", "toy reference", 1.0, 1.0, 1.0, 0, len(sequences)),
    ]


TOY = registry.Task(
    "toy",
    "toy task",
    "probe",
    toy_run,
    (
        registry.Metric("toy distance", False),
        registry.Metric("toy reference", False, baseline=True, plotted=False),
    ),
    toy_sequences,
    "a task registered by the test suite",
)


@pytest.fixture
def toy():
    registry.register(TOY)
    yield TOY
    registry.unregister(TOY.name)


def test_guard_picks_up_a_registered_task(toy, unrelated, tmp_path):
    member = Record("LuxC member 4", read_stockholm(LUXC)[3][1])
    before = [n for n in registry.names() if n != "toy"]
    kept = guard([member, unrelated], registry.test_sequences(SHARED_DATA, before)).kept
    assert [r.id for r in kept] == [member.id, unrelated.id]  # no built-in task covers LuxC
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">{member.id}\n{member.sequence}\n>{unrelated.id}\n{unrelated.sequence}\n")
    out, report = tmp_path / "kept.fasta", tmp_path / "guard.json"
    args = ["guard", str(fasta), "--data", str(SHARED_DATA), "--out", str(out)]
    assert main([*args, "--report", str(report)]) == 0
    assert [r.id for r in read_fasta(out)] == [unrelated.id]
    said = json.loads(report.read_text())
    assert said["dropped"][0]["test_id"].startswith("toy/")
    assert said["test_sequences_per_task"]["toy"] == 3


@pytest.mark.integration
def test_evaluate_and_compare_pick_up_a_registered_task(toy, tiny_checkpoint, tmp_path):
    out = tmp_path / "report"
    args = ["evaluate", str(tiny_checkpoint), "--data", str(SHARED_DATA), "--tasks", "toy"]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["metric"]: r for r in report["results"]}
    assert set(rows) == {"toy distance", "toy reference"} and rows["toy distance"]["n_test"] == 3
    assert list(report["seconds"]) == ["toy"]
    # Three seeds of two arms: the model's metric is differenced; the registered baseline row
    # (a name no convention marks as model-free) is not.
    paths = []
    for seed in range(3):
        for label, shift in (("mlm", 0.0), ("profile", 0.1)):
            results = [{**r, "value": r["value"] + shift + 0.01 * seed} for r in report["results"]]
            path = tmp_path / f"{label}{seed}.json"
            path.write_text(
                json.dumps({**report, "label": label, "seed": seed, "results": results})
            )
            paths.append(str(path))
    table_path, figure = tmp_path / "c.md", tmp_path / "c.png"
    assert main(["compare", *paths, "--out", str(table_path), "--figure", str(figure)]) == 0
    table = table_path.read_text()
    assert "| toy task (LuxC) | toy distance | profile | 3 | +0.100" in table
    assert "| toy reference | profile |" not in table
    assert figure.stat().st_size > 1000
    assert registry.describe("toy task (LuxC)", "toy distance").direction == "lower is better"
    # The workflow's parse-time check accepts the new name (and still refuses unknown ones).
    config = {"evaluation": {"data": "d", "tasks": ["toy"], "max_train": 0, "max_test": 0}}
    assert "--tasks toy" in workflow_params.evaluation_options(config)
    with pytest.raises(ConfigError, match="unknown task"):
        workflow_params.evaluation_options(
            {"evaluation": {**config["evaluation"], "tasks": ["nope"]}}
        )


def test_without_the_entry_the_same_rows_fall_back_to_name_conventions():
    """A report row of a task no entry declares (an old or foreign report) is read by its
    metric's name: a head's suffix, and the reference and KL baselines as model-free."""
    assert registry.task_of_row("toy task (LuxC)") is None
    plain = registry.describe("toy task (LuxC)", "toy reference")
    assert not plain.baseline and plain.plotted and plain.direction == ""
    kl = registry.describe("profile prediction (store test split)", "KL, model profile head")
    assert kl.head == "profile head" and kl.direction == "lower is better"
    mean = registry.describe(
        "zero-shot variant effects (mean of 6 assays)", "mean Spearman rho, alignment profile"
    )
    assert mean.baseline and mean.plotted and registry.is_zero_shot("zero-shot (A)")


@pytest.mark.integration
def test_workflow_checks_task_names_and_plans_the_reference_from_the_registry(tmp_path):
    from helpers import SNAKEMAKE, job_counts, snakemake, write_config

    if SNAKEMAKE is None:
        pytest.skip("snakemake is not installed")
    evaluation = {"data": str(SHARED_DATA), "max_train": 10, "max_test": 10}
    write_config(tmp_path, evaluation={**evaluation, "tasks": ["ss", "nope"]})
    run = snakemake(tmp_path, "--dry-run")
    assert run.returncode != 0 and "unknown task(s) ['nope']" in run.stderr + run.stdout
    for tasks, reference in ((["ss", "variants"], True), (["ss"], False)):
        write_config(tmp_path, evaluation={**evaluation, "tasks": tasks})
        planned = job_counts(snakemake(tmp_path, "--dry-run").stdout)
        assert ("alignment_reference" in planned) == reference, tasks
