"""The regression corpus: every input a fuzzer ever broke something with, replayed on every run.

One file per target in tests/property/corpus/ (``redirects.txt``, ``cookies.txt``,
``usernames.txt``, ``passwords.txt``); tests/property/corpus/README.md says what a line of each
means and which test replays it. A line is the body of a Python string literal (``\\t``,
``\\x00``, ``\\u3002``, ``\\\\`` for a backslash, ``\\x20`` for a space, ``\\x23`` for a leading
``#``), so any string, control characters and lone surrogates included, fits on one line. Lines
starting with ``#`` are comments; blank lines are skipped. Lines are never deleted.

Add a finding with::

    .venv/bin/python -m tests.property.regressions add passwords 'the failing input'
    .venv/bin/python -m tests.property.regressions add redirects --python "'/\\\\t/evil.com'"

(``--python`` takes a Python literal, as hypothesis prints it in "Falsifying example").
"""

from __future__ import annotations

import ast
import codecs
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).with_name("corpus")
TARGETS = ("redirects", "cookies", "usernames", "passwords")


def decode_line(line: str) -> str:
    """A corpus line (the body of a Python string literal) -> the string it stands for."""
    return codecs.decode(line.encode("ascii", "backslashreplace"), "unicode_escape")


def encode_line(payload: str) -> str:
    """Inverse of :func:`decode_line`: one printable-ASCII line for any string."""
    line = payload.encode("unicode_escape", "backslashreplace").decode("ascii").replace(" ", "\\x20")
    return "\\x23" + line[1:] if line.startswith("#") else line


def path(target: str) -> Path:
    if target not in TARGETS:
        raise ValueError(f"unknown corpus {target!r}; one of {', '.join(TARGETS)}")
    return CORPUS / f"{target}.txt"


def entries(target: str) -> list[tuple[int, str]]:
    """(line number, decoded value) of every entry of ``target``'s corpus."""
    out = []
    for number, line in enumerate(path(target).read_text(encoding="utf-8").split("\n"), start=1):
        if line and not line.startswith("#"):
            out.append((number, decode_line(line)))
    return out


def params(target: str) -> list:
    """The corpus as pytest parameters, with ids naming the file and line."""
    return [pytest.param(value, id=f"{target}.txt:{number}") for number, value in entries(target)]


def add(target: str, payload: str) -> bool:
    """Append ``payload`` unless it is already there. True if it was added."""
    if payload in {value for _, value in entries(target)}:
        return False
    file = path(target)
    text = file.read_text(encoding="utf-8")
    file.write_text(text + ("" if text.endswith("\n") else "\n") + encode_line(payload) + "\n", encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "add" or argv[1] not in TARGETS:
        print(__doc__, file=sys.stderr)
        return 2
    payload = ast.literal_eval(argv[3]) if argv[2] == "--python" else argv[2]
    if not isinstance(payload, str):
        print("the payload must be a string", file=sys.stderr)
        return 2
    added = add(argv[1], payload)
    print(f"{'added to' if added else 'already in'} {path(argv[1])}: {encode_line(payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
