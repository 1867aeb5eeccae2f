"""ASVS traceability: which tests prove which ASVS 5.0 requirement, and which are not yet proven.

Inputs:

* docs/asvs-requirements.toml: every requirement of the checklist's chapters with its level and
  status (A, A*, GAP, N/A, F), N/A and future ones with the reason;
* the ``@pytest.mark.asvs("V7.4.1", ...)`` markers in tests/**/test_*.py, read from the syntax
  tree (no import, so collecting is instant and needs no services). A marker applies to the test
  it decorates, to every test of a decorated ``Test*`` class, to a whole module through
  ``pytestmark``, or to one parameter through ``pytest.param(..., marks=...)`` (reported against
  the test function).

Output: docs/asvs.md (``scripts/asvs-report``). ``scripts/asvs-report --check`` and
tests/meta/test_asvs_traceability.py fail when the file is stale, when a marker names an id that
is not in the requirement list (a typo), or when a marker is not attached to any test.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "docs" / "asvs-requirements.toml"
REPORT = ROOT / "docs" / "asvs.md"
ID = re.compile(r"V\d{1,2}\.\d{1,2}\.\d{1,2}\Z")
APPLICABLE = ("A", "A*", "GAP")
COUNTED_SECTIONS = ("authentication", "sessions", "browser", "redirects", "secrets", "logging", "oidc")


@dataclass(frozen=True)
class Requirement:
    id: str
    section: str
    status: str
    level: int | None = None
    text: str = ""
    sketch: str = ""
    reason: str = ""

    @property
    def applicable(self) -> bool:
        return self.status in APPLICABLE

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.id[1:].split("."))


@dataclass
class Requirements:
    sections: list[tuple[str, str]]          # (key, title), in report order
    by_id: dict[str, Requirement]


@dataclass(frozen=True, order=True)
class Marker:
    path: str      # tests/security/test_x.py
    line: int
    test: str      # test_name or TestClass::test_name
    ids: tuple[str, ...]

    @property
    def nodeid(self) -> str:
        return f"{self.path}::{self.test}"


@dataclass
class Collected:
    markers: list[Marker] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_requirements(path: Path = REQUIREMENTS) -> Requirements:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    sections = [(s["key"], s["title"]) for s in data["section"]]
    by_id: dict[str, Requirement] = {}
    for raw in data["requirement"]:
        req = Requirement(**raw)
        if req.id in by_id:
            raise ValueError(f"{path.name}: {req.id} is listed twice")
        if not ID.match(req.id):
            raise ValueError(f"{path.name}: {req.id!r} is not an ASVS id like V7.4.1")
        by_id[req.id] = req
    return Requirements(sections, by_id)


# --- collecting markers -----------------------------------------------------------------------------


def _is_asvs_mark(node: ast.AST) -> bool:
    """``pytest.mark.asvs(...)`` or ``mark.asvs(...)``."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "asvs" and \
        isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "mark"


def _ids(call: ast.Call, where: str, problems: list[str]) -> tuple[str, ...]:
    ids = []
    for arg in call.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            ids.append(arg.value)
        else:
            problems.append(f"{where}: asvs marker argument {ast.unparse(arg)!r} is not a string literal")
    if call.keywords or not call.args:
        problems.append(f"{where}: asvs marker takes requirement ids only, e.g. @pytest.mark.asvs(\"V7.4.1\")")
    return tuple(ids)


def _marks_in(node: ast.AST, where: str, problems: list[str], seen: set[int]) -> list[str]:
    ids: list[str] = []
    for sub in ast.walk(node):
        if _is_asvs_mark(sub):
            seen.add(id(sub))
            ids += _ids(sub, f"{where}:{sub.lineno}", problems)
    return ids


def collect_source(source: str, path: str) -> Collected:
    out = Collected()
    tree = ast.parse(source, filename=path)
    seen: set[int] = set()
    module_ids: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets):
                module_ids += _marks_in(stmt.value, path, out.problems, seen)

    def add(func: ast.AST, name: str, inherited: list[str]) -> None:
        ids = list(inherited)
        for decorator in func.decorator_list:
            ids += _marks_in(decorator, path, out.problems, seen)
        if ids:
            out.markers.append(Marker(path, func.lineno, name, tuple(dict.fromkeys(ids))))

    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name.startswith("test"):
            add(stmt, stmt.name, module_ids)
        elif isinstance(stmt, ast.ClassDef) and stmt.name.startswith("Test"):
            class_ids = list(module_ids)
            for decorator in stmt.decorator_list:
                class_ids += _marks_in(decorator, path, out.problems, seen)
            for inner in stmt.body:
                if isinstance(inner, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                         for t in inner.targets):
                    class_ids += _marks_in(inner.value, path, out.problems, seen)
            for inner in stmt.body:
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner.name.startswith("test"):
                    add(inner, f"{stmt.name}::{inner.name}", class_ids)
    for node in ast.walk(tree):
        if _is_asvs_mark(node) and id(node) not in seen:
            out.problems.append(f"{path}:{node.lineno}: asvs marker is not attached to a test (decorate the test "
                                "function or class, or assign it to pytestmark)")
    return out


def collect(root: Path = ROOT) -> Collected:
    out = Collected()
    for path in sorted((root / "tests").rglob("test_*.py")):
        if "__pycache__" in path.parts:
            continue
        part = collect_source(path.read_text(encoding="utf-8"), path.relative_to(root).as_posix())
        out.markers += part.markers
        out.problems += part.problems
    out.markers.sort()
    return out


