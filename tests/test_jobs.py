"""The workflow's Python side (protprof.workflow_params): one source of truth for parameters,
option strings the CLI parses back to the same parameters, and the resource model's numbers."""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from protprof import workflow_params
from protprof.cli import _ingest_params, _search_settings, parser
from protprof.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def config(**sections) -> dict:
    """The demo config with schema defaults filled in, as Snakemake's `validate` leaves it."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    base.update(copy.deepcopy(sections))
    for key, prop in SCHEMA["properties"].items():
        if prop.get("type") == "object":
            defaults = {k: v["default"] for k, v in prop["properties"].items() if "default" in v}
            base[key] = {**defaults, **base.get(key, {})}
        elif "default" in prop:
            base.setdefault(key, prop["default"])
    return base


def test_schema_equals_the_dataclasses():
    """Every params-backed key of the schema: type or choices, bounds and default."""
    assert workflow_params.schema_defaults_mismatch(SCHEMA) == []
    changed = copy.deepcopy(SCHEMA)
    changed["properties"]["ingest"]["properties"]["min_length"]["default"] = 1
    changed["properties"]["search"]["properties"]["preset"]["enum"] = ["hmmer"]
    changed["properties"]["filters"]["properties"]["min_coverage"]["maximum"] = 0.5
    assert workflow_params.schema_defaults_mismatch(changed) == [
        "ingest.min_length: default schema 1, dataclass 20",
        "search.preset: enum schema ['hmmer'], dataclass ['hmmer', 'alphafold']",
        "filters.min_coverage: maximum schema 0.5, dataclass 1.0",
    ]


@pytest.mark.parametrize(
    "search",
    [
        {"preset": "hmmer", "iterations": 3},
        {"preset": "alphafold"},
        {"preset": "hmmer", "incE": 1e-5, "max_hits": 50},
    ],
)
def test_option_strings_parse_back_to_the_same_parameters(search):
    cfg = config(search=search, ingest={"min_length": 30, "too_long": "skip"})
    argv = [
        "build",
        "q.fa",
        "--database",
        "db.fa",
        "--out",
        "o.zarr",
        *workflow_params.search_options(cfg).split(),
        *workflow_params.ingest_options(cfg).split(),
    ]
    args = parser().parse_args(argv)
    searched, profile = _search_settings(args)
    assert searched == workflow_params.search(cfg) and profile == workflow_params.profile(cfg)
    assert _ingest_params(args) == workflow_params.ingest(cfg)
    assert asdict(_ingest_params(args))["min_length"] == 30


def test_iterations_come_from_the_preset():
    assert workflow_params.iterations(config(search={"preset": "alphafold"})) == 1
    assert workflow_params.iterations(config(search={"preset": "hmmer"})) == 3
    assert workflow_params.iterations(config(search={"preset": "alphafold", "iterations": 2})) == 2


def test_cross_field_rules_fail_naming_the_keys():
    with pytest.raises(ConfigError, match="min_length <= max_length, got 50, 10"):
        workflow_params.ingest_options(config(ingest={"min_length": 50, "max_length": 10}))
    with pytest.raises(ConfigError, match="valid_fraction \\+ test_fraction"):
        workflow_params.ingest_options(
            config(ingest={"valid_fraction": 0.5, "test_fraction": 0.5})
        )


def test_resource_model_for_the_uniref90_plan():
    plan = yaml.safe_load((ROOT / "workflow/plans/uniref90.yaml").read_text())
    chunked = config(**plan)
    # No queue limit here (test_job_sizes.py tests max_job_hours): the model alone.
    chunked["max_job_hours"] = 1000
    cfg = {**chunked, "database_chunks": 0}
    assert workflow_params.search_mem_mb(cfg) == 1024 + 3 * 55_000  # 3 B per residue of 5.5e10
    assert workflow_params.search_mem_mb(chunked) == 1024 + int(3 * 5.5e10 / 16 / 1e6)
    # per-cell rate x cells x margin: all iterations in one job vs one iteration on 1/16
    cells = cfg["query_residues"] / cfg["shards"] * 5.5e10
    whole = 1.5 * cells * 3 * 3e-10 / cfg["search"]["threads"] / 60
    assert workflow_params.search_runtime_min(cfg) == pytest.approx(whole, rel=1e-3)
    assert workflow_params.search_runtime_min(chunked) == pytest.approx(whole / 3 / 16, rel=1e-3)
    assert workflow_params.train_launcher(cfg).startswith(
        "torchrun --standalone --nproc-per-node 4"
    )


def test_alignment_reference_requests_the_whole_database():
    """`protprof reference` loads the whole database even when the search jobs take chunks:
    in the UniRef90 plan 166 GB, not a chunk job's 11 GB."""
    plan = yaml.safe_load((ROOT / "workflow/plans/uniref90.yaml").read_text())
    chunked = config(**plan)
    assert workflow_params.reference_mem_mb(chunked) == 1024 + 3 * 55_000
    assert workflow_params.reference_mem_mb(chunked) > 14 * workflow_params.search_mem_mb(chunked)
    # 1,234 wild-type residues x 5.5e10 x 3 iterations at the search rate, on 2 threads
    minutes = 1.5 * 1234 * 5.5e10 * 3 * 3e-10 / chunked["evaluation"]["threads"] / 60
    assert workflow_params.reference_runtime_min(chunked) == pytest.approx(minutes, rel=1e-3)
    assert workflow_params.reference_runtime_min(config()) == 10  # the demo database: the floor


