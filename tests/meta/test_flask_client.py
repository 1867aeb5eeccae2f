"""clients/flask (Flask-Authsvc) stays a small app-side distribution: it never imports authsvc, and
depends on nothing an app does not already have (Flask, Flask-Login; Authlib and its JOSE library
joserfc only for the OIDC extra). Werkzeug and MarkupSafe come with Flask (its own dependencies):
the extension may use them without naming them."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "flask"
ALLOWED = {"flask", "flask_login", "werkzeug", "markupsafe", "authlib", "joserfc", "flask_authsvc"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_extension_imports_only_flask_flask_login_and_the_standard_library():
    for path in sorted((CLIENT / "src" / "flask_authsvc").glob("*.py")):
        foreign = imported_roots(path) - ALLOWED - set(sys.stdlib_module_names)
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


def test_distribution_depends_on_flask_and_flask_login_only():
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {dep.split(">")[0].split("<")[0].split("=")[0].strip().lower() for dep in project["dependencies"]}
    assert names == {"flask", "flask-login"}
    assert [dep.split(">")[0].lower() for dep in project["optional-dependencies"]["oidc"]] == ["authlib", "joserfc", "requests"]


def test_authsvc_suite_runs_the_extension_tests():
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "clients/flask/tests" in pytest_options["testpaths"]
    assert "clients/flask" in (ROOT / "scripts" / "lib" / "bootstrap.sh").read_text()
