"""Secret-key enforcement (ASVS 5.0 11.2.3, 13.3.1, 13.3.2), as pure functions.

authsvc signs its session, remember-me and CSRF values with one secret key. Whoever guesses it
can forge a login, so start-up refuses a key that is missing, shorter than 32 bytes, copied from
documentation, tutorials or templates, or visibly non-random. Unlike Django (a warning under
``check --deploy``) or Kratos (a random key made up at boot), the refusal is the point: the fix is
always ``authsvc gen-secret`` (:func:`generate_secret`).

These checks catch keys a person chose or pasted. They cannot prove that a key is random (an
English sentence of 40 characters passes them); they make the common mistakes impossible to ship.

A hex key is judged by what it encodes, 4 bits a digit, however it is written (``0x`` or ``\\x``
prefixes, ``:``, ``-``, space or other separators between bytes): it needs 64 digits
(``secrets.token_hex(32)``). 32 digits (``token_hex(16)``, ``uuid4().hex``) hold at most 128 bits,
exactly the estimate's threshold, and separators would make them look more varied than they are.
Fullwidth look-alike digits count as the digits they stand for.

Entropy estimate (conservative by design): ``len(key) * min(H(characters), H(steps))`` where ``H``
is the Shannon entropy, in bits per symbol, of the key's own character frequencies, and of the
differences between neighbouring code points. The first term never exceeds
``len * log2(distinct characters)``, and the second collapses for sequences ("abcd…", "a1b2c3…"),
so a structured key cannot look random by being long. It undercounts truly random keys (a
64-character hex key scores about 245 bits, not 256), which only errs towards refusing. Bytes
keys are measured byte by byte.

Messages name the setting and the fix, never the key or any part of it. Log :func:`fingerprint`
when a key must be identified.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import secrets
import shlex
import stat
import unicodedata
from collections import Counter
from itertools import pairwise

from authsvc.rules.passwords import shortest_period

__all__ = [
    "KNOWN_WEAK_SECRETS",
    "MIN_SECRET_BYTES",
    "fingerprint",
    "generate_secret",
    "key_file_problems",
    "read_key_file",
    "secret_problems",
]

# 256 bits if random; ASVS 11.2.3 asks for at least 128-bit security.
MIN_SECRET_BYTES = 32
MIN_ENTROPY_BITS = 128
MIN_DISTINCT_CHARS = 12
MAX_KEY_FILE_BYTES = 64 * 1024  # a key file bigger than this is the wrong file

# Lowercased. Values from framework docs, tutorials, project templates and .env examples, which end
# up in production because they "work". Sources: Flask tutorial ("dev") and quickstart (the
# os.urandom and token_hex sample outputs, the old 'A0Zr98j…' key), the old Flaskr tutorial
# ("development key"), Miguel Grinberg's Flask Mega-Tutorial ("you-will-never-guess") and Flasky
# ("hard to guess string"), express-session docs ("keyboard cat"), Django ("django-insecure-"
# startproject prefix), oauth2-proxy docs ("insecure_session_secret").
KNOWN_WEAK_SECRETS: frozenset[str] = frozenset(
    {
        "dev",
        "development",
        "development key",
        "changeme",
        "change-me",
        "change_me",
        "change me",
        "changeit",
        "secret",
        "secret-key",
        "secret_key",
        "secretkey",
        "secret key",
        "mysecret",
        "my-secret-key",
        "my_secret_key",
        "mysecretkey",
        "password",
        "test",
        "testing",
        "default",
        "default-secret-key",
        "key",
        "you-will-never-guess",
        "hard to guess string",
        "super secret key",
        "supersecretkey",
        "super-secret-key",
        "secret-key-goes-here",
        "your-secret-key",
        "your_secret_key",
        "your-secret-key-here",
        "your_secret_key_here",
        "keyboard cat",
        "thisisasecret",
        "replace-me",
        "replaceme",
        "insecure",
        "not-so-secret",
        "flask-insecure",
        "django-insecure",
        "insecure_session_secret",
        "s3cr3t",
        "top secret",
        "topsecret",
        "todo",
        # Flask quickstart: app.secret_key = b'_5#y2L"F4Q8z\n\xec]/', as text (decoded bytes), as the
        # escaped literal a reader pastes into an env file, and as the printed repr.
        '_5#y2l"f4q8z\n\xec]/',
        '_5#y2l"f4q8z\\n\\xec]/',
        "b'_5#y2l\"f4q8z\\n\\xec]/'",
        # Flask quickstart sample output of `python -c 'import secrets; print(secrets.token_hex())'`.
        "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",
        # Flask quickstart before 1.0.
        "a0zr98j/3yx r~xhh!jmn]lwx/,?rt",
    }
)

_FIX = "Generate one with `authsvc gen-secret`."
_FINGERPRINT_DOMAIN = b"authsvc-key-fingerprint"

# Matching ignores case and punctuation ("Change_Me!", "SECRET KEY"). Values of eight or more
# letters and digits are refused anywhere inside a key: such a value beside real randomness is still
# a copy, and a random key holds one by chance too rarely to matter. Shorter ones ("dev", "key",
# "secret") only whole, repeated, or when what is left without them is weak, because random keys
# contain them by chance often enough that refusing those would refuse random keys at random.
_SQUASH = re.compile(r"[\W_]+")
_MIN_CONTAINED = 8


def _squash(text: str) -> str:
    return _SQUASH.sub("", text.casefold())


_WEAK_FOLDED = frozenset(value.casefold() for value in KNOWN_WEAK_SECRETS)
_WEAK_SQUASHED = frozenset(
    filter(None, (_squash(value) for value in KNOWN_WEAK_SECRETS))
)
_WEAK_CONTAINED = tuple(
    sorted(value for value in _WEAK_SQUASHED if len(value) >= _MIN_CONTAINED)
)
_WEAK_LONGEST_FIRST = tuple(
    sorted(_WEAK_FOLDED | _WEAK_SQUASHED, key=len, reverse=True)
)
_WEAK_ANYWHERE = re.compile("|".join(map(re.escape, _WEAK_LONGEST_FIRST)), re.IGNORECASE)

# str(uuid.uuid4()) is a popular SECRET_KEY; its 36 characters look random enough to pass the
# estimate, but version and variant bits are fixed.
_UUID = re.compile(
    r"\{?(?:urn:uuid:)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?",
    re.IGNORECASE,
)
_HEX_DIGITS = re.compile(r"[0-9a-f]+", re.IGNORECASE)
# How hex is written around its digits: 0x and \x prefixes, byte separators (xxd, openssl, MACs).
_HEX_FRAMING = re.compile(r"0x|\\x|[\s:,._-]", re.IGNORECASE)

# Pairs of keys next to each other on a US keyboard row, both orders; with code point +-1 these
# make up "simple sequences" (abc, 123, qwe, 0-9 wrapping through the number row).
_KEYBOARD_ROWS = ("`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./")
_KEYBOARD_NEIGHBOURS = frozenset(
    pair
    for row in _KEYBOARD_ROWS
    for a, b in pairwise(row)
    for pair in ((a, b), (b, a))
)


def secret_problems(
    key: str | bytes | None, *, setting: str = "AUTHSVC_SECRET_KEY"
) -> list[str]:
    """Why ``key`` must not sign anything in production; an empty list means it is strong enough.

    ``setting`` names where the key came from, for the messages. Never raises for str, bytes or None.
    """
    if key is None or not key.strip():
        return [
            f"{setting} is not set; production needs at least {MIN_SECRET_BYTES} random bytes. {_FIX}"
        ]
    problems = []
    if isinstance(key, str) and _has_surrogates(key):
        problems.append(
            f"{setting} contains bytes that are not valid UTF-8 (check the file or environment encoding); "
            f"it cannot sign cookies. {_FIX}"
        )
    size = len(_as_bytes(key))
    text = _as_text(key)
    if size < MIN_SECRET_BYTES:
        problems.append(
            f"{setting} is {size} bytes; production needs at least {MIN_SECRET_BYTES} random bytes. {_FIX}"
        )
    if _is_known_weak(text):
        problems.append(
            f"{setting} is, or is built from, a well-known example value from documentation or templates; "
            f"anyone can guess it. {_FIX}"
        )
    # A short key needs replacing anyway; reporting its patterns as well would be noise.
    if size >= MIN_SECRET_BYTES:
        problems += _randomness_problems(text, setting)
    return problems


def key_file_problems(
    path: str, *, setting: str = "AUTHSVC_SECRET_KEY_FILE"
) -> list[str]:
    """Why the key file at ``path`` must not be used (ASVS 13.3.2); an empty list means it is fine.

    Follows symlinks (Kubernetes and Docker secrets are symlinks), so it judges the file the key is
    read from. Checks only the file; check its content with ``secret_problems(read_key_file(path))``.
    """
    shown = _display(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        why = "which does not exist. Write a key there (`authsvc gen-secret`), then chmod 600 it."
        return [f"{setting} points to {shown}, {why}"]
    except OSError as error:
        why = f"which cannot be inspected ({error.strerror}). Let the service user reach it."
        return [f"{setting} points to {shown}, {why}"]
    if not stat.S_ISREG(info.st_mode):
        why = "which is not a regular file. Point it at a file that holds only the key."
        return [f"{setting} points to {shown}, {why}"]
    problems = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        problems.append(
            f"{setting} file {shown} has mode {mode:04o}; it must not be readable or writable by group or others. "
            f"Fix: chmod 600 {shown}"
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        problems.append(
            f"{setting} file {shown} cannot be read by this process ({error.strerror}). "
            "Make the service user its owner, mode 600."
        )
    return problems


def read_key_file(path: str) -> str:
    """The key stored at ``path``, as text. Only trailing whitespace (the newline editors and ``echo``
    add) is removed; nothing else is changed.

    Raises OSError (with ``strerror`` set) for every problem with the file itself: missing,
    unreadable, not a regular file, larger than 64 KiB. Opened non-blocking, so a FIFO cannot hang
    start-up. Never raises for the content: bytes that are not UTF-8 come back as surrogate escapes
    (like ``os.environ``), which :func:`secret_problems` reports.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise OSError(
            errno.EFBIG, f"larger than {MAX_KEY_FILE_BYTES} bytes, not a key file", path
        )
    return data.decode("utf-8", "surrogateescape").rstrip(" \t\r\n")


