"""Writing a run's files without following links: trust ends at the run directory.

A run directory may come from someone else (downloaded, shared, restored from a backup), so any
name in it may be a symbolic link to a file elsewhere, or a hard link: another name of a file
elsewhere. Writing through either would change that file. So every file a run writes is either
new (created with O_CREAT | O_EXCL | O_NOFOLLOW, which fails on any existing entry, a link
included) or replaced whole: written as a new temporary file in the same directory and renamed
over the old name, which changes the directory entry and never the file a hard link shares.
Only `metrics.jsonl` is appended to; a copy of it with other names is first made a file of its
own (`open_append`). A symbolic link where the run writes is refused in one line, before
anything is written.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

from distdqn.errors import CheckpointError

TEMPORARY_SUFFIX = ".tmp"
"""A file replaced whole is written first as `<name>.tmp` beside it."""

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def refuse_link(path: Path) -> os.stat_result | None:
    """`path`'s own status (None if there is nothing there); a symbolic link is refused."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(status.st_mode):
        raise CheckpointError(f"{path} is a link to {os.readlink(path)}; a run writes only inside its own directory")
    return status


def refuse_unless_file(path: Path) -> os.stat_result | None:
    """As `refuse_link`, and anything there must be a regular file."""
    status = refuse_link(path)
    if status is not None and not stat.S_ISREG(status.st_mode):
        raise CheckpointError(f"{path} is not a regular file")
    return status


def refuse_unless_directory(path: Path) -> os.stat_result | None:
    """As `refuse_link`, and anything there must be a directory."""
    status = refuse_link(path)
    if status is not None and not stat.S_ISDIR(status.st_mode):
        raise CheckpointError(f"{path} is not a directory")
    return status


def make_directory(path: Path) -> None:
    """Create the directory `path` unless it is there; refuse a link or a file in its place."""
    if refuse_unless_directory(path) is None:
        path.mkdir()


def refuse_links_inside(directory: Path) -> None:
    """No entry of `directory` may be a symbolic link (where a writer picks new names in it, as
    TensorBoard does, a link could stand at the name it picks)."""
    if refuse_unless_directory(directory) is None:
        return
    for entry in os.scandir(directory):
        refuse_link(Path(entry.path))


def create_file(path: Path, data: bytes) -> None:
    """Write `data` to a new file `path`; an existing entry of that name (a link included) is an
    error, so nothing is ever written through a link."""
    descriptor = _open_new(path)
    try:
        with os.fdopen(descriptor, "wb", closefd=False) as file:
            file.write(data)
    finally:
        os.close(descriptor)


def replace_file(path: Path, data: bytes) -> None:
    """Make `data` the content of `path`: written to the new file `path.tmp`, synced, then
    renamed over `path` in one atomic step. A hard link at `path` is replaced, never written
    through; a symbolic link at either name is refused. A `path.tmp` a crash left is removed."""
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    refuse_unless_file(path)
    if refuse_unless_file(temporary) is not None:
        temporary.unlink()  # unlinking a name never changes a file other names share
    descriptor = _open_new(temporary)
    try:
        try:
            with os.fdopen(descriptor, "wb", closefd=False) as file:
                file.write(data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def open_append(path: Path) -> BinaryIO:
    """Open `path` for appending, creating it if missing. A symbolic link is refused. A file with
    other names (hard links: a backup made with `cp -al`, or a name planted by whoever made the
    directory) is first copied to a file of its own, renamed over `path`, so that appending
    changes no other name's file."""
    status = refuse_unless_file(path)
    if status is not None and status.st_nlink > 1:
        with open(path, "rb") as shared:  # a regular file, checked above; reading changes nothing
            replace_file(path, shared.read())
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = _open(path, flags)
    opened = os.fstat(descriptor)
    if not stat.S_ISREG(opened.st_mode) or opened.st_nlink > 1:  # changed since: someone else writes here
        os.close(descriptor)
        raise CheckpointError(f"{path} changed while it was opened; another process writes in this run directory")
    return os.fdopen(descriptor, "ab")


def remove(path: Path) -> None:
    """Remove the entry `path` if present: a link itself (never what it names), a file, or a
    directory tree (whose links are removed, not followed)."""
    status = os.lstat(path) if os.path.lexists(path) else None
    if status is None:
        return
    if stat.S_ISDIR(status.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _open_new(path: Path) -> int:
    return _open(path, _NEW_FILE)


def _open(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:  # O_NOFOLLOW met a link
            refuse_link(path)
        if error.errno == errno.EEXIST:
            raise CheckpointError(f"{path} exists; a run creates it new") from None
        raise
