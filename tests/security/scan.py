"""The static security scan: bandit, ruff's security rules, authsvc's own AST rules, reasons on
every suppression comment, and pip-audit when a vulnerability service answers. SARIF 2.1.0 out.

``scripts/security-scan [--sarif FILE]`` runs :func:`main`; the tests in
tests/meta/test_static_*.py call the same functions, so the scan and the test suite cannot
disagree about what passes.

What fails (exit status 1):

* a bandit finding of medium or high severity (low ones are reported as notes);
* a ruff ``S`` finding, unless the same line carries a reasoned ``# nosec B<same number>``
  (bandit and ruff number the same checks alike: S101 is B101);
* any finding of tests/security/astrules.py;
* a ``# nosec`` without a bandit test id and a reason, or a ``# noqa`` for an ``S`` rule without
  a reason (``# nosec B606 - fixed argv, no shell``; the reason follows ``-``, ``--``, ``#`` or ``:``);
* a dependency pip-audit reports vulnerable;
* with ``--sbom FILE`` (scripts/security-scan passes ``artifacts/sbom.cdx.json``), a CycloneDX SBOM
  of the runtime dependencies that cyclonedx-py cannot write.

When no vulnerability service is reachable (this machine: PyPI's JSON API and OSV are not), the
dependency audit is reported as NOT DONE, loudly, and does not fail the scan: it cannot be done
offline, and a scan that always fails offline would be switched off.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import tokenize
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGE = "authsvc"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

if __package__ in (None, ""):  # run as a file: make "tests.security" importable
    sys.path.insert(0, str(ROOT))
from tests.security import astrules  # noqa: E402


@dataclass(frozen=True, order=True)
class Issue:
    """One finding of one tool. ``blocking`` findings fail the scan."""

    tool: str
    rule: str
    path: str
    line: int
    message: str
    level: str = "error"        # SARIF level: error, warning, note
    blocking: bool = True
    column: int = 1
    help_uri: str = ""

    def __str__(self) -> str:
        mark = "" if self.blocking else " (not blocking)"
        return f"{self.path}:{self.line}:{self.column}: [{self.tool} {self.rule}] {self.message}{mark}"


@dataclass
class ToolResult:
    tool: str
    issues: list[Issue] = field(default_factory=list)
    status: str = "ok"          # ok, failed, offline, error
    note: str = ""
    version: str = ""
    rules: dict[str, str] = field(default_factory=dict)  # rule id -> short description

    @property
    def blocking(self) -> list[Issue]:
        return [i for i in self.issues if i.blocking]


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


# --- suppression comments ---------------------------------------------------------------------------

NOSEC = re.compile(r"#\s*nosec\b:?(?P<rest>.*)", re.IGNORECASE)
NOSEC_IDS = re.compile(r"^\s*(?P<ids>(?:B\d{3}\s*,?\s*)+)(?P<after>.*)$")
NOQA_S = re.compile(r"#\s*noqa\s*:\s*(?P<codes>[A-Z]+\d+(?:\s*,\s*[A-Z]+\d+)*)(?P<after>.*)", re.IGNORECASE)
SEPARATOR = re.compile(r"^\s*(?:-{1,2}|#|:|—)?\s*")


def _reason(after: str) -> str:
    """The text after the ids, without its separator; a reason has at least five characters."""
    text = SEPARATOR.sub("", after, count=1).strip()
    return text if len(text) >= 5 else ""


def suppressions(source: str) -> list[tuple[int, str, list[str], str]]:
    """Every ``# nosec`` / ``# noqa: S…`` comment: (line, kind, ids, reason or "")."""
    found = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return found
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        text = token.string
        nosec = NOSEC.search(text)
        if nosec:
            rest = nosec.group("rest")
            ids_match = NOSEC_IDS.match(rest)
            ids = re.findall(r"B\d{3}", ids_match.group("ids")) if ids_match else []
            after = ids_match.group("after") if ids_match else rest
            found.append((token.start[0], "nosec", ids, _reason(after)))
        noqa = NOQA_S.search(text)
        if noqa:
            codes = [c.strip().upper() for c in noqa.group("codes").split(",")]
            if any(c.startswith("S") for c in codes):
                found.append((token.start[0], "noqa", codes, _reason(noqa.group("after"))))
    return found


def suppression_issues(source: str, path: str) -> list[Issue]:
    issues = []
    for line, kind, ids, reason in suppressions(source):
        if kind == "nosec" and not ids:
            issues.append(Issue("suppressions", "nosec-without-test-id", path, line,
                                "`# nosec` must name the bandit check it silences (e.g. `# nosec B606 - why`)"))
        if not reason:
            issues.append(Issue("suppressions", f"{kind}-without-reason", path, line,
                                f"`# {kind}` must say why the finding does not apply (`# {kind} "
                                f"{(ids or ['B000'])[0]} - the reason`)"))
    return issues


