"""Files only the service's user may read: the instance folder (0700) and the SQLite database
with its ``-wal``, ``-shm`` and ``-journal`` files (0600), whatever the umask.

The database holds the argon2 hashes; with the usual umask 022 SQLite would make it 0644 in a 0755
folder, readable by every local user. authsvc creates the folder and an empty database file itself,
owner-only, before SQLite opens it; SQLite then gives its side files the database file's mode.
Existing files and folders keep their mode (an operator may have chosen it): ``authsvc check``
reports those group or others can read, with the ``chmod`` that fixes them (:func:`mode_problem`).
"""

from __future__ import annotations

import os
import stat

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_private_folder(path: str) -> None:
    """Create folder ``path`` mode 0700 (its missing parents as usual) unless it exists."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, PRIVATE_FOLDER)
    except FileExistsError:
        return
    os.chmod(path, PRIVATE_FOLDER)  # mkdir's mode is masked by the umask; this one is exact


def create_private_file(path: str) -> None:
    """Create an empty file ``path`` mode 0600 unless it exists (an existing one is left alone)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def mode_problem(path: str, mode: int, *, folder: bool, what: str) -> str | None:
    """Why ``path`` (``what`` it is, with ``st_mode`` ``mode``) is too open, or None: a pure function."""
    bits = stat.S_IMODE(mode)
    if not bits & 0o077:
        return None
    fix = f"chmod {'700' if folder else '600'} {path}"
    return (f"{what} {path} has mode {bits:04o}: other local users can "
            f"{'list and read what it holds' if folder else 'read it'}. Fix: {fix}")


def open_paths(paths: list[tuple[str, bool, str]]) -> list[str]:
    """:func:`mode_problem` for each existing ``(path, is_folder, what)``; missing ones are skipped."""
    problems = []
    for path, folder, what in paths:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            continue
        problem = mode_problem(path, info.st_mode, folder=folder, what=what)
        if problem:
            problems.append(problem)
    return problems


def sqlite_paths(database: str) -> list[tuple[str, bool, str]]:
    """The folder and files of SQLite database file ``database``, as :func:`open_paths` takes them."""
    folder = os.path.dirname(os.path.abspath(database))
    return [(folder, True, "the database folder"), (database, False, "the SQLite database (it holds the password hashes)"),
            *[(database + side, False, f"the SQLite {side[1:]} file") for side in SQLITE_SIDE_FILES]]
