"""argon2 measured on its own, for scripts/bench and scripts/bench-flood.

Each measurement runs in a fresh process (this file as a script) so that its environment can be
chosen: glibc reads ``GLIBC_TUNABLES`` only when a process starts, and whether argon2's memory
comes in huge pages (``authsvc.core.hashing.with_hugepages``) moves a verify's CPU time by a quarter.
Two environments are compared:

* ``shipped``: argon2-cffi as it ships, without the tunable (what the peers' figures were measured
  with, and the ceiling the performance issue defines);
* ``served``: the environment ``authsvc serve`` gives its workers (``authsvc.server.cli.server_environ``).

    python scripts/lib/argon2_probe.py TIME_COST MEMORY_KIB PARALLELISM HASH_LEN SALT_LEN ROUNDS

prints a JSON list of ``[cpu_seconds, wall_seconds, start, end]`` per verification (``start`` and
``end`` on the system-wide monotonic clock, so that the samples of processes run side by side can
be lined up); ``process_time`` counts every thread argon2 starts.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess  # nosec B404 - runs this file with the same interpreter
import sys
import time
from typing import Mapping

PASSWORD = "argon2 probe passphrase"


def _verify_rounds(time_cost: int, memory_kib: int, parallelism: int, hash_len: int, salt_len: int,
                   rounds: int) -> list[list[float]]:
    from argon2 import PasswordHasher, Type

    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                            hash_len=hash_len, salt_len=salt_len, type=Type.ID)
    encoded = hasher.hash(PASSWORD)
    samples = []
    for _ in range(rounds):
        c0, w0, start = time.process_time(), time.perf_counter(), time.monotonic()
        hasher.verify(encoded, PASSWORD)
        samples.append([time.process_time() - c0, time.perf_counter() - w0, start, time.monotonic()])
    return samples


def shipped_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without GLIBC_TUNABLES: argon2-cffi's own behaviour."""
    return {k: v for k, v in environ.items() if k != "GLIBC_TUNABLES"}


def run(policy, environ: Mapping[str, str], rounds: int, processes: int = 1) -> list[list[list[float]]]:
    """``processes`` probes started together in ``environ``, ``rounds`` verifications each at the
    policy's argon2 parameters (an ``authsvc.core.policy.Argon2Policy``); one sample list per process."""
    argv = [sys.executable, os.path.abspath(__file__), str(policy.time_cost), str(policy.memory_cost_kib),
            str(policy.parallelism), str(policy.hash_len), str(policy.salt_len), str(rounds)]
    procs = [subprocess.Popen(argv, env=dict(environ), stdout=subprocess.PIPE,  # nosec B603 - fixed argv, this file
                              text=True) for _ in range(processes)]
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=600)
        if proc.returncode:
            raise RuntimeError(f"argon2 probe exited {proc.returncode}")
        out.append(json.loads(stdout))
    return out


def one_at_a_time(samples: list[list[float]], cores: int) -> dict:
    """The issue's ceiling: ``cores`` divided by the median CPU time of one verification."""
    cpu = statistics.median(s[0] for s in samples)
    return {"cpu_ms": cpu * 1000, "wall_ms": statistics.median(s[1] for s in samples) * 1000,
            "cpu_ms_range": [round(min(s[0] for s in samples) * 1000, 1), round(max(s[0] for s in samples) * 1000, 1)],
            "samples": len(samples), "ceiling_per_s": cores / cpu}


def side_by_side(per_process: list[list[list[float]]]) -> dict:
    """Verifications per second while every process was verifying: in the window from the last
    first start to the first last end, each verification counted by the share of it that fell
    inside (so nothing is lost at the window's edges)."""
    start = max(p[0][2] for p in per_process)
    end = min(p[-1][3] for p in per_process)
    done = sum(max(0.0, min(e, end) - max(s, start)) / (e - s) for p in per_process for _, _, s, e in p if e > s)
    return {"processes": len(per_process), "window_s": end - start,
            "per_s": done / (end - start) if end > start else 0.0,
            "cpu_ms": statistics.median(s[0] for p in per_process for s in p) * 1000}


if __name__ == "__main__":
    print(json.dumps(_verify_rounds(*map(int, sys.argv[1:7]))))