def python_files(root: Path, folders=(PACKAGE, "tests", "scripts")) -> list[Path]:
    files = []
    for folder in folders:
        base = root / folder
        if base.is_dir():
            files += [p for p in base.rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def check_suppressions(root: Path = ROOT) -> ToolResult:
    result = ToolResult("suppressions", rules={
        "nosec-without-test-id": "A # nosec comment names no bandit test id.",
        "nosec-without-reason": "A # nosec comment gives no reason.",
        "noqa-without-reason": "A # noqa for a security (S) rule gives no reason.",
    })
    for path in python_files(root):
        result.issues += suppression_issues(path.read_text(encoding="utf-8"), _relative(str(path), root))
    result.status = "failed" if result.blocking else "ok"
    return result


def reasoned_nosec_lines(source: str) -> dict[int, set[str]]:
    """line -> bandit ids silenced there with a reason."""
    return {line: set(ids) for line, kind, ids, reason in suppressions(source) if kind == "nosec" and reason}


# --- bandit -----------------------------------------------------------------------------------------


def bandit_issues(report: dict, root: Path = ROOT) -> list[Issue]:
    """Issues from bandit's JSON report; medium and high severity block."""
    issues = []
    for r in report.get("results", []):
        severity = r.get("issue_severity", "UNDEFINED").upper()
        blocking = severity in ("MEDIUM", "HIGH")
        issues.append(Issue("bandit", r["test_id"], _relative(r["filename"], root), int(r["line_number"]),
                            f"{r['issue_text']} (severity {severity}, confidence {r.get('issue_confidence', '?')})",
                            level="error" if blocking else "note", blocking=blocking,
                            column=int(r.get("col_offset", 0)) + 1, help_uri=r.get("more_info", "")))
    for error in report.get("errors", []):
        issues.append(Issue("bandit", "scan-error", _relative(error.get("filename", "?"), root), 1,
                            f"bandit could not scan this file: {error.get('reason', '?')}"))
    return issues


def run_bandit(root: Path = ROOT, target: str = PACKAGE) -> ToolResult:
    result = ToolResult("bandit", version=_version("bandit"))
    out = subprocess.run([str(BIN / "bandit"), "-c", str(root / "pyproject.toml"), "-r", target, "-f", "json", "-q"],
                         cwd=root, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        result.status = "error"
        result.issues.append(Issue("bandit", "scan-error", target, 1, f"bandit did not run: {out.stderr.strip()[-500:]}"))
        return result
    result.issues = bandit_issues(report, root)
    result.rules = {i.rule: i.message.split(" (severity")[0] for i in result.issues}
    result.status = "failed" if result.blocking else "ok"
    return result


# --- ruff -------------------------------------------------------------------------------------------


def ruff_issues(report: list[dict], sources: dict[str, str], root: Path = ROOT) -> list[Issue]:
    """Issues from ruff's JSON report. A finding whose line carries a reasoned ``# nosec`` for the
    bandit check of the same number (S606 <-> B606) is accepted and reported as a note."""
    issues = []
    for r in report:
        path = _relative(r["filename"], root)
        row = int(r["location"]["row"])
        bandit_id = "B" + r["code"][1:]
        accepted = bandit_id in reasoned_nosec_lines(sources.get(path, "")).get(row, set())
        issues.append(Issue("ruff", r["code"], path, row,
                            r["message"] + (f" (accepted: reasoned # nosec {bandit_id} on this line)" if accepted else ""),
                            level="note" if accepted else "error", blocking=not accepted,
                            column=int(r["location"]["column"]), help_uri=r.get("url") or ""))
    return issues


def run_ruff(root: Path = ROOT, target: str = PACKAGE) -> ToolResult:
    result = ToolResult("ruff", version=_version("ruff"))
    out = subprocess.run([str(BIN / "ruff"), "check", "--select", "S", "--output-format", "json", "--no-cache",
                          "--exit-zero", target], cwd=root, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(out.stdout or "[]")
    except json.JSONDecodeError:
        result.status = "error"
        result.issues.append(Issue("ruff", "scan-error", target, 1, f"ruff did not run: {out.stderr.strip()[-500:]}"))
        return result
    sources = {_relative(str(p), root): p.read_text(encoding="utf-8") for p in python_files(root, (target,))}
    result.issues = ruff_issues(report, sources, root)
    result.rules = {i.rule: i.message.split(" (accepted")[0] for i in result.issues}
    result.status = "failed" if result.blocking else "ok"
    return result


# --- authsvc's AST rules ----------------------------------------------------------------------------


def run_astrules(root: Path = ROOT) -> ToolResult:
    result = ToolResult("authsvc-astrules", rules={rid: f"{name}: {text}" for rid, (name, text) in astrules.RULES.items()})
    result.issues = [Issue("authsvc-astrules", f.rule, f.path, f.line, f"{f.name}: {f.message}", column=f.col + 1)
                     for f in astrules.check_tree(root)]
    result.status = "failed" if result.blocking else "ok"
    return result


# --- pip-audit --------------------------------------------------------------------------------------

# (pip-audit service name, probe URL, HTTP method, body): a service counts as reachable when the
# probe answers 200 with JSON. PyPI's probe asks for a release that exists, so a mirror that
# serves only the simple index (404 here) counts as offline: pip-audit itself would otherwise skip
# every package as "not found on PyPI" and still print "No known vulnerabilities found".
SERVICES = [
    ("pypi", "https://pypi.org/pypi/pip/24.0/json", "GET", None),
    ("osv", "https://api.osv.dev/v1/query", "POST",
     json.dumps({"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "24.0"}).encode()),
]


def probe(url: str, method: str = "GET", body: bytes | None = None, timeout: float = 5.0) -> str | None:
    """None when the service answers with JSON, else why not (for the report)."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310 - fixed https URLs
            json.loads(response.read(2_000_000))
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def pip_audit_issues(report: dict) -> tuple[list[Issue], list[str]]:
    """(vulnerabilities as issues, names of dependencies that could not be audited)."""
    issues, skipped = [], []
    for dep in report.get("dependencies", []):
        if dep.get("skip_reason"):
            skipped.append(f"{dep.get('name')} ({dep['skip_reason']})")
            continue
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "none yet"
            aliases = ", ".join(vuln.get("aliases", []))
            issues.append(Issue("pip-audit", vuln.get("id", "VULN"), "pyproject.toml", 1,
                                f"{dep['name']} {dep.get('version', '?')}: {vuln.get('id')}"
                                f"{f' ({aliases})' if aliases else ''}; fixed in {fixes}"))
    return issues, skipped


def run_pip_audit(services=SERVICES, timeout: float = 5.0) -> ToolResult:
    result = ToolResult("pip-audit", version=_version("pip-audit"))
    reasons = []
    service = None
    for name, url, method, body in services:
        why = probe(url, method, body, timeout)
        if why is None:
            service = name
            break
        reasons.append(f"{name} ({url}): {why}")
    if service is None:
        result.status = "offline"
        result.note = ("DEPENDENCIES NOT AUDITED: no vulnerability service is reachable (" + "; ".join(reasons) +
                       "). Run scripts/security-scan where PyPI's JSON API or api.osv.dev answers (CI with internet).")
        return result
    out = subprocess.run([str(BIN / "pip-audit"), "--format", "json", "--progress-spinner", "off", "--skip-editable",
                          "--vulnerability-service", service], capture_output=True, text=True, timeout=900, check=False)
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        result.status = "error"
        result.note = f"pip-audit did not run: {out.stderr.strip()[-500:]}"
        result.issues.append(Issue("pip-audit", "scan-error", "pyproject.toml", 1, result.note))
        return result
    result.issues, skipped = pip_audit_issues(report)
    audited = len(report.get("dependencies", [])) - len(skipped)
    if audited == 0:
        result.status = "offline"
        result.note = f"DEPENDENCIES NOT AUDITED: {service} knew none of them ({len(skipped)} skipped)."
        return result
    result.note = f"{audited} dependencies audited against {service}" + \
        (f"; not audited: {', '.join(skipped)}" if skipped else "")
    result.status = "failed" if result.blocking else "ok"
    return result


# --- SBOM --------------------------------------------------------------------------------------------


def write_sbom(out: Path, lock: Path = RUNTIME_LOCK, root: Path = ROOT) -> dict:
    """Write a CycloneDX JSON SBOM of the runtime dependencies to ``out`` and return it.

    Made from the runtime lock (what ``scripts/dev`` and a production install get, every file with
    its hashes), not from .venv, which also holds the test tools. ``--output-reproducible``: the
    same lock gives the same file (no serial number; the time only from ``SOURCE_DATE_EPOCH``).
    Raises RuntimeError saying why when cyclonedx-py fails.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(BIN / "cyclonedx-py"), "requirements", "--pyproject", str(root / "pyproject.toml"),
                           "--output-reproducible", "--output-format", "JSON", "--output-file", str(out), str(lock)],
                          cwd=root, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"cyclonedx-py did not write the SBOM: {proc.stderr.strip()[-500:]}")
    return json.loads(out.read_text(encoding="utf-8"))


# --- SARIF -------------------------------------------------------------------------------------------

TOOL_URIS = {
    "bandit": "https://bandit.readthedocs.io/",
    "ruff": "https://docs.astral.sh/ruff/rules/#flake8-bandit-s",
    "authsvc-astrules": "tests/security/astrules.py",
    "suppressions": "tests/security/scan.py",
    "pip-audit": "https://pypi.org/project/pip-audit/",
}


def to_sarif(results: list[ToolResult]) -> dict:
    runs = []
    for result in results:
        rule_ids = sorted({i.rule for i in result.issues} | set(result.rules))
        rules = [{"id": rid, "name": rid if not astrules.RULES.get(rid) else astrules.RULES[rid][0],
                  "shortDescription": {"text": result.rules.get(rid) or rid}} for rid in rule_ids]
        for rule in rules:
            uri = next((i.help_uri for i in result.issues if i.rule == rule["id"] and i.help_uri), "")
            if uri:
                rule["helpUri"] = uri
        run = {
            "tool": {"driver": {"name": result.tool, "informationUri": TOOL_URIS.get(result.tool, ""),
                                "rules": rules, **({"version": result.version} if result.version else {})}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": ROOT.as_uri() + "/"}},
            "results": [{
                "ruleId": i.rule,
                "ruleIndex": rule_ids.index(i.rule),
                "level": i.level,
                "message": {"text": i.message},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": i.path, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": max(1, i.line), "startColumn": max(1, i.column)},
                }}],
            } for i in sorted(result.issues)],
            "invocations": [{"executionSuccessful": result.status in ("ok", "failed", "offline"),
                             **({"toolExecutionNotifications": [{"level": "warning", "message": {"text": result.note}}]}
                                if result.note else {})}],
        }
        runs.append(run)
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": runs}


# --- the whole scan ------------------------------------------------------------------------------------


def scan(root: Path = ROOT, *, audit: bool = True) -> list[ToolResult]:
    results = [run_bandit(root), run_ruff(root), run_astrules(root), check_suppressions(root)]
    if audit:
        results.append(run_pip_audit())
    return results


# Where the CI reaches a vulnerability service, this makes "not audited" a failure (scan and suite).
REQUIRE_AUDIT = "AUTHSVC_REQUIRE_AUDIT"


def audit_required(environ) -> bool:
    return environ.get(REQUIRE_AUDIT, "").strip().lower() in ("1", "true", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/security-scan",
                                     description="bandit, ruff S rules, authsvc AST rules, suppression reasons, pip-audit")
    parser.add_argument("--sarif", metavar="FILE", help="also write the findings as SARIF 2.1.0 to FILE")
    parser.add_argument("--no-audit", action="store_true", help="skip pip-audit (dependency vulnerabilities)")
    parser.add_argument("--require-audit", action="store_true",
                        help="fail when no vulnerability service answers (for a CI that reaches the internet; "
                             f"also {REQUIRE_AUDIT}=1)")
    parser.add_argument("--sbom", metavar="FILE",
                        help="also write a CycloneDX JSON SBOM of the runtime dependencies (requirements/runtime.lock) to FILE")
    args = parser.parse_args(argv)
    require_audit = args.require_audit or audit_required(os.environ)
    os.chdir(ROOT)
    results = scan(ROOT, audit=not args.no_audit)
    failed = False
    for result in results:
        blocking = result.blocking
        failed |= bool(blocking) or result.status == "error" or (result.status == "offline" and require_audit)
        label = {"ok": "ok", "failed": "FAILED", "offline": "NOT RUN (offline)", "error": "ERROR"}[result.status]
        print(f"== {result.tool}: {label}" + (f" ({len(blocking)} blocking, {len(result.issues) - len(blocking)} "
                                                f"accepted or low)" if result.issues else ""))
        for issue in sorted(result.issues):
            print(f"   {issue}")
        if result.note:
            print(f"   {result.note}")
    if args.sarif:
        Path(args.sarif).parent.mkdir(parents=True, exist_ok=True)
        Path(args.sarif).write_text(json.dumps(to_sarif(results), indent=2) + "\n", encoding="utf-8")
        print(f"SARIF 2.1.0 written to {args.sarif}")
    if args.sbom:
        try:
            bom = write_sbom(Path(args.sbom))
            print(f"CycloneDX SBOM ({len(bom.get('components', []))} runtime components) written to {args.sbom}")
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            failed = True
            print(f"== sbom: ERROR\n   {exc}")
    print("security scan: " + ("FAILED" if failed else "passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
