"""The one parameter mechanism (protprof.params): a field's `param()` declaration gives its
option, help, check, option string and schema property; the CLI parses a params dataclass's
option string back to the same instance."""

from __future__ import annotations

import argparse
import pickle
import shlex
from dataclasses import dataclass, fields

import pytest

from protprof.alignments.files import ImportParams
from protprof.alignments.filters import FilterParams
from protprof.alignments.profiles import ProfileParams
from protprof.errors import ConfigError
from protprof.jackhmmer import SearchParams
from protprof.params import (
    add_options,
    check_params,
    declared,
    from_args,
    option_string,
    param,
    schema_of,
)
from protprof.queries.ingest import IngestParams
from protprof.search.family import ReuseParams


@dataclass(frozen=True)
class Example:
    count: int = param(3, help="how many", bounds="[1, inf)")
    share: float | None = param(None, help="a fraction", bounds="(0, 1]")
    mode: str = param("a", help="which", flag="--kind", key="kind", choices=("a", "b"))
    names: tuple[str, ...] = param(("x", "y"), help="some names")
    loud: bool = param(False, help="say more")
    hidden: int = param(7, help="set in code", cli=False, config=False)

    def __post_init__(self) -> None:
        check_params(self, "example")


def _parse(cls: type, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(parser, cls)
    return parser.parse_args(argv)


def test_options_defaults_and_help():
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    text = parser.format_help()
    assert "--count COUNT  how many (default 3)" in text
    assert "--kind {a,b}" in text and "--hidden" not in text
    assert from_args(Example, parser.parse_args([])) == Example()
    args = parser.parse_args(["--count", "5", "--kind", "b", "--names", "p,q", "--loud"])
    assert from_args(Example, args) == Example(5, None, "b", ("p", "q"), True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"count": 0}, "example.count must be >= 1, got 0"),
        ({"count": 2.5}, "example.count must be an integer >= 1, got 2.5"),
        ({"count": True}, "example.count must be an integer >= 1, got True"),
        ({"share": 0}, r"example.share must be in \(0, 1\], got 0.0"),
        ({"share": float("nan")}, r"example.share must be a finite number in \(0, 1\], got nan"),
        ({"mode": "c"}, r"example.kind must be one of \('a', 'b'\), got 'c'"),
        ({"loud": 1}, "example.loud must be a bool, got 1"),
    ],
)
def test_check_names_the_key_and_value(changes, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        Example(**changes)


def test_a_bad_option_is_named_as_typed_with_its_config_key():
    """On the command line the user typed a flag, not a config key: the error names the flag."""
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    with pytest.raises(ConfigError, match=r"^--count must be >= 1, got 0 \(the config key "):
        from_args(Example, parser.parse_args(["--count", "0"]))
    # A value not given as an option keeps the key alone.
    with pytest.raises(ConfigError, match=r"^example\.count must be >= 1, got 0$"):
        from_args(Example, parser.parse_args([]), count=0)


def test_a_bad_value_keeps_its_parts_across_processes():
    """Worker processes send errors back pickled: the key and the requirement survive."""
    with pytest.raises(ConfigError) as caught:
        Example(count=0)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value) == "example.count must be >= 1, got 0"
    assert isinstance(copy, ConfigError)


def test_int_for_float_becomes_float_and_list_a_tuple():
    example = Example(share=1, names=["z"])  # type: ignore[arg-type]
    assert example.share == 1.0 and isinstance(example.share, float)
    assert example.names == ("z",)


def test_schema_property_from_the_declaration():
    props = schema_of(Example)
    assert props["count"] == {"type": "integer", "minimum": 1, "default": 3}
    assert props["share"] == {
        "type": ["number", "null"],
        "exclusiveMinimum": 0.0,
        "maximum": 1.0,
        "default": None,
    }
    assert props["kind"] == {"enum": ["a", "b"], "default": "a"}
    assert props["names"]["default"] == ["x", "y"] and "hidden" not in props


@pytest.mark.parametrize(
    "instance",
    [
        IngestParams(min_length=5, too_long="skip", split_method="hash"),
        SearchParams(iterations=2, incE=1e-5, max_hits=50),
        ProfileParams("frequency", 0.5),
        ReuseParams("pool", 0.7, 0.1, 5),
        FilterParams(max_seqs=10, min_coverage=0.5),
        ImportParams("openfold", ("a b.sto", "c.a3m"), "merge", "q 1", True, "a3m"),
    ],
)
def test_option_string_parses_back_to_the_instance(instance):
    args = _parse(type(instance), shlex.split(option_string(instance)))
    assert from_args(type(instance), args) == instance


def test_every_field_of_a_params_dataclass_is_declared_with_help():
    for cls in (
        IngestParams,
        SearchParams,
        ProfileParams,
        ReuseParams,
        FilterParams,
        ImportParams,
    ):
        assert [f.name for f, _ in declared(cls)] == [f.name for f in fields(cls)]
        assert all(m.help for _, m in declared(cls)), cls


def test_prefixed_and_required_options():
    from pathlib import Path

    from protprof.evaluation.settings import BenchmarkData, GuardParams

    parser = argparse.ArgumentParser()
    add_options(parser, GuardParams, prefix="guard")
    add_options(parser, BenchmarkData, required=("data",))
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --data is required
    args = parser.parse_args(["--data", "d", "--guard-evalue", "0.5"])
    assert from_args(GuardParams, args, prefix="guard") == GuardParams(0.5)
    assert from_args(BenchmarkData, args).data == Path("d")
    assert BenchmarkData("x").data == Path("x")  # a config's string becomes a path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # E <= 0 would make phmmer report nothing, so the guard would drop nothing, silently
        (
            ["guard", "q.fasta", "--data", "data", "--out", "g.fasta", "-E", "0"],
            "-E must be > 0, got 0.0",
        ),
        (["import", "a.a3m", "--out", "i.zarr", "--guard-evalue", "-1"], "--guard-evalue must"),
        (["build", "q.fasta", "--database", "d.fasta", "--out", "o.zarr", "--cpu", "0"], ">= 1"),
        (
            ["guard", "q.fasta", "--data", "data", "--out", "g.fasta", "--threads", "-2"],
            ">= 1, got '-2'",
        ),
    ],
)
def test_guard_evalue_and_thread_counts_are_checked_before_any_work(
    tmp_path, monkeypatch, capsys, argv, message
):
    from protprof.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("q.fasta", "d.fasta", "a.a3m"):
        (tmp_path / name).write_text(">q\nMKV\n")
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (a bad type)
        code = e.code
    assert code != 0
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.a3m", "d.fasta", "q.fasta"]
