"""Static scan, part 2: ruff's flake8-bandit rules (``S``) over authsvc/.

A finding is accepted only where bandit's finding for the same check is silenced with a reason on
the same line (``S606`` with ``# nosec B606 - why``), so one justified comment covers both tools
and no ruff-only ignore list can drift.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.security import scan


def test_ruff_security_rules_find_nothing_unjustified_in_authsvc(real_scan):
    ruff = real_scan["ruff"]
    assert ruff.status == "ok", "\n".join(map(str, ruff.blocking))
    # The accepted ones are exactly the lines with a reasoned nosec (today: an assert and an exec).
    for issue in ruff.issues:
        source = (scan.ROOT / issue.path).read_text(encoding="utf-8")
        assert "B" + issue.rule[1:] in scan.reasoned_nosec_lines(source).get(issue.line, set()), issue


def _run(tmp_path, source: str) -> scan.ToolResult:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "planted.py").write_text(textwrap.dedent(source))
    return scan.run_ruff(tmp_path, "pkg")


@pytest.mark.parametrize("source, rule", [
    ("def f(expr):\n    return eval(expr)\n", "S307"),
    ("import hashlib\n\ndef f(b):\n    return hashlib.md5(b).hexdigest()\n", "S324"),
    ("import random\n\ndef token():\n    return random.random()\n", "S311"),
    ("def f(x):\n    assert x\n", "S101"),
    ("import subprocess\n\ndef f(c):\n    subprocess.run(c, shell=True)\n", "S602"),
], ids=["eval", "md5", "random-token", "assert", "shell"])
def test_a_planted_security_finding_fails_the_ruff_gate(tmp_path, source, rule):
    result = _run(tmp_path, source)
    assert result.status == "failed"
    assert rule in {i.rule for i in result.blocking}


def test_a_reasoned_nosec_for_the_same_check_is_accepted(tmp_path):
    result = _run(tmp_path, "def f(x):\n    assert x  # nosec B101 - x is checked by the caller\n")
    assert result.status == "ok" and [i.rule for i in result.issues] == ["S101"]


@pytest.mark.parametrize("comment", [
    "# nosec B101",                          # no reason
    "# nosec B602 - reason for another check",  # another check's id
    "# nosec",                               # nothing at all
])
def test_a_nosec_without_reason_or_for_another_check_does_not_accept(tmp_path, comment):
    result = _run(tmp_path, f"def f(x):\n    assert x  {comment}\n")
    assert result.status == "failed"


def test_pyflakes_finds_no_undefined_or_unused_name():
    """ruff's pyflakes rules (``F``) over the package, the Flask client and the tests: an undefined
    name fails only when its line runs, and the OAuth2Error handler of authsvc.web.views.oidc named
    ``respond`` without importing it from session 12 to 13 (a 400 that would have been a 500)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F", "--output-format", "concise",
                             "authsvc", "clients", "tests"], cwd=scan.ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
