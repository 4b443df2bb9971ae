"""One parameter mechanism: a parameters dataclass is the single source of each setting's
default, command-line flag, help, choices and bounds, declared with `param()` in its field.

From the fields, this module makes the argparse options (`add_options`, `from_args`), checks
an instance (`check_params`: type, finiteness, bounds, choices; errors name `section.key` and the
value), writes the workflow's option strings (`option_string`) and the JSON-schema properties
the workflow's config schema must equal (`schema_of`, `schema_mismatch`). It imports the
standard library and `protprof.errors` only: the workflow and every command import it.

Bounds are intervals as text, `"[0, 1)"`, `"(0, inf)"`: the error message and the schema's
`minimum`/`exclusiveMaximum` both come from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, Field, dataclass
from pathlib import Path
from typing import Any

from protprof.errors import BadValue

_KEY = "protprof.param"


@dataclass(frozen=True)
class Meta:
    """What a field's `param()` declared besides its default."""

    help: str
    flag: str | None = None  # the option's name; None: --field-name
    aliases: tuple[str, ...] = ()  # further option names (e.g. HMMER's --cpu)
    choices: tuple[Any, ...] | None = None
    bounds: str | None = None  # an interval, "[1, inf)"
    key: str | None = None  # its key in the workflow config, when not the field name
    cli: bool = True  # False: no command-line option
    config: bool = True  # False: no key in the workflow config (set in code only)


def param(
    default: Any = MISSING,
    *,
    help: str,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: tuple[Any, ...] | None = None,
    bounds: str | None = None,
    key: str | None = None,
    cli: bool = True,
    config: bool = True,
    default_factory: Any = MISSING,
) -> Any:
    """A dataclass field that declares its setting: default, help, option name, choices and
    bounds (an interval such as `"[0, 1)"`)."""
    if bounds is not None:
        _interval(bounds)  # a malformed interval fails at import, not at the first check
    meta = Meta(
        help, flag, tuple(aliases), tuple(choices) if choices else None, bounds, key, cli, config
    )
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={_KEY: meta}
    )


def meta(f: Field[Any]) -> Meta | None:
    """The `param()` declaration of a field (None for a plain field)."""
    return f.metadata.get(_KEY)


def declared(cls: Any) -> list[tuple[Field[Any], Meta]]:
    """The fields of a dataclass (class or instance) declared with `param()`, in order."""
    return [(f, m) for f in dataclasses.fields(cls) if (m := meta(f)) is not None]


def default_of(f: Field[Any]) -> Any:
    """A field's default (its factory called, when it has one)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def kind_of(f: Field[Any]) -> tuple[str, bool]:
    """(`int`, `float`, `str`, `Path`, `bool`, `dict` or `tuple`; whether None is allowed),
    from the annotation as written (`int | None`, `tuple[str, ...]`)."""
    text = str(f.type).replace(" ", "")
    parts = [p for p in text.split("|") if p != "None"]
    base = parts[0].split("[")[0] if parts else "str"
    return base, "None" in text.split("|")


def key_of(f: Field[Any], m: Meta) -> str:
    """The field's key in the workflow config."""
    return m.key or f.name


def flag_of(f: Field[Any], m: Meta) -> str:
    """The field's command-line option."""
    return m.flag or "--" + f.name.replace("_", "-")


# ---- checking ------------------------------------------------------------------------------


def _interval(text: str) -> tuple[float, float, bool, bool]:
    if text[0] not in "[(" or text[-1] not in "])" or text.count(",") != 1:
        raise ValueError(f"not an interval: {text!r}")
    low, high = (float(x) for x in text[1:-1].split(","))
    return low, high, text[0] == "[", text[-1] == "]"


def within(value: float, bounds: str) -> bool:
    """Whether `value` lies in the interval `bounds`."""
    low, high, closed_low, closed_high = _interval(bounds)
    above = value >= low if closed_low else value > low
    below = value <= high if closed_high else value < high
    return above and below


def describe(bounds: str | None) -> str:
    """' >= 1' or ' in (0, 1]': the interval as an error message states it ('' for none)."""
    if bounds is None:
        return ""
    low, high, closed_low, _ = _interval(bounds)
    if math.isinf(high):
        return f" {'>=' if closed_low else '>'} {bounds[1:].split(',')[0].strip()}"
    return f" in {bounds}"