def generate_secret() -> str:
    """A new key: 48 bytes from the OS CSPRNG, base64url-encoded to 64 characters (384 bits)."""
    return secrets.token_urlsafe(48)


def fingerprint(key: str | bytes) -> str:
    """A short id for logs and rotation notes: 12 hex characters of a domain-separated SHA-256.

    Identifies a strong key without revealing it; for a weak key it is as guessable as the key.
    """
    return hashlib.sha256(_FINGERPRINT_DOMAIN + _as_bytes(key)).hexdigest()[:12]


def _as_bytes(key: str | bytes) -> bytes:
    if isinstance(key, str):
        # surrogatepass: never raise; the surrogate problem is reported separately.
        return key.encode("utf-8", "surrogatepass")
    return bytes(key)


def _as_text(key: str | bytes) -> str:
    """Text to analyse: a str as is; bytes as UTF-8, or one character per byte if not UTF-8."""
    if isinstance(key, str):
        return key
    try:
        return bytes(key).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(key).decode("latin-1")


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _display(path: str) -> str:
    """The path as a shell word, safe to paste and unable to break a log line."""
    return shlex.quote(path) if path.isprintable() else repr(path)


def _is_known_weak(text: str) -> bool:
    folded = text.casefold()
    squashed = _squash(folded)
    if folded.strip() in _WEAK_FOLDED or squashed in _WEAK_SQUASHED:
        return True
    if any(value in squashed for value in _WEAK_CONTAINED):
        return True
    unit = _repeated_unit(folded)
    if unit is not None and (unit in _WEAK_FOLDED or _squash(unit) in _WEAK_SQUASHED):
        return True
    return _is_padded_weak(text)


