"""Static scan, part 4: known-vulnerable dependencies (pip-audit).

pip-audit needs a vulnerability service (PyPI's JSON API or OSV). Where neither answers (this
machine, an air-gapped CI), the scan must say loudly that dependencies were NOT audited, and must
neither fail nor print pip-audit's misleading "No known vulnerabilities found" (which it does when
every package was skipped). Where one answers, a vulnerable dependency fails the test.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.security import scan

UNREACHABLE = [("pypi", "http://127.0.0.1:9/pypi/pip/24.0/json", "GET", None),
               ("osv", "http://127.0.0.1:9/v1/query", "POST", b"{}")]


def test_no_reachable_service_is_reported_as_not_audited_and_does_not_fail():
    result = scan.run_pip_audit(services=UNREACHABLE, timeout=2)
    assert result.status == "offline"
    assert not result.blocking
    assert result.note.startswith("DEPENDENCIES NOT AUDITED")
    assert "pypi" in result.note and "osv" in result.note  # says what was tried and why it failed
    assert "No known vulnerabilities" not in result.note


def test_offline_result_appears_in_the_scan_output_and_sarif(capsys, monkeypatch):
    offline = scan.run_pip_audit(services=UNREACHABLE, timeout=2)
    monkeypatch.setattr(scan, "scan", lambda root, audit=True: [offline])
    assert scan.main(["--no-audit"]) == 0
    out = capsys.readouterr().out
    assert "pip-audit: NOT RUN (offline)" in out and "DEPENDENCIES NOT AUDITED" in out
    run = scan.to_sarif([offline])["runs"][0]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert notes[0]["level"] == "warning" and "NOT AUDITED" in notes[0]["message"]["text"]


def test_a_vulnerable_dependency_is_a_blocking_issue_and_skipped_ones_are_named():
    report = {"dependencies": [
        {"name": "flask", "version": "0.12", "vulns": [
            {"id": "PYSEC-2018-66", "fix_versions": ["0.12.3"], "aliases": ["CVE-2018-1000656"], "description": "x"}]},
        {"name": "werkzeug", "version": "3.1.9", "vulns": []},
        {"name": "authsvc", "skip_reason": "Dependency not found on PyPI and could not be audited: authsvc (0.1.0)"},
    ], "fixes": []}
    issues, skipped = scan.pip_audit_issues(report)
    assert [(i.rule, i.blocking) for i in issues] == [("PYSEC-2018-66", True)]
    assert "flask 0.12" in issues[0].message and "0.12.3" in issues[0].message and "CVE-2018-1000656" in issues[0].message
    assert skipped == ["authsvc (Dependency not found on PyPI and could not be audited: authsvc (0.1.0))"]


def test_offline_fails_the_scan_when_an_audit_is_required(capsys, monkeypatch):
    """A CI that reaches the internet sets AUTHSVC_REQUIRE_AUDIT=1 (or passes --require-audit): then
    "not audited" is a failure, not a note, so a broken route to the vulnerability service cannot
    pass unseen."""
    offline = scan.run_pip_audit(services=UNREACHABLE, timeout=2)
    monkeypatch.setattr(scan, "scan", lambda root, audit=True: [offline])
    monkeypatch.delenv(scan.REQUIRE_AUDIT, raising=False)
    assert scan.main([]) == 0
    assert scan.main(["--require-audit"]) == 1
    for value, required in (("1", True), ("true", True), (" YES ", True), ("0", False), ("", False)):
        monkeypatch.setenv(scan.REQUIRE_AUDIT, value)
        assert scan.main([]) == (1 if required else 0), value
    assert "security scan: FAILED" in capsys.readouterr().out


def test_dependencies_have_no_known_vulnerabilities():
    """Skipped, not failed, where no vulnerability service answers (this project's CI reaches only
    package indexes), unless AUTHSVC_REQUIRE_AUDIT=1 says the CI must reach one."""
    fail_or_skip = pytest.fail if scan.audit_required(os.environ) else pytest.skip
    why = [f"{name}: {scan.probe(url, method, body)}" for name, url, method, body in scan.SERVICES]
    if all(not w.endswith(": None") for w in why):
        fail_or_skip("dependencies NOT audited: no vulnerability service reachable (" + "; ".join(why) + ")")
    result = scan.run_pip_audit()
    if result.status == "offline":
        fail_or_skip(result.note)
    assert result.status == "ok", "\n".join(map(str, result.issues)) + "\n" + json.dumps(result.note)
