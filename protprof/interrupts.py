"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. Raised inside
a library's finalizer or callback, it is printed as "Exception ignored" and dropped, and a
build would run on for hours after the user pressed Ctrl-C. So while a command runs, the
handler also records the interrupt, and each unit of work counted by `Progress.update` calls
`check()`: an interrupt that was lost is raised again at the next finished query.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_received = threading.Event()


def _handler(signum: int, frame: FrameType | None) -> None:
    _received.set()
    raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """Record Ctrl-C while the block runs (it still raises KeyboardInterrupt at once). Only
    from the main thread, and only where SIGINT has Python's default handler: an ignored
    SIGINT (a background job) or a caller's own handler is left alone."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _received.clear()
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _received.clear()


def check() -> None:
    """Raise KeyboardInterrupt in the main thread if a Ctrl-C arrived (and was lost on its
    way); elsewhere do nothing: a worker thread's exception would only fail its own task."""
    if _received.is_set() and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt
