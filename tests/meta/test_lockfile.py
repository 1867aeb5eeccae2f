"""The lock files (requirements/*.lock, written by scripts/lock) that every script installs from
with ``pip install --require-hashes`` stay in step with pyproject.toml.

A dependency added to pyproject.toml but not locked would make ensure_venv refuse the venv (pip
check), and a lower bound raised without re-locking would leave the old release installed; both
fail here first, with the command that fixes them. A pin without a hash would make pip refuse the
whole lock at install time.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tests.security.scan import ROOT

RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
TEST_LOCK = ROOT / "requirements" / "test.lock"
FIX = "run scripts/lock and commit requirements/"
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def logical_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line]


def parse_lock(text: str) -> tuple[dict[str, str], list[str]]:
    """(canonical name -> pinned version, problems). Every line must read
    ``name==version --hash=sha256:... [--hash=...]``; anything else (an unpinned or unhashed
    requirement, an editable, a URL, an option) is a problem."""
    pins, problems = {}, []
    for line in logical_lines(text):
        requirement, _, rest = line.partition(" --")
        options = ("--" + rest).split() if rest else []
        try:
            req = Requirement(requirement)
        except InvalidRequirement:
            problems.append(f"not a requirement: {line[:80]}")
            continue
        specs = list(req.specifier)
        if req.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            problems.append(f"{requirement}: not pinned with == to one release")
        if not options or not all(HASH.match(option) for option in options):
            problems.append(f"{requirement}: every pin needs --hash=sha256:<64 hex digits> and nothing else")
        name = canonicalize_name(req.name)
        if name in pins:
            problems.append(f"{requirement}: pinned twice")
        pins[name] = specs[0].version if specs else ""
    return pins, problems


def declared(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    if extra:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": extra or ""})]


LOCKS = {"runtime": (RUNTIME_LOCK, None), "test": (TEST_LOCK, "test")}


@pytest.mark.parametrize("lock", LOCKS, ids=str)
def test_every_line_is_an_exact_pin_with_hashes(lock):
    path, _ = LOCKS[lock]
    pins, problems = parse_lock(path.read_text(encoding="utf-8"))
    assert pins, f"{path.name} pins nothing"
    assert not problems, f"{path.name}:\n" + "\n".join(problems) + f"\n({FIX})"


@pytest.mark.parametrize("lock", LOCKS, ids=str)
def test_every_declared_dependency_is_pinned_within_its_range(lock):
    path, extra = LOCKS[lock]
    pins, _ = parse_lock(path.read_text(encoding="utf-8"))
    missing = [str(r) for r in declared(extra) if canonicalize_name(r.name) not in pins]
    assert not missing, f"in pyproject.toml but not in {path.name}: {', '.join(missing)} ({FIX})"
    outside = [f"{r} (locked {pins[canonicalize_name(r.name)]})" for r in declared(extra)
               if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"{path.name} pins releases pyproject.toml excludes: {', '.join(outside)} ({FIX})"


def test_the_test_lock_keeps_every_runtime_pin():
    # scripts/dev and scripts/test share .venv: the same runtime releases whichever built it.
    runtime, _ = parse_lock(RUNTIME_LOCK.read_text(encoding="utf-8"))
    test, _ = parse_lock(TEST_LOCK.read_text(encoding="utf-8"))
    differ = [f"{name} {version} != {test.get(name)}" for name, version in runtime.items() if test.get(name) != version]
    assert not differ, f"test.lock differs from runtime.lock: {', '.join(differ)} ({FIX})"


def test_the_project_itself_is_not_in_a_lock():
    # ensure_venv installs it editable with --no-deps; a pin of it would fetch a release from PyPI.
    for path, _ in LOCKS.values():
        assert "authsvc" not in parse_lock(path.read_text(encoding="utf-8"))[0], path.name


# The checker itself: each way a lock can go wrong is caught.
GOOD_HASH = "--hash=sha256:" + "a" * 64
OTHER_HASH = "--hash=sha256:" + "b" * 64


@pytest.mark.parametrize(("text", "problem"), [
    ("flask==3.1.3\n", "needs --hash"),
    ("flask>=3.1 " + GOOD_HASH + "\n", "not pinned"),
    ("flask==3.* " + GOOD_HASH + "\n", "not pinned"),
    ("flask==3.1.3 --hash=md5:abc\n", "needs --hash"),
    ("flask==3.1.3 " + GOOD_HASH + " --no-binary :all:\n", "needs --hash"),
    ("flask @ https://example.com/flask.whl " + GOOD_HASH + "\n", "not pinned"),
    ("flask==3.1.3 ; python_version < '3.12'\n", "needs --hash"),
    ("-e .\n", "not a requirement"),
    ("--index-url https://evil.example/simple\n", "not a requirement"),
    ("flask==3.1.3 " + GOOD_HASH + "\nFlask==3.1.2 " + GOOD_HASH + "\n", "pinned twice"),
], ids=["no-hash", "range", "wildcard", "md5", "extra-option", "url", "marker-no-hash", "editable", "index-url",
        "twice"])
def test_a_bad_lock_line_is_reported(text, problem):
    _, problems = parse_lock(text)
    assert any(problem in p for p in problems), problems


def test_continuations_and_comments_are_read_as_uv_writes_them():
    text = ("# This file was autogenerated by uv\nflask==3.1.3 \\\n    " + GOOD_HASH + " \\\n    "
            + OTHER_HASH + "\n    # via authsvc (pyproject.toml)\n")
    assert parse_lock(text) == ({"flask": "3.1.3"}, [])
    with_marker = "async-timeout==5.0.1 ; python_full_version < '3.11.3' " + GOOD_HASH + "\n"
    assert parse_lock(with_marker) == ({"async-timeout": "5.0.1"}, [])


@pytest.mark.parametrize("lock", LOCKS, ids=str)
def test_the_build_tools_of_both_packages_are_locked(lock):
    # pip built authsvc and clients/flask with setuptools and wheel it fetched for a build
    # environment, unpinned and unhashed: a package source serving a bad wheel ran code in every
    # install, the production one too (found by review, session 14). They are locked, and installs
    # build with --no-build-isolation.
    path, _ = LOCKS[lock]
    pins, _ = parse_lock(path.read_text(encoding="utf-8"))
    for project in (ROOT / "pyproject.toml", ROOT / "clients" / "flask" / "pyproject.toml"):
        for raw in tomllib.loads(project.read_text(encoding="utf-8"))["build-system"]["requires"]:
            requirement = Requirement(raw)
            pinned = pins.get(canonicalize_name(requirement.name))
            assert pinned and requirement.specifier.contains(pinned), f"{raw} ({project.name}) not in {path.name} ({FIX})"


def test_every_install_of_the_packages_builds_with_the_locked_tools_and_no_pip_comes_unlocked():
    code = [line for line in (ROOT / "scripts" / "lib" / "bootstrap.sh").read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("#")]
    installs = [line for line in code if "pip_install --no-deps" in line]
    assert len(installs) == 2 and all("--no-build-isolation" in line for line in installs), installs
    assert not [line for line in code if re.search(r"pip[ _]install.*--upgrade", line)]
    guide = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    assert "pip install --no-deps --no-build-isolation ." in guide

