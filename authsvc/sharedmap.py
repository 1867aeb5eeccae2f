"""Small files in the instance folder that every process of an instance maps into memory.

Workers share a number this way (which processes are verifying a known device): a mapped file is
read without a system call, and it needs nothing beyond the instance folder. Only processes on one
host (with one instance folder) see each other.
"""

from __future__ import annotations

import mmap
import os

from authsvc.filemodes import make_private_folder


def map_shared(path: str, size: int) -> mmap.mmap:
    """``path`` (created 0600, grown to ``size`` bytes if shorter) mapped read-write and shared.
    Raises OSError when the file cannot be made or mapped."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)  # the mapping keeps the file


def in_folder(folder: str, name: str) -> str:
    """The path of ``name`` in ``folder``, creating the folder (0700). Raises OSError when it cannot."""
    make_private_folder(folder)
    return os.path.join(folder, name)
