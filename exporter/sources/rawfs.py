"""Reading a store's own small files and dirs safely, while its engine writes them.

Raw os calls: a host has tens of thousands of these files. O_NONBLOCK, so a fifo planted
where a file should be never hangs a read; O_NOFOLLOW, so no link is ever followed out of
the store; nothing is ever opened for writing.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from exporter.sources.witness import unwitnessed

FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
DIR_FLAGS = FILE_FLAGS | os.O_DIRECTORY


def read_short(path: str, limit: int = 4096, dir_fd: int | None = None) -> str | None:
    """One short file, as ASCII text; None if it is missing, unreadable, huge or not text.
    Raw os calls, relative to `dir_fd` if given: a host has tens of thousands of these."""
    unwitnessed()  # each function here reads what no stamp stands for (exporter.sources.witness)
    try:
        fd = os.open(path, FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        data = os.read(fd, limit + 1)  # a regular file's read is short only at its end
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > limit:
        return None  # these files are one short line; anything huge is not ours
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        return None


def open_regular(path: str) -> BinaryIO:
    """A regular file opened without following a link or waiting on a fifo (see FILE_FLAGS)."""
    unwitnessed()
    fd = os.open(path, FILE_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str, limit: int, dir_fd: int | None = None) -> bytes:
    """A regular file's bytes, at most `limit` + 1 (more than `limit` means too big for the
    caller). Its size is asked first, so a 3 KB file costs a 3 KB buffer: a buffered
    read(limit) allocates all of `limit` for each file, which for a thousand manifests was
    most of their reading."""
    unwitnessed()
    fd = os.open(path, FILE_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        # A regular file's read is short only at its end; one more byte tells a file grown
        # past `limit` since the fstat.
        return os.read(fd, min(st.st_size, limit) + 1)
    finally:
        os.close(fd)


def entry_is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def names_in(path: str) -> list[str]:
    """A dir's entries, sorted; none if it is gone or unreadable."""
    return names_or_none(path) or []


def names_or_none(path: str) -> list[str] | None:
    """names_in(), but None if the dir could not be read (a listing to keep must be whole)."""
    unwitnessed()
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def scandir_sorted(path: str) -> list[os.DirEntry[str]]:
    return scandir_or_none(path) or []


def scandir_or_none(path: str) -> list[os.DirEntry[str]] | None:
    """A dir's entries, sorted; None if it could not be read (gone, unreadable, EMFILE): a
    listing to keep by its stamp must have been read whole."""
    unwitnessed()
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return None