def test_evaluation_data_path_is_one_shell_word():
    options = workflow_params.evaluation_options(config(evaluation={"data": "/lab data/bench's"}))
    assert shlex.split(options)[:2] == ["--data", "/lab data/bench's"]


def test_residue_estimate_from_file_sizes(tmp_path):
    plain, packed = tmp_path / "a.fasta", tmp_path / "b.fasta.gz"
    plain.write_bytes(b"x" * 1000)
    packed.write_bytes(b"x" * 1000)
    assert workflow_params.file_residues(str(plain)) == 1000
    assert workflow_params.file_residues(str(packed)) == 2500
    assert workflow_params.file_residues(str(tmp_path / "not-yet.fasta")) == 0


def test_evaluation_labels_fill_the_objective_and_stay_distinct():
    config = {"evaluation": {"label": "{objective}-family"}, "train": {"objectives": ["mlm"]}}
    assert workflow_params.evaluation_labels(config) == {"mlm": "mlm-family"}
    config["train"]["objectives"] = ["mlm", "profile"]
    config["evaluation"]["label"] = "same"
    with pytest.raises(ConfigError, match="several objectives one label"):
        workflow_params.evaluation_labels(config)
    config["evaluation"]["label"] = "{seed}"
    with pytest.raises(ConfigError, match="only {objective} may be filled in"):
        workflow_params.evaluation_labels(config)


def test_every_rule_reads_its_resources_from_the_table():
    rules = ROOT / "workflow" / "rules"
    text = "\n".join(p.read_text() for p in sorted(rules.glob("*.smk")))
    names = set(re.findall(r"^\s*(?:rule|checkpoint) (\w+):", text, re.M))
    assert names <= set(workflow_params.resources(config())), names - set(
        workflow_params.resources(config())
    )
    assert not re.findall(r"(?:mem_mb|runtime)=\d", text)  # no literal left in a rule


def test_training_resources_scale_with_the_model_and_steps():
    plan = config(**yaml.safe_load((ROOT / "workflow/plans/uniref90.yaml").read_text()))
    demo = workflow_params.resources(config())["train_model"]
    assert demo == {"mem_mb": 8192 + 2, "runtime": 24 * 60}  # CPU: the queue's limit
    big = copy.deepcopy(plan)
    big["train"]["config"] = str(ROOT / "workflow/plans/train-esm2-150m.yaml")
    four = workflow_params.resources(big)["train_model"]
    big["train"]["devices"] = 8
    eight = workflow_params.resources(big)["train_model"]
    # 16 B per parameter per process: esm2-150m's ~148 M parameters on 4 and 8 GPUs
    assert four["mem_mb"] == pytest.approx(8192 + 4 * 16 * 148.4, rel=0.01)
    assert eight["mem_mb"] - 8192 == pytest.approx(2 * (four["mem_mb"] - 8192), abs=2)
    assert 60 < eight["runtime"] < four["runtime"] < 24 * 60
