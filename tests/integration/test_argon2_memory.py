"""argon2's memory under the real server: ``authsvc serve`` gives its workers huge pages.

argon2 mallocs its whole memory cost for every verification. Above glibc's largest mmap threshold
(32 MiB) that is a fresh mapping each time, which the kernel faults in 4 KiB at a time: a quarter
of a verify's CPU at 64 MiB. ``authsvc serve`` sets ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` for
gunicorn (``authsvc.server.cli.server_environ``), so the same memory arrives in 2 MiB pages. Here a
worker's page faults over a few logins are counted, with a policy at 40 MiB (above the threshold,
so every login maps afresh), once as served by default and once with the operator's off switch
(``glibc.malloc.hugetlb=0``), which must be honoured and show the 4 KiB faults: the control that
proves the count can tell the two apart. (That serve keeps an operator's other tunables is tested
in tests/security/test_argon2.py.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, TEST_POLICY
from tests.integration.conftest import (
    USERNAME,
    form_login,
    require_module,
    served_env,
    serving,
    tail,
    wait_until,
    workers,
)

MEMORY_KIB = 40 * 1024
PAGES_4K = MEMORY_KIB // 4
LOGINS = 3
ADDRESS = "198.51.100.20"
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def thp_mode() -> str | None:
    """The kernel's transparent huge page mode (the bracketed word), None where there is none."""
    try:
        match = re.search(r"\[(\w+)\]", THP.read_text())
    except OSError:
        return None
    return match.group(1) if match else None


def minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])  # field 10, minflt


def faults_per_login(folder: Path, **settings: str) -> float:
    """Minor page faults of the one worker per successful login (after a first, warm-up login).
    (The worker's /proc/PID/environ cannot show what it got: glibc rewrites GLIBC_TUNABLES there
    in place as it parses it; the faults are what counts.)"""
    require_module("requests")
    import requests

    folder.mkdir()
    policy = folder / "policy.toml"
    # One account signs in LOGINS + 1 times in a few seconds: past the default success limit (3 per 10 s).
    policy.write_text(Path(TEST_POLICY).read_text().replace("memory_cost_kib = 12288", f"memory_cost_kib = {MEMORY_KIB}")
                      + '\n[throttle]\nsuccesses_per_account = ["300 per minute"]\n')
    assert f"memory_cost_kib = {MEMORY_KIB}" in policy.read_text()
    env = served_env(folder, AUTHSVC_POLICY=str(policy))
    env.pop("GLIBC_TUNABLES", None)  # only what each case sets
    env.update(settings)
    with serving(folder, env, workers=1) as server:
        wait_until(lambda: workers(server.log), "a worker", server.log)
        pid = workers(server.log)[-1]
        assert form_login(requests, server.base, USERNAME, PASSWORD, ADDRESS) == 303, tail(server.log)
        before = minor_faults(pid)
        for _ in range(LOGINS):
            assert form_login(requests, server.base, USERNAME, PASSWORD, ADDRESS) == 303, tail(server.log)
        return (minor_faults(pid) - before) / LOGINS


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc to count page faults")
def test_served_worker_gets_argon2_memory_in_huge_pages_and_the_off_switch_is_honoured(tmp_path):
    mode = thp_mode()
    if mode not in ("always", "madvise"):
        pytest.skip(f"the kernel's transparent huge pages are {mode or 'absent'} ({THP}): glibc's hugetlb=1 "
                    "asks for them with madvise, which needs 'madvise' or 'always'")
    served = faults_per_login(tmp_path / "served")  # nothing set: serve's default
    off = faults_per_login(tmp_path / "off", GLIBC_TUNABLES="glibc.malloc.hugetlb=0")
    # Off: every login faults argon2's 40 MiB in at 4 KiB (10,240 faults, plus the request's own).
    assert off >= PAGES_4K, f"{off:.0f} faults per login with hugetlb=0: is argon2 still mapping afresh?"
    # Served: 2 MiB pages, 20 faults for the same memory; a tenth of the 4 KiB count is a wide margin.
    assert served < PAGES_4K / 10, f"{served:.0f} faults per login as served (off: {off:.0f})"
