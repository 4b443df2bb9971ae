"""mkdocs hook: replace `<!-- protprof-help -->` with the help of every protprof command.

The command-line reference is generated from the argparse parser itself, so it always matches
the installed code. Registered in mkdocs.yml (`hooks:`) and excluded from the built site.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- protprof-help -->"


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(p: argparse.ArgumentParser, prog: str) -> list[str]:
    # Hidden commands (help=SUPPRESS) are left out of the top-level list, and here too.
    shown = {a.dest for a in _visible_choices(p)}
    out = [f"## `{prog}`", "", "```text", p.format_help().rstrip(), "```", ""]
    for name, sub in _subparsers(p).items():
        if name in shown:
            out += _help(sub, f"{prog} {name}")
    return out


def _visible_choices(p: argparse.ArgumentParser) -> list[Any]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action._choices_actions)
    return []


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Expand the marker on the CLI reference page."""
    if MARKER not in markdown:
        return markdown
    os.environ["COLUMNS"] = "99"  # argparse wraps to the terminal; fix it for a stable page
    from protprof.cli import parser

    return markdown.replace(MARKER, "\n".join(_help(parser(), "protprof")))