def _is_padded_weak(text: str) -> bool:
    """A short example value plus filler ("dev" + "0" * 29): what is left without it is weak.

    What is left is measured as written (folding its case would take a bit from every letter of a
    random key) and must carry its share of the bar: as many estimated bits a character as the whole
    key needs. A random key that happens to contain "dev" does, as random text does wherever it is
    cut; filler does not. The whole key must still pass every other rule on its own."""
    folded = text.casefold()
    if not any(value in folded for value in _WEAK_LONGEST_FIRST):
        return False
    remainder = text
    while True:  # taking one value out can join the text around it into another
        shorter = _WEAK_ANYWHERE.sub("", remainder)
        if shorter == remainder:
            break
        remainder = shorter
    if remainder == text:
        return False
    return not remainder or _estimated_bits(remainder) * len(text) < MIN_ENTROPY_BITS * len(remainder)


def _randomness_problems(text: str, setting: str) -> list[str]:
    """At most one problem: the most specific reason the key is not random."""
    if _UUID.fullmatch(text.strip()):
        why = "is a UUID, which holds at most 122 random bits; production needs at least 128."
        return [f"{setting} {why} {_FIX}"]
    digits = _hex_digit_count(text)
    if digits is not None and digits < 2 * MIN_SECRET_BYTES:
        # Hex carries 4 bits per digit: 32 digits (token_hex(16), uuid4().hex) are 16 bytes.
        return [
            f"{setting} is {digits} hex digits, which hold at most {4 * digits} random bits; "
            f"production needs at least {MIN_SECRET_BYTES} random bytes ({2 * MIN_SECRET_BYTES} "
            f"hex digits). {_FIX}"
        ]
    if _repeated_unit(text) is not None:
        return [
            f"{setting} repeats a shorter pattern, so it is much weaker than its length suggests. {_FIX}"
        ]
    if _is_mostly_sequence(text):
        return [
            f"{setting} is mostly a run of neighbouring characters (alphabet, digit or keyboard order). {_FIX}"
        ]
    distinct = len(set(text))
    if distinct < MIN_DISTINCT_CHARS:
        return [
            f"{setting} uses only {distinct} distinct characters; a random key uses many more. {_FIX}"
        ]
    bits = _estimated_bits(text)
    if bits < MIN_ENTROPY_BITS:
        return [
            (
                f"{setting} has an estimated {bits:.0f} bits of entropy; production needs at least "
                f"{MIN_ENTROPY_BITS} from a random generator. {_FIX}"
            )
        ]
    return []


