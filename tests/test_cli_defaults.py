"""One set of defaults: `protprof build` with no options searches, profiles and ingests exactly
as the workflow's default configuration does (so both give the same cache keys); the chunked
search's internal steps are callable but not listed; `train --help` lists every training key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from protprof import cli, workflow_params
from protprof.queries.ingest import IngestParams
from protprof.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CHUNKED_STEPS = {"init-state", "search-chunk", "merge-iteration", "finish-shard"}


def _build_args(*extra: str):
    return cli.parser().parse_args(["build", "q.fasta", "--database", "db", "--out", "o", *extra])


def test_build_defaults_are_the_workflow_defaults():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    search, profile = cli._search_settings(_build_args())
    assert search == workflow_params.search(config)
    assert search.iterations == 3
    assert profile == workflow_params.profile(config)
    ingest = cli._ingest_params(_build_args())
    assert ingest == IngestParams(**config["ingest"])  # workflow_params.ingest, without MMseqs2


def test_cpu_is_hmmer_name_for_threads():
    assert _build_args("--cpu", "7").threads == 7
    assert _build_args("--threads", "7").threads == 7


def test_chunked_steps_are_hidden_but_callable(capsys):
    listed = {
        action.dest
        for action in cli.parser()._subparsers._group_actions[0]._choices_actions  # type: ignore[union-attr]
    }
    assert listed == set(cli.COMMANDS) - CHUNKED_STEPS
    assert cli.HIDDEN == CHUNKED_STEPS
    top = cli.parser().format_help()
    for step in CHUNKED_STEPS:
        assert f"\n    {step} " not in top
        with pytest.raises(SystemExit) as exit:
            cli.main([step, "--help"])
        assert exit.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: protprof {step} ")


def test_train_help_lists_every_key_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    keys = out[out.index("training keys") :].splitlines()[1:]
    fields = dataclasses.fields(TrainConfig)
    assert [line.split()[0] for line in keys] == [f.name for f in fields]
    rows = {line.split()[0]: line.split() for line in keys}
    assert rows["lr"][1:5] == ["float", "default", "0.001", "in"]
    assert rows["objective"][3] == "'multitask'"
    assert rows["model_overrides"][3] == "{}"
    assert " ".join(rows["precision"][4:]) == "one of auto, bf16, fp16, fp32"
