"""The CI samples other teams copy (deploy/ci/, docs/ci-integration.md) stay runnable: they parse,
every script they call exists and is executable, and the job that probes a staging deployment
calls `authsvc probe` with arguments it accepts, the password from a secret on standard input."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from authsvc.probe import command
from tests.security.scan import ROOT

SAMPLES = [ROOT / "deploy/ci/github-actions.yml", ROOT / "deploy/ci/gitlab-ci.yml"]
GUIDE = ROOT / "docs/ci-integration.md"
SCRIPT = re.compile(r"\bscripts/[a-z-]+\b")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_parses_and_calls_only_existing_scripts(sample):
    text = sample.read_text(encoding="utf-8")
    assert isinstance(yaml.safe_load(text), dict)
    called = set(SCRIPT.findall(text))
    assert {"scripts/security-scan", "scripts/fuzz", "scripts/mutation", "scripts/test"} <= called
    for script in called:
        assert os.access(ROOT / script, os.X_OK), f"{sample.name} calls {script}, which is not an executable file"


def test_guide_names_every_script_and_sample():
    text = GUIDE.read_text(encoding="utf-8")
    for script in SCRIPT.findall(text):
        assert os.access(ROOT / script, os.X_OK), script
    assert "deploy/ci/github-actions.yml" in text and "deploy/ci/gitlab-ci.yml" in text
    assert "DEPENDENCIES NOT AUDITED" in text  # the offline case is explained


# --- the probe job: `authsvc probe` against a staging deployment -----------------------------------

PROBE = re.compile(r"python -m authsvc\.probe (.*)")


def probe_job(sample) -> tuple[dict, str]:
    """The sample's probe-staging job and the shell text that runs the probe."""
    data = yaml.safe_load(sample.read_text(encoding="utf-8"))
    job = data["jobs"]["probe-staging"] if "jobs" in data else data["probe-staging"]
    scripts = [step.get("run", "") for step in job.get("steps", [])] + list(job.get("script", []))
    (script,) = [s for s in scripts if "authsvc.probe" in s]
    return job, script


def probe_argv(script: str) -> list[str]:
    """The probe's arguments as the shell would pass them, with every $VARIABLE given a sample value."""
    match = PROBE.search(script)
    assert match, script
    filled = re.sub(r"\$\{?([A-Z_]+)\}?",
                    lambda m: "https://staging.example.com/" if m.group(1).endswith("_URL") else "probe",
                    match.group(1))
    return shlex.split(filled)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_probes_staging_with_arguments_the_command_accepts(sample):
    _, script = probe_job(sample)
    args = argparse.ArgumentParser()
    command.add_arguments(args)
    parsed = args.parse_args(probe_argv(script))
    assert parsed.password_stdin and parsed.user and parsed.json and parsed.sarif
    assert parsed.auth_url.startswith("https://") and parsed.app_url.startswith("https://")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_probe_job_takes_the_password_from_a_secret_on_standard_input_only(sample):
    job, script = probe_job(sample)
    assert re.search(r"""printf '%s\\n' "\$[A-Z_]*PASSWORD" \|""", script), script
    # No value is spliced into the shell text by the CI system (script injection, secrets in logs):
    # it reaches the shell as an environment variable.
    assert "${{" not in script
    if "steps" in job:
        env = next(step["env"] for step in job["steps"] if "authsvc.probe" in step.get("run", ""))
        assert env["PROBE_PASSWORD"] == "${{ secrets.AUTHSVC_PROBE_PASSWORD }}"
        assert all("secrets." not in value for name, value in env.items() if name != "PROBE_PASSWORD")


def test_the_probe_needs_nothing_installed_in_the_sample_jobs():
    """The jobs run `python -m authsvc.probe` from the checkout: the package is standard library only."""
    # -I -S: no site-packages (and so none of .venv's packages), as on a bare runner.
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import authsvc.probe.runner, authsvc.probe.command; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names "
            "and m != '__main__')))")
    run = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(ROOT)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    assert loaded and all(m == "authsvc" or m.startswith("authsvc.probe") for m in loaded), loaded
