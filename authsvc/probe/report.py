"""A run's results as a table for people, JSON for scripts and SARIF 2.1.0 for code-scanning
dashboards. Every text from the deployment or a hostile sample is escaped (:func:`shown`) before it
is printed; no cookie value or password is ever part of a result.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import metadata

from authsvc.probe.model import FAIL, NOT_APPLICABLE, OK, Check, Result, shown

TOOL = "authsvc-probe"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_KIND = {OK: "pass", FAIL: "fail", NOT_APPLICABLE: "notApplicable"}


def version() -> str:
    try:
        return metadata.version("authsvc")
    except metadata.PackageNotFoundError:
        return "0"


def summary(results: list[Result]) -> dict[str, int]:
    counts = Counter(r.status for r in results)
    return {"pass": counts[OK], "fail": counts[FAIL], "not_applicable": counts[NOT_APPLICABLE]}


def table(results: list[Result], auth_url: str, app_url: str) -> str:
    width = max((len(r.check.id) for r in results), default=10)
    lines = [f"authsvc probe: {shown(auth_url)} in front of {shown(app_url)}", "",
             f"{'result':<7} {'check':<{width}}  detail"]
    for r in results:
        label = {OK: "pass", FAIL: "FAIL", NOT_APPLICABLE: "n/a"}[r.status]
        lines.append(f"{label:<7} {r.check.id:<{width}}  {shown(r.finding.detail, 400)}")
        if r.status == FAIL:
            lines.append(f"{'':<7} {'':<{width}}  fix: {r.check.fix}")
    counts = summary(results)
    lines += ["", f"{counts['pass']} passed, {counts['fail']} failed, {counts['not_applicable']} not applicable"]
    return "\n".join(lines)


def to_json(results: list[Result], auth_url: str, app_url: str) -> dict:
    return {
        "tool": TOOL, "version": version(), "auth_url": auth_url, "app_url": app_url,
        "summary": summary(results),
        "results": [{"id": r.check.id, "title": r.check.title, "status": r.status,
                     "detail": shown(r.finding.detail, 1000), "url": r.url, "asvs": list(r.check.asvs),
                     **({"fix": r.check.fix} if r.status == FAIL else {})} for r in results],
    }


def to_sarif(results: list[Result], checks: tuple[Check, ...]) -> dict:
    """One run; every check is a rule (its fix is the rule's help), every result is reported with
    its kind (pass, fail, notApplicable); only failures have a level other than none. The
    location is the URL the check was about."""
    index = {c.id: i for i, c in enumerate(checks)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": TOOL, "version": version(),
                "rules": [{"id": c.id, "name": c.id.replace(".", "_"), "shortDescription": {"text": c.title},
                           "help": {"text": c.fix}, "properties": {"tags": ["security", *c.asvs]}}
                          for c in checks],
            }},
            "results": [{
                "ruleId": r.check.id, "ruleIndex": index[r.check.id], "kind": _KIND[r.status],
                "level": "error" if r.status == FAIL else "none",
                "message": {"text": shown(r.finding.detail, 1000) or r.check.title},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": r.url}}}],
            } for r in results],
            "invocations": [{"executionSuccessful": True}],
        }],
    }


def dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"
