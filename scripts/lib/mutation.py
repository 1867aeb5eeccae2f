"""scripts/mutation: mutmut over the security core, then the kill rate.

What is mutated (pyproject.toml [tool.mutmut] copies and mutates these files; only these functions
are run):

* authsvc/rules/redirects.py, authsvc/rules/secretkeys.py, authsvc/rules/passwords.py: every function;
* authsvc/core/sessions.py: session_verdict, needs_touch;
* authsvc/core/throttle.py: decide, block_after_failure, backoff_seconds.

The tests are the fast modules listed in [tool.mutmut] pytest_add_cli_args_test_selection, with
the hypothesis profile ``mutation`` (few examples, fixed seed: a mutant never survives by luck).

Score: killed (a test failed, or the mutant hung and hit the time limit) over all mutants run.
Survivors that docs/mutation.md lists as equivalent (a line ``- `NAME`: reason``) are reported
apart; every other survivor is printed with ``mutmut show NAME`` as the way to read its diff.
Exit status 1 when the kill rate is below --fail-under (default 95).

mutmut can consult git for change detection; it is switched off here (and in pyproject.toml):
results never depend on the checkout's history, and mutmut's own cache keys on file contents.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TARGETS: dict[str, tuple[str, ...] | None] = {
    "authsvc/rules/redirects.py": None,
    "authsvc/rules/secretkeys.py": None,
    "authsvc/rules/passwords.py": None,
    "authsvc/core/sessions.py": ("session_verdict", "needs_touch"),
    "authsvc/core/throttle.py": ("decide", "block_after_failure", "backoff_seconds"),
}
EQUIVALENT = re.compile(r"^\s*[-*]\s+`(?P<name>authsvc\.[^`]+__mutmut_\d+)`")
KILLED = {"killed", "timeout", "caught by type check"}


def patterns() -> list[str]:
    out = []
    for path, functions in TARGETS.items():
        module = path.removesuffix(".py").replace("/", ".")
        if functions is None:
            out.append(f"{module}.*")
        else:
            out += [f"{module}.x_{name}__mutmut_*" for name in functions]
    return out


def selected(name: str, pats: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in pats)


def results(pats: list[str]) -> dict[str, str]:
    """Mutant name -> status, from mutmut's per-file .meta files."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for path in TARGETS:
        meta = ROOT / "mutants" / (path + ".meta")
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            if selected(name, pats):
                found[name] = status_by_exit_code[code]
    return found


def equivalents(doc: Path) -> dict[str, str]:
    listed = {}
    if doc.exists():
        for line in doc.read_text(encoding="utf-8").splitlines():
            match = EQUIVALENT.match(line)
            if match:
                listed[match.group("name")] = line.split(":", 1)[-1].strip()
    return listed


def run_mutmut(pats: list[str], max_children: int | None) -> None:
    import mutmut.__main__ as mutmut_main

    mutmut_main._run_git = lambda args: None  # see the module docstring
    argv = ["run", *(["--max-children", str(max_children)] if max_children else []), *pats]
    try:
        mutmut_main.cli(argv, standalone_mode=False)
    except SystemExit as exc:  # mutmut exits non-zero when the clean run fails
        if exc.code not in (0, None):
            raise


def report(found: dict[str, str], listed: dict[str, str], fail_under: float, complete: bool = True) -> int:
    total = len(found)
    if not total:
        print("mutation: no results; run without --report-only first", file=sys.stderr)
        return 1
    unchecked = sorted(n for n, s in found.items() if s in ("not checked", "check was interrupted by user"))
    if unchecked:
        print(f"mutation: {len(unchecked)} mutants were not run (interrupted?); they count as survivors below")
    killed = sorted(n for n, s in found.items() if s in KILLED)
    survivors = sorted(n for n, s in found.items() if s not in KILLED)
    equivalent = [n for n in survivors if n in listed]
    unexplained = [n for n in survivors if n not in listed]
    stale = sorted(n for n in listed if found.get(n) in KILLED or (complete and n not in found))
    by_file: dict[str, list[int]] = {}
    for name, status in found.items():
        module = name.split(".x_")[0].split(".xǁ")[0]
        counts = by_file.setdefault(module, [0, 0])
        counts[0] += status in KILLED
        counts[1] += 1
    print()
    for module, (k, t) in sorted(by_file.items()):
        print(f"  {module:<20} {k:>4} / {t:<4} killed ({100 * k / t:.1f}%)")
    rate = 100 * len(killed) / total
    print(f"\nmutation score: {len(killed)} / {total} killed ({rate:.1f}%); "
          f"{len(equivalent)} surviving mutants are listed as equivalent in docs/mutation.md; "
          f"{len(unexplained)} unexplained")
    print(f"killed or equivalent: {len(killed) + len(equivalent)} / {total} "
          f"({100 * (len(killed) + len(equivalent)) / total:.1f}%)")
    for name in unexplained:
        print(f"  survived ({found[name]}): {name}   (see: .venv/bin/mutmut show {name})")
    for name in stale:
        print(f"  docs/mutation.md lists {name} as equivalent, but it is {found.get(name, 'not generated any more')}: "
              "update the list")
    if rate < fail_under:
        print(f"mutation: kill rate {rate:.1f}% is below {fail_under}%", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=__doc__.split("\n")[0])
    parser.add_argument("--report-only", action="store_true", help="print the score of the last run, run nothing")
    parser.add_argument("--fail-under", type=float, default=95.0, help="minimum kill rate in percent (default 95)")
    parser.add_argument("--max-children", type=int, default=None, help="parallel mutants (default: CPU count)")
    parser.add_argument("--only", action="append", default=None, metavar="GLOB",
                        help="run only mutants matching GLOB (e.g. 'authsvc.core.throttle.*'); repeatable")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    os.environ["HYPOTHESIS_PROFILE"] = "mutation"
    pats = list(args.only) if args.only else patterns()
    if not args.report_only:
        run_mutmut(pats, args.max_children)
    return report(results(pats), equivalents(ROOT / "docs" / "mutation.md"), args.fail_under,
                  complete=not args.only)


if __name__ == "__main__":
    sys.exit(main())
