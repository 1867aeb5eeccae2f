"""argon2's memory under the real server: the huge-pages opt-in of docs/performance.md works.

argon2 mallocs its whole memory cost for every verification. Above glibc's largest mmap threshold
(32 MiB) that is a fresh mapping each time, which the kernel faults in 4 KiB at a time: a quarter
of a verify's CPU at 64 MiB. An operator can start ``authsvc serve`` with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` so that the same memory arrives in 2 MiB pages; it is
not the default, because it makes an unloaded login so much faster that the flood benchmark's
latency goal (p95 during a flood within 3x the unloaded p95) no longer holds (docs/performance.md).
Here a worker's page faults over a few logins are counted, with a policy at 40 MiB (above the
threshold, so every login maps afresh): by default they must be the 4 KiB faults (serve adds
nothing), and with the opt-in, next to another tunable of the operator's, they must not.
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
    policy.write_text(Path(TEST_POLICY).read_text().replace("memory_cost_kib = 12288", f"memory_cost_kib = {MEMORY_KIB}"))
    assert f"memory_cost_kib = {MEMORY_KIB}" in policy.read_text()
    env = served_env(folder, AUTHSVC_POLICY=str(policy))
    env.pop("GLIBC_TUNABLES", None)  # the default: whatever the test run's environment holds
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
def test_serve_passes_the_huge_pages_opt_in_to_its_workers_and_does_not_apply_it_by_default(tmp_path):
    mode = thp_mode()
    if mode not in ("always", "madvise"):
        pytest.skip(f"the kernel's transparent huge pages are {mode or 'absent'} ({THP}): glibc's hugetlb=1 "
                    "asks for them with madvise, which needs 'madvise' or 'always'")
    default = faults_per_login(tmp_path / "default")
    opted_in = faults_per_login(tmp_path / "opted-in", GLIBC_TUNABLES="glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1")
    # Default: every login faults argon2's 40 MiB in at 4 KiB (10,240 faults, plus the request's own).
    assert default >= PAGES_4K, f"{default:.0f} faults per login by default: is argon2 still mapping afresh?"
    # Opted in: 2 MiB pages, 20 faults for the same memory; a tenth of the 4 KiB count is a wide margin.
    assert opted_in < PAGES_4K / 10, f"{opted_in:.0f} faults per login with hugetlb=1 (default: {default:.0f})"
