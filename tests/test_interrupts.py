"""A Ctrl-C that Python drops is raised again: a KeyboardInterrupt raised inside a finalizer is
printed as "Exception ignored" and lost (a build then ran on after Ctrl-C). Under
`interruptible()`, the next unit of work counted by `Progress` raises it again. Each case runs
in a child process, so the real SIGINT and Python's real finalizer rules apply."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

# A finalizer in which the SIGINT handler runs: Python reports its KeyboardInterrupt as
# "Exception ignored" and goes on, as it does for a library's finalizer.
SCRIPT = """
import gc, os, signal, sys, time
from protprof.interrupts import interruptible
from protprof.progress import Progress

class SignalledDuringFinalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs here, inside the finalizer

def lose_a_ctrl_c():
    SignalledDuringFinalizer()
    gc.collect()
    print("ran on after Ctrl-C", flush=True)

progress = Progress(3, "query", "searched", stream=open(os.devnull, "w"))
try:
    with {context}:
        lose_a_ctrl_c()
        progress.update()
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
print("handler restored:", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def _run(context: str) -> subprocess.CompletedProcess[str]:
    code = SCRIPT.format(context=context)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_a_ctrl_c_lost_in_a_finalizer_is_raised_at_the_next_unit_of_work():
    run = _run("interruptible()")
    assert "Exception ignored" in run.stderr and "KeyboardInterrupt" in run.stderr
    assert run.stdout.splitlines() == [
        "ran on after Ctrl-C",
        "interrupted",
        "handler restored: True",
    ]


def test_without_it_python_drops_the_ctrl_c():
    """The failure the module exists for: the same lost Ctrl-C, and the work finishes."""
    run = _run("open(os.devnull)")
    assert "Exception ignored" in run.stderr
    assert run.stdout.splitlines() == ["ran on after Ctrl-C", "finished", "handler restored: True"]
