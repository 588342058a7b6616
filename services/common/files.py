"""Durable file publishing: fsync helpers for the "write, fsync, rename, fsync the directory" way
of making a file or a directory appear atomically AND survive a power cut.

A rename is atomic but not durable by itself: without fsyncing the files first, the new name can
survive a crash while the data behind it does not (a zero-length `model.keras` under a published
version); without fsyncing the parent directory, the rename itself can be lost.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush one file's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (the names created, renamed or removed in it)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every regular file and directory under `root` (deepest first), then `root`."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        folder = Path(dirpath)
        for name in filenames:
            if (folder / name).is_file() and not (folder / name).is_symlink():
                fsync_file(folder / name)
        fsync_dir(folder)
