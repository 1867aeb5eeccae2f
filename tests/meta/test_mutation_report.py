"""scripts/mutation's bookkeeping: which functions are mutated, how the score is counted, and the
equivalent-mutant list in docs/mutation.md (each entry must parse and give a reason)."""

from __future__ import annotations

import importlib.util
import re

import pytest

from tests.security.scan import ROOT

spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "scripts/lib/mutation.py")
mutation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation)


def test_the_security_core_and_only_it_is_mutated():
    pats = mutation.patterns()
    assert "authsvc.rules.redirects.*" in pats and "authsvc.rules.secretkeys.*" in pats and "authsvc.rules.passwords.*" in pats
    for name in ("session_verdict", "needs_touch"):
        assert mutation.selected(f"authsvc.core.sessions.x_{name}__mutmut_3", pats)
    for name in ("decide", "block_after_failure", "backoff_seconds"):
        assert mutation.selected(f"authsvc.core.throttle.x_{name}__mutmut_1", pats)
    for module in ("oidc_redirects", "oidc_requests",  # the OpenID Provider's decisions (issue 19)
                   "second_step", "auth_methods", "passkeys"):  # second factors (issue 17)
        assert f"authsvc.rules.{module}.*" in pats
    assert not mutation.selected("authsvc.core.throttle.xǁThrottleǁbegin__mutmut_1", pats)
    assert not mutation.selected("authsvc.core.sessions.xǁSessionStoreǁcreate__mutmut_1", pats)
    assert not mutation.selected("authsvc.core.sessions.x_session_verdict_cached__mutmut_1", pats)


def test_every_listed_equivalent_mutant_has_a_reason():
    listed = mutation.equivalents(ROOT / "docs" / "mutation.md")
    assert listed, "docs/mutation.md lists no equivalent mutants"
    for name, reason in listed.items():
        assert re.fullmatch(r"authsvc\.(?:[a-z_]+\.)+x[_ǁ].+__mutmut_\d+", name), name
        assert len(reason) > 20, f"{name}: say why it is equivalent"


def test_score_counts_timeouts_as_killed_and_lists_unexplained_survivors(capsys):
    found = {"authsvc.a.x_f__mutmut_1": "killed", "authsvc.a.x_f__mutmut_2": "timeout",
             "authsvc.a.x_f__mutmut_3": "survived", "authsvc.a.x_f__mutmut_4": "survived"}
    assert mutation.report(found, {"authsvc.a.x_f__mutmut_4": "codec names are case-insensitive"}, 50.0) == 0
    out = capsys.readouterr().out
    assert "mutation score: 2 / 4 killed (50.0%)" in out
    assert "survived (survived): authsvc.a.x_f__mutmut_3" in out
    assert "survived (survived): authsvc.a.x_f__mutmut_4" not in out
    assert mutation.report(found, {}, 95.0) == 1


def test_a_listed_mutant_that_is_now_killed_is_reported_as_stale(capsys):
    mutation.report({"authsvc.a.x_f__mutmut_1": "killed"}, {"authsvc.a.x_f__mutmut_1": "was equivalent"}, 0.0)
    assert "lists authsvc.a.x_f__mutmut_1 as equivalent, but it is killed" in capsys.readouterr().out


@pytest.mark.parametrize("status", ["not checked", "check was interrupted by user"])
def test_mutants_that_never_ran_do_not_count_as_killed(capsys, status):
    assert mutation.report({"authsvc.a.x_f__mutmut_1": status}, {}, 95.0) == 1
    assert "were not run" in capsys.readouterr().out


def test_results_are_read_from_mutmuts_results_command():
    out = ("    authsvc.rules.redirects.x_check__mutmut_1: killed\n"
           "    authsvc.core.sessions.x_session_verdict__mutmut_2: survived\n"
           "    authsvc.core.throttle.xǁThrottleǁbegin__mutmut_1: survived\n"   # not a mutated function: left out
           "    authsvc.rules.passwords.x_normalize__mutmut_7: check was interrupted by user\n")
    assert mutation.parse_results(out, mutation.patterns()) == {
        "authsvc.rules.redirects.x_check__mutmut_1": "killed",
        "authsvc.core.sessions.x_session_verdict__mutmut_2": "survived",
        "authsvc.rules.passwords.x_normalize__mutmut_7": "check was interrupted by user"}


def test_a_default_run_mutates_every_file_mutmut_is_given():
    """TARGETS (what a plain ``scripts/mutation`` scores) and pyproject's ``only_mutate`` (what
    mutmut generates mutants for) name the same files: a module added to one only is never scored."""
    import tomllib

    configured = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    assert set(mutation.TARGETS) == set(configured)