def marker_problems(collected: Collected, reqs: Requirements) -> list[str]:
    problems = list(collected.problems)
    for marker in collected.markers:
        for rid in marker.ids:
            if not ID.match(rid):
                problems.append(f"{marker.nodeid}: {rid!r} is not an ASVS id (expected the form V7.4.1)")
            elif rid not in reqs.by_id:
                problems.append(f"{marker.nodeid}: {rid} is not in docs/asvs-requirements.toml (a typo? if it is a "
                                "real ASVS 5.0 requirement, add it there under section \"cited\")")
    return problems


# --- the report ---------------------------------------------------------------------------------------


def _level(req: Requirement) -> str:
    return f"L{req.level}" if req.level else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def coverage(reqs: Requirements, collected: Collected) -> dict[str, list[str]]:
    tests: dict[str, list[str]] = defaultdict(list)
    for marker in collected.markers:
        for rid in marker.ids:
            if marker.nodeid not in tests[rid]:
                tests[rid].append(marker.nodeid)
    return tests


def summary(reqs: Requirements, collected: Collected) -> tuple[int, int]:
    """(covered, applicable) over the counted sections."""
    tests = coverage(reqs, collected)
    applicable = [r for r in reqs.by_id.values() if r.section in COUNTED_SECTIONS and r.applicable]
    return sum(1 for r in applicable if tests.get(r.id)), len(applicable)


def render(reqs: Requirements, collected: Collected) -> str:
    tests = coverage(reqs, collected)
    by_section: dict[str, list[Requirement]] = defaultdict(list)
    for req in sorted(reqs.by_id.values(), key=lambda r: r.key):
        by_section[req.section].append(req)
    covered_total, applicable_total = summary(reqs, collected)
    lines = [
        "# ASVS 5.0 traceability",
        "",
        "Generated by `scripts/asvs-report` from the `@pytest.mark.asvs(...)` markers in `tests/` and the",
        "requirement list `docs/asvs-requirements.toml` (from the project's ASVS checklist). Do not edit by hand:",
        "`tests/meta/test_asvs_traceability.py` fails when this file is stale or a marker names an unknown id.",
        "",
        "A requirement counts as covered when at least one test carries its marker. *Applicable* means",
        "status A (tested), A\\* (checked mainly by review of documentation or configuration) or GAP (the",
        "checklist found the feature missing when it was written) in the requested chapters; the adjacent",
        "and other cited requirements are listed apart and not counted.",
        "",
        f"**Covered: {covered_total} of {applicable_total} applicable requirements"
        f" ({100 * covered_total / applicable_total:.0f}%).**",
        "",
        "| Section | Applicable | Covered | Not yet covered | N/A | Future |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, title in reqs.sections:
        if key not in COUNTED_SECTIONS:
            continue
        rs = by_section[key]
        app = [r for r in rs if r.applicable]
        cov = [r for r in app if tests.get(r.id)]
        lines.append(f"| {title} | {len(app)} | {len(cov)} | {len(app) - len(cov)} | "
                     f"{sum(r.status == 'N/A' for r in rs)} | {sum(r.status == 'F' for r in rs)} |")
    lines.append(f"| **Total** | **{applicable_total}** | **{covered_total}** | "
                 f"**{applicable_total - covered_total}** | "
                 f"{sum(r.status == 'N/A' for r in reqs.by_id.values())} | "
                 f"{sum(r.status == 'F' for r in reqs.by_id.values())} |")
    for key, title in reqs.sections:
        rs = by_section[key]
        app = [r for r in rs if r.applicable]
        cov = [r for r in app if tests.get(r.id)]
        unc = [r for r in app if not tests.get(r.id)]
        lines += ["", f"## {title}", ""]
        if cov:
            lines += ["### Covered", "", "| Requirement | Level | Status | Tests |", "|---|---|---|---|"]
            for r in cov:
                cell = "<br>".join(f"`{t}`" for t in tests[r.id])
                lines.append(f"| **{r.id}** {_cell(r.text)} | {_level(r)} | {_cell(r.status)} | {cell} |")
            lines.append("")
        if unc:
            lines += ["### Not yet covered", "", "| Requirement | Level | Status | What a test would check |",
                      "|---|---|---|---|"]
            for r in unc:
                why = r.sketch or "no automated test sketched"
                lines.append(f"| **{r.id}** {_cell(r.text)} | {_level(r)} | {_cell(r.status)} | {_cell(why)} |")
            lines.append("")
        for status, heading in (("N/A", "Not applicable"), ("F", "Future (not in scope yet)")):
            items = [r for r in rs if r.status == status]
            if items:
                lines += [f"### {heading}", ""]
                for r in items:
                    cited = tests.get(r.id)
                    extra = f" Cited by: {', '.join(f'`{t}`' for t in cited)}." if cited else ""
                    lines.append(f"- **{r.id}** ({_level(r)}): {r.reason}{extra}")
                lines.append("")
    while lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/asvs-report", description="write docs/asvs.md from the test markers")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/asvs.md is stale; write nothing")
    args = parser.parse_args(argv)
    reqs = load_requirements()
    collected = collect()
    problems = marker_problems(collected, reqs)
    for problem in problems:
        print(f"asvs-report: {problem}", file=sys.stderr)
    text = render(reqs, collected)
    covered, applicable = summary(reqs, collected)
    if args.check:
        current = REPORT.read_text(encoding="utf-8") if REPORT.exists() else ""
        if current != text:
            print("asvs-report: docs/asvs.md is stale; run scripts/asvs-report", file=sys.stderr)
            return 1
    else:
        REPORT.write_text(text, encoding="utf-8")
        print(f"asvs-report: wrote {REPORT.relative_to(ROOT)}: {covered} of {applicable} applicable requirements covered")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
