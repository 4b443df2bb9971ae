"""Safe outputs: locked, checked before any work, written under a temporary name, renamed when
complete.

- An interrupted job never leaves a file or store that looks finished (the pitfall of treating
  "the directory exists" as "done").
- An existing path is replaced only when it is recognisably protprof's own output of the same
  kind (a store by its root attributes, a file by its format), or with `force`: a user's folder
  named by mistake as `--out` is refused, never deleted.
- One writer per output: an exclusive POSIX lock (`lockf`) on a hidden lock file beside the
  target. The kernel drops it when the process dies, and forked children do not inherit it,
  so a kill -9 never leaves a stale lock.
- Replacing a directory takes two renames (old aside, new in). A kill between them leaves the
  old one under a hidden `.old-` name; the next write of that target puts it back first, and
  clears stale temporaries, so the name always ends up holding a complete output. A claim
  only checks the old one (may this command replace it?): a command refused before it
  writes changes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from protprof.errors import OutputError

log = logging.getLogger(__name__)
_DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


@dataclass(frozen=True)
class Kind:
    """What an output is, for deciding whether an existing path may be replaced."""

    what: str  # e.g. "a protprof store", for the refusal message
    recognise: Callable[[Path], bool]  # is this existing path protprof's output of this kind?


# Any file protprof writes without a recognisable format (tables, reports, kept queries): an
# existing regular file is replaced, an existing directory never is.
FILE = Kind("a file", lambda path: path.is_file() and not path.is_symlink())

# Targets this process holds: lock file descriptor, nesting depth, and whether --force applies.
_held: dict[Path, list] = {}


def _key(target: Path) -> Path:
    return Path(os.path.abspath(target))


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _acquire(target: Path) -> int:
    lock = _lock_path(target)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # POSIX record locks belong to this process: unlike flock, a forked child (a
            # DataLoader worker) does not inherit them, so a kill -9 releases them at once.
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise output_error(target, e) from e
            raise OutputError(
                f"{target}: another protprof run is writing it (lock {lock} is held); wait for "
                "it to finish or choose another output"
            ) from None
        # The previous holder unlinks the lock file when done: retry if ours is no longer the
        # file at that name, or two runs could each lock a different inode.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _release(target: Path, fd: int) -> None:
    try:
        os.unlink(_lock_path(target))
    except FileNotFoundError:
        pass
    os.close(fd)  # closing drops the lock


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _olds(target: Path) -> list[Path]:
    """The old outputs killed replacements left aside, oldest first."""
    return sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)


def _recover(target: Path) -> None:
    """Put back an old output a killed replacement left aside, and clear stale temporaries
    (safe: we hold the target's lock, so no other writer owns them)."""
    olds = _olds(target)
    if olds and not (target.exists() or target.is_symlink()):
        os.replace(olds.pop(), target)
        log.warning(
            "%s: restored the previous output that an interrupted write left aside", target
        )
    for stale in [*olds, *target.parent.glob(f".{target.name}.tmp-*")]:
        _remove(stale)


def _check_writable(target: Path) -> None:
    """Create the parent folder and a probe file in it, so an unwritable output is found before
    any work starts, not after a whole search."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = target.with_name(f".{target.name}.probe-{uuid.uuid4().hex[:8]}")
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise output_error(target, e) from e


def _existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_space(needs: Sequence[tuple[Path, int]], before: str = "nothing was written") -> None:
    """Refuse, in one line, when a file system lacks the bytes about to be written there: each
    (path, bytes) is a first estimate, summed over the paths on the same file system."""
    on: dict[int, list] = {}
    for path, size in needs:
        where = _existing(path)
        entry = on.setdefault(where.stat().st_dev, [path, where, 0])
        entry[2] += size
    for path, where, size in on.values():
        free = shutil.disk_usage(where).free
        if size > free:
            raise OutputError(
                f"{path}: cannot write, the disk is full for this: about {size / 1e6:.1f} MB "
                f"needed, {free / 1e6:.1f} MB free ({where}); {before}"
            )


def _check_replaceable(target: Path, kind: Kind, force: bool) -> None:
    """Refuse to replace what is not this kind of protprof output. A missing target is checked
    as the old output a killed replacement left aside, which the write will put back first."""
    olds = [] if force or target.exists() or target.is_symlink() else _olds(target)
    path, where = (
        (olds[-1], f" (left aside by an interrupted write, at {olds[-1]})")
        if olds
        else (target, "")
    )
    if force or not (path.exists() or path.is_symlink()) or kind.recognise(path):
        return
    found = "a folder" if path.is_dir() else "a file"
    raise OutputError(
        f"{target}: exists{where} and is {found}, not {kind.what}; refusing to replace it "
        "(remove it, choose another output, or pass --force)"
    )


def output_error(target: Path, error: OSError) -> OutputError:
    """One clear line for an OS error while writing `target`; other errors are re-raised."""
    if error.errno in _DISK_ERRNOS:
        return OutputError(
            f"{target}: cannot write, {_DISK_ERRNOS[error.errno]} "
            f"({error.filename or target.parent}); nothing was replaced"
        )
    if error.errno == errno.ENOLCK:
        return OutputError(
            f"{target}: cannot lock it ({error.strerror}); protprof needs a file system with "
            "POSIX locks for its outputs"
        )
    if error.errno in _ACCESS_ERRNOS or isinstance(error, (NotADirectoryError, FileExistsError)):
        return OutputError(
            f"{target}: cannot write there ({error.strerror}: {error.filename or target.parent})"
        )
    raise error


@contextmanager
def claim_output(target: str | Path, kind: Kind = FILE, force: bool = False) -> Iterator[Path]:
    """Hold `target` for this process: lock it, check it is writable and may be replaced.

    Commands claim their outputs before any slow work; `atomic_output` calls inside the claim
    reuse it (and its `force`). Re-entrant within a process.
    """
    target = Path(target)
    key = _key(target)
    if key in _held:
        _held[key][1] += 1
        try:
            yield target
        finally:
            _held[key][1] -= 1
        return
    _check_writable(target)
    fd = _acquire(target)
    _held[key] = [fd, 1, force]
    try:
        _check_replaceable(target, kind, force)
        yield target
    finally:
        del _held[key]
        _release(target, fd)


@contextmanager
def atomic_output(target: str | Path, kind: Kind = FILE, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path for `target` (file or directory); rename it into place on success.

    The target is claimed first (see `claim_output`); an enclosing claim's `force` applies.
    On an exception the temporary output is removed and an existing `target` is left untouched.

    Raises:
        OutputError: the target is locked, unwritable, not replaceable, or the disk filled up.
    """
    target = Path(target)
    held = _held.get(_key(target))
    with claim_output(target, kind, force or bool(held and held[2])):
        _recover(target)
        # A claim made by a caller was checked then; check again, the path may have appeared.
        _check_replaceable(target, kind, force or bool(_held[_key(target)][2]))
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            yield tmp
        except BaseException as e:
            _remove(tmp)
            if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
                raise output_error(target, e) from e
            raise
        _replace(tmp, target)


def _replace(tmp: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        # os.replace cannot replace a non-empty directory: move the old one aside first.
        # A kill between the two renames is repaired by `_recover` on the next write.
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(tmp, target)
        _remove(old)
    else:
        os.replace(tmp, target)