def check_value(
    name: str,
    kind: str,
    value: Any,
    bounds: str | None = None,
    choices: tuple[Any, ...] | None = None,
    nullable: bool = False,
) -> Any:
    """`value` if it has the type `kind`, is finite and lies in `bounds` and `choices` (an int
    given for a float comes back as a float); otherwise a ConfigError naming `name` and the
    value."""
    if value is None and nullable:
        return None
    if kind in ("int", "float"):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if kind == "int" and not (number and isinstance(value, int)):
            raise BadValue(name, f"be an integer{describe(bounds)}, got {value!r}")
        if not number or not math.isfinite(value):
            raise BadValue(name, f"be a finite number{describe(bounds)}, got {value!r}")
        value = int(value) if kind == "int" else float(value)
        if bounds is not None and not within(value, bounds):
            raise BadValue(name, f"be{describe(bounds)}, got {value!r}")
    else:
        expected = {"str": str, "Path": Path, "bool": bool, "dict": dict, "tuple": tuple}[kind]
        if kind == "tuple" and isinstance(value, list):
            value = tuple(value)
        if kind == "Path" and isinstance(value, str):
            value = Path(value)
        if not isinstance(value, expected):
            raise BadValue(name, f"be a {kind}, got {value!r}")
    if choices is not None and value not in choices:
        raise BadValue(name, f"be one of {choices}, got {value!r}")
    return value


def check_params(instance: Any, section: str) -> None:
    """Check every declared field of a (frozen) dataclass instance, in place: types, bounds and
    choices; errors name `section.key`. Call it first in `__post_init__`."""
    for f, m in declared(instance):
        kind, nullable = kind_of(f)
        name = f"{section}.{key_of(f, m)}"
        value = check_value(name, kind, getattr(instance, f.name), m.bounds, m.choices, nullable)
        object.__setattr__(instance, f.name, value)


# ---- command line --------------------------------------------------------------------------


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


_ARG_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "Path": Path,
    "tuple": _comma_list,
}


def _shown(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: Any,
    defaults: bool = True,
    prefix: str = "",
    required: tuple[str, ...] = (),
) -> None:
    """Add an option per declared field of `cls` (dest: the field name). `defaults=False`
    leaves every option at None (unset: the caller's preset or the config decides). With a
    `prefix`, options are `--prefix-name` (dest `prefix_name`), for a second use of one
    dataclass in a command; `required` names fields that must be given."""
    for f, m in declared(cls):
        if not m.cli:
            continue
        kind, _ = kind_of(f)
        names = (
            [f"--{prefix}-{f.name}".replace("_", "-")] if prefix else [flag_of(f, m), *m.aliases]
        )
        dest = _dest(f.name, prefix)
        default = default_of(f)
        if kind == "bool":
            parser.add_argument(*names, dest=dest, action="store_true", help=m.help)
            continue
        if f.name in required:
            parser.add_argument(
                *names, dest=dest, type=_ARG_TYPES[kind], required=True, help=m.help
            )
            continue
        shown = f" (default {_shown(default)})" if defaults and default is not None else ""
        parser.add_argument(
            *names,
            dest=dest,
            type=_ARG_TYPES[kind],
            default=default if defaults else None,
            choices=list(m.choices) if m.choices else None,
            help=m.help.replace("%", "%%") + shown,
        )


def _dest(name: str, prefix: str) -> str:
    return f"{prefix}_{name}".replace("-", "_") if prefix else name


def given(cls: Any, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The declared fields' values in `args` that are set (not None), by field name."""
    values = {
        f.name: getattr(args, _dest(f.name, prefix), None) for f, m in declared(cls) if m.cli
    }
    return {k: v for k, v in values.items() if v is not None}


def from_args(cls: Any, args: argparse.Namespace, prefix: str = "", **extra: Any) -> Any:
    """An instance of `cls` from parsed options (unset ones at their defaults)."""
    with flags_named(cls, args, prefix, not_options=tuple(extra)):
        return cls(**{**given(cls, args, prefix), **extra})


@contextmanager
def flags_named(
    cls: Any, args: argparse.Namespace, prefix: str = "", not_options: tuple[str, ...] = ()
) -> Iterator[None]:
    """A bad value the user gave as an option is named by that option (its first name: `-N 0`
    and `--iterations 0` both give "-N must be >= 1"), with its config key after it; checks
    name config keys otherwise (and for the fields in `not_options`, which the caller set)."""
    try:
        yield
    except BadValue as e:
        set_here = given(cls, args, prefix)
        for f, m in declared(cls):
            options = m.cli and f.name in set_here and f.name not in not_options
            if options and e.key.endswith(f".{key_of(f, m)}"):
                flag = f"--{prefix}-{f.name}".replace("_", "-") if prefix else flag_of(f, m)
                raise BadValue(flag, f"{e.requirement} (the config key {e.key})") from None
        raise


def from_config(cls: Any, section: dict[str, Any], **extra: Any) -> Any:
    """An instance of `cls` from a workflow config section (its keys; others are ignored)."""
    values = {
        f.name: section[key_of(f, m)]
        for f, m in declared(cls)
        if m.config and key_of(f, m) in section
    }
    return cls(**{**values, **extra})


def option_string(instance: Any) -> str:
    """`--flag value` for every option of an instance that is a workflow key and is set
    (None and False are left out; a tuple is comma-joined), quoted for the shell: the option
    strings the workflow's rules pass."""
    parts = []
    for f, m in declared(instance):
        value = getattr(instance, f.name)
        if not (m.cli and m.config) or value is None or value is False:
            continue
        flag = flag_of(f, m)
        parts.append(flag if value is True else f"{flag} {shlex.quote(_shown(value))}")
    return " ".join(parts)


# ---- the workflow's JSON schema ------------------------------------------------------------

_SCHEMA_TYPES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "Path": "string",
    "bool": "boolean",
    "dict": "object",
    "tuple": "array",
}
# What `schema_mismatch` compares; descriptions and item schemas are the schema's own.
_COMPARED = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


def schema_of(cls: Any, overrides: bool = False) -> dict[str, dict[str, Any]]:
    """The JSON-schema property of each declared field, by config key: type (or enum), bounds
    and default. `overrides=True`: every value may be null, the default (a preset decides)."""
    props = {}
    for f, m in declared(cls):
        if not m.config:
            continue
        kind, nullable = kind_of(f)
        nullable = nullable or overrides
        prop: dict[str, Any] = {}
        if m.choices:
            prop["enum"] = [*m.choices, *([None] if nullable else [])]
        else:
            prop["type"] = [_SCHEMA_TYPES[kind], "null"] if nullable else _SCHEMA_TYPES[kind]
        if m.bounds:
            low, high, closed_low, closed_high = _interval(m.bounds)
            number = int if kind == "int" else float
            if not math.isinf(low):
                prop["minimum" if closed_low else "exclusiveMinimum"] = number(low)
            if not math.isinf(high):
                prop["maximum" if closed_high else "exclusiveMaximum"] = number(high)
        prop["default"] = None if overrides else _json(default_of(f))
        props[key_of(f, m)] = prop
    return props


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (1 == 1.0 for numbers, but True is no number)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def schema_mismatch(
    schema: dict[str, Any], section: str | None, cls: Any, overrides: bool = False
) -> list[str]:
    """Where a section of the workflow's schema (None: its top level) differs from the
    dataclass: each key's type or enum, bounds and default (`section.key: attribute schema X,
    dataclass Y`)."""
    props = schema["properties"]
    props = props[section]["properties"] if section else props
    problems = []
    for key, expected in schema_of(cls, overrides).items():
        actual = props.get(key)
        name = f"{section}.{key}" if section else key
        if actual is None:
            problems.append(f"{name}: not in the schema")
            continue
        for attribute in (*_COMPARED, "default"):
            want, have = expected.get(attribute, MISSING), actual.get(attribute, MISSING)
            if not _same(want, have):
                shown = [None if v is MISSING else v for v in (have, want)]
                problems.append(f"{name}: {attribute} schema {shown[0]!r}, dataclass {shown[1]!r}")
    return problems
