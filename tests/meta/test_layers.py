"""The package's folders are its layers (docs/architecture.md): rules < core < web < server.

import-linter checks the contracts in pyproject.toml ([tool.importlinter]): no layer imports one
above it, and nothing below the web layer imports Flask, Werkzeug or a Flask extension. The rules
layer may import nothing outside the standard library, which import-linter cannot say; the AST
check below does. So may the probe (authsvc/probe, `authsvc probe`), besides itself: it checks a
deployment from outside and must not trust the code it checks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "authsvc" / "rules"
PROBE = ROOT / "authsvc" / "probe"


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout and "2 kept" in run.stdout, run.stdout


def imported_roots(source: str, package: str = "authsvc.rules") -> set[str]:
    """The top-level names a module imports (relative imports as ``package``)."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(package if node.level else node.module or "")
    return roots


def outside_stdlib(name: str, package: str = "authsvc.rules") -> bool:
    if name == package or name.startswith(package + "."):
        return False
    return name.split(".")[0] not in sys.stdlib_module_names


def test_rules_import_only_the_standard_library_and_each_other():
    offenders = {path.name: sorted(filter(outside_stdlib, imported_roots(path.read_text(encoding="utf-8"))))
                 for path in sorted(RULES.glob("*.py"))}
    assert {name: names for name, names in offenders.items() if names} == {}
    assert len(offenders) >= 8  # the rules exist where this test looks for them


def test_the_probe_imports_only_the_standard_library_and_itself():
    offenders = {path.name: sorted(name for name in imported_roots(path.read_text(encoding="utf-8"), "authsvc.probe")
                                   if outside_stdlib(name, "authsvc.probe"))
                 for path in sorted(PROBE.glob("*.py"))}
    assert {name: names for name, names in offenders.items() if names} == {}
    assert len(offenders) >= 8


def test_the_stdlib_check_catches_what_it_must():
    assert sorted(filter(outside_stdlib, imported_roots(
        "import os\nfrom flask import g\nfrom authsvc.core import db\nfrom authsvc.rules import redirects\n"
        "import werkzeug.http\nfrom . import streamsafe\nfrom __future__ import annotations\n"))) == [
        "authsvc.core", "flask", "werkzeug.http"]


def test_the_probe_check_catches_what_it_must():
    assert sorted(name for name in imported_roots(
        "import ssl\nfrom authsvc.probe import model\nfrom . import client\nfrom authsvc.rules import redirects\n"
        "from authsvc.core import config\nimport requests\n", "authsvc.probe")
        if outside_stdlib(name, "authsvc.probe")) == ["authsvc.core", "authsvc.rules", "requests"]
