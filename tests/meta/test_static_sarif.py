"""scripts/security-scan --sarif FILE: one SARIF 2.1.0 log with a run per tool, which code-scanning
dashboards (GitHub, GitLab) can read. Checked against the parts of the SARIF 2.1.0 schema those
dashboards rely on (the schema itself cannot be downloaded here)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.security import scan

LEVELS = {"none", "note", "warning", "error"}


def assert_valid_sarif(log: dict) -> None:
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    assert isinstance(log["runs"], list) and log["runs"]
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str) and driver["name"]
        rule_ids = [r["id"] for r in driver["rules"]]
        assert len(rule_ids) == len(set(rule_ids)), f"duplicate rule ids in {driver['name']}"
        for result in run["results"]:
            assert result["level"] in LEVELS
            assert result["message"]["text"]
            assert rule_ids[result["ruleIndex"]] == result["ruleId"]
            location = result["locations"][0]["physicalLocation"]
            uri = location["artifactLocation"]["uri"]
            assert not uri.startswith("/") and "\\" not in uri, uri  # relative to %SRCROOT%
            assert location["artifactLocation"]["uriBaseId"] in run["originalUriBaseIds"]
            assert location["region"]["startLine"] >= 1 and location["region"]["startColumn"] >= 1


def test_sarif_of_the_real_scan_is_well_formed(real_scan):
    assert_valid_sarif(scan.to_sarif(list(real_scan.values())))


def test_planted_findings_of_every_tool_land_in_sarif_with_their_location():
    planted = [
        scan.ToolResult("bandit", [scan.Issue("bandit", "B602", "authsvc/x.py", 3, "shell=True")], "failed"),
        scan.ToolResult("ruff", [scan.Issue("ruff", "S101", "authsvc/y.py", 9, "assert", level="note",
                                            blocking=False)], "ok"),
        scan.ToolResult("authsvc-astrules", [scan.Issue("authsvc-astrules", "AUTHSVC002", "authsvc/web/views/z.py", 12,
                                                        "request data reaches redirect()", column=12)], "failed"),
        scan.ToolResult("pip-audit", [], "offline", note="DEPENDENCIES NOT AUDITED: offline"),
    ]
    log = scan.to_sarif(planted)
    assert_valid_sarif(log)
    by_tool = {run["tool"]["driver"]["name"]: run for run in log["runs"]}
    result = by_tool["authsvc-astrules"]["results"][0]
    assert result["ruleId"] == "AUTHSVC002" and result["level"] == "error"
    region = result["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (12, 12)
    assert by_tool["ruff"]["results"][0]["level"] == "note"
    assert by_tool["pip-audit"]["results"] == []


def test_security_scan_script_writes_sarif_and_passes_on_this_tree(tmp_path):
    out = tmp_path / "scan.sarif"
    run = subprocess.run([sys.executable, str(scan.ROOT / "tests/security/scan.py"), "--no-audit", "--sarif", str(out)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "security scan: passed" in run.stdout
    log = json.loads(out.read_text())
    assert_valid_sarif(log)
    assert [r["tool"]["driver"]["name"] for r in log["runs"]] == ["bandit", "ruff", "authsvc-astrules", "suppressions"]