def _hex_digit_count(text: str) -> int | None:
    """How many hex digits ``text`` holds if it is hex, however written (prefixes, separators,
    any case, fullwidth look-alikes); None if it is not."""
    digits = _HEX_FRAMING.sub("", unicodedata.normalize("NFKC", text))
    return len(digits) if _HEX_DIGITS.fullmatch(digits) else None


def _repeated_unit(text: str) -> str | None:
    """The unit if ``text`` is a shorter string repeated at least twice (the last copy may be cut)."""
    period = shortest_period(text)
    return text[:period] if text and 2 * period <= len(text) else None


def _is_mostly_sequence(text: str) -> bool:
    """At least half of the steps go to a neighbour: code point +-1 or the next key on a keyboard row."""
    folded = text.casefold()
    steps = list(pairwise(folded))
    if not steps:
        return False
    neighbours = sum(
        abs(ord(b) - ord(a)) == 1 or (a, b) in _KEYBOARD_NEIGHBOURS for a, b in steps
    )
    return 2 * neighbours >= len(steps)


def _estimated_bits(text: str) -> float:
    """len(text) * min(H(characters), H(code point steps)); see the module docstring."""
    if len(text) < 2:
        return 0.0
    steps = [ord(b) - ord(a) for a, b in pairwise(text)]
    return len(text) * min(_shannon(text), _shannon(steps))


def _shannon(symbols) -> float:
    counts = Counter(symbols)
    total = sum(counts.values())
    return -sum(n / total * math.log2(n / total) for n in counts.values())
