"""What must hold for any input, shared by the property tests and the corpus replay
(tests/property/test_corpus_replay.py), so a corpus line is judged exactly as hypothesis judged it."""

from __future__ import annotations

import re
import unicodedata

from authsvc.rules.passwords import PasswordRules, load_default_blocklist, normalize_password, password_problems
from authsvc.rules.usernames import normalize_username, username_problem

USERNAME_MAX = 64  # policies/default.toml [limits] username_max_length
USERNAME_KEY = re.compile(r"[a-z0-9._@+-]+\Z")
PASSWORD_RULES = PasswordRules()
BLOCKLIST = load_default_blocklist()
_LENGTH = re.compile(r"Password is (\d+) characters?; the minimum is \d+\.")


def assert_username_oracle(raw: str, max_length: int = USERNAME_MAX) -> str | None:
    """Normalizing never raises; an accepted name's key is plain ASCII from the allowed set, within
    the limit, its own normal form (so the stored key finds the account when typed), and the same
    for the name with surrounding whitespace (the login form and the CLI both strip)."""
    key = normalize_username(raw)
    problem = username_problem(raw, max_length)
    assert isinstance(key, str)
    assert problem is None or (isinstance(problem, str) and problem.startswith("Username ")), problem
    if problem is None:
        assert USERNAME_KEY.match(key), (raw, key)
        assert len(key) <= max_length
        assert normalize_username(key) == key, (raw, key)
        assert username_problem(key, max_length) is None
        assert normalize_username(f" {raw}\t") == key
        # What makes two accounts one: the key is a fixed point of NFKC and casefold together.
        assert unicodedata.normalize("NFKC", key.casefold()) == key
    return problem


def assert_password_oracle(password: str, username: str = "alice",
                           rules: PasswordRules = PASSWORD_RULES) -> list[str]:
    """password_problems never raises, answers in sentences, and counts length on the NFC form."""
    found = password_problems(password, username=username, rules=rules, blocklist=BLOCKLIST)
    assert isinstance(found, list)
    assert all(isinstance(p, str) and p.startswith("Password ") and p.endswith(".") for p in found), found
    if any("\ud800" <= c <= "\udfff" for c in password):
        assert found, "a password with a lone surrogate must be refused"
        return found
    normalized = normalize_password(password)
    assert normalize_password(normalized) == normalized
    for problem in found:
        match = _LENGTH.fullmatch(problem)
        if match:
            assert int(match.group(1)) == len(normalized) < rules.min_length
    if len(normalized) < rules.min_length:
        assert found, "a password under the minimum must be refused"
    if len(normalized) > rules.max_length:
        assert found == [f"Password is longer than {rules.max_length} characters."]
    return found
