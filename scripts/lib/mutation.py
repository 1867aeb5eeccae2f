"""scripts/mutation: mutmut over the security core, then the kill rate.

What is mutated (pyproject.toml [tool.mutmut] copies and mutates these files; only these functions
are run):

* authsvc/rules/redirects.py, authsvc/rules/secretkeys.py, authsvc/rules/passwords.py: every function;
* authsvc/core/sessions.py: session_verdict, needs_touch;
* authsvc/core/throttle.py: decide, block_after_failure, backoff_seconds;
* authsvc/rules/second_step.py, auth_methods.py, passkeys.py, oidc_redirects.py, oidc_requests.py,
  oidc_logout.py, access.py, forward_auth.py, clientip.py, proxy_networks.py, sameorigin.py,
  usernames.py, groups.py, streamsafe.py: every function (mutmut skips decorated ones, such as
  clientip.client_group under its lru_cache).

The tests are the fast modules listed in [tool.mutmut] pytest_add_cli_args_test_selection, with
the hypothesis profile ``mutation`` (few examples, fixed seed: a mutant never survives by luck).

Score: killed (a test failed, or the mutant hung and hit the time limit) over all mutants run.
Survivors that docs/mutation.md lists as equivalent (a line ``- `NAME`: reason``) are reported
apart; every other survivor is printed with ``mutmut show NAME`` as the way to read its diff.
Exit status 1 when the kill rate is below --fail-under (default 95).

mutmut is driven through its command line only (``mutmut run``, ``mutmut results``), never through
its modules: those change between minor releases. Its git change detection is off in pyproject.toml
(``use_git_change_detection``): results never depend on the checkout's history, and mutmut's own
cache keys on file contents.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTMUT = Path(sys.executable).parent / "mutmut"  # the console script of the interpreter running this

TARGETS: dict[str, tuple[str, ...] | None] = {
    "authsvc/rules/redirects.py": None,
    "authsvc/rules/secretkeys.py": None,
    "authsvc/rules/passwords.py": None,
    "authsvc/core/sessions.py": ("session_verdict", "needs_touch"),
    "authsvc/core/throttle.py": ("decide", "block_after_failure", "backoff_seconds"),
    "authsvc/rules/second_step.py": None,
    "authsvc/rules/auth_methods.py": None,
    "authsvc/rules/passkeys.py": None,
    "authsvc/rules/oidc_redirects.py": None,
    "authsvc/rules/oidc_requests.py": None,
    "authsvc/rules/oidc_logout.py": None,
    "authsvc/rules/access.py": None,
    "authsvc/rules/forward_auth.py": None,
    "authsvc/rules/clientip.py": None,
    "authsvc/rules/proxy_networks.py": None,
    "authsvc/rules/sameorigin.py": None,
    "authsvc/rules/usernames.py": None,
    "authsvc/rules/groups.py": None,
    "authsvc/rules/streamsafe.py": None,
}
RESULT = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+?)\s*$")  # a line of `mutmut results --all true`
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
    """Mutant name -> status, as ``mutmut results --all true`` prints them."""
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=ROOT, check=True, capture_output=True,
                         text=True, encoding="utf-8", env={**os.environ, "PYTHONIOENCODING": "utf-8"}).stdout
    return parse_results(out, pats)


def parse_results(out: str, pats: list[str]) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        match = RESULT.match(line)
        if match and selected(match.group("name"), pats):
            found[match.group("name")] = match.group("status")
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
    argv = [str(MUTMUT), "run", *(["--max-children", str(max_children)] if max_children else []), *pats]
    code = subprocess.run(argv, cwd=ROOT, check=False).returncode
    if code:  # mutmut exits non-zero when the clean run fails
        raise SystemExit(code)


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
