"""argon2 measured on its own, for scripts/bench and scripts/bench-flood, timed by pyperf.

Each measurement is a pyperf run of this file in a chosen environment: pyperf runs every value in
a fresh worker process (and ``--copy-env`` hands that process the environment unchanged), which is
what is needed here: glibc reads ``GLIBC_TUNABLES`` only when a process starts, and whether
argon2's memory comes in huge pages (``authsvc.core.hashing.with_hugepages``) moves a verify's CPU time
by a quarter. Two environments are compared:

* ``shipped``: argon2-cffi as it ships, without the tunable (what the peers' figures were measured
  with, and the ceiling the performance issue defines);
* ``served``: the environment ``authsvc serve`` gives its workers (``authsvc.server.cli.server_environ``).

Two benchmarks per run, one verification per value: ``argon2 verify cpu`` (``process_time``,
which counts every thread argon2 starts: the ceiling is cores / this) and ``argon2 verify wall``.

    python scripts/lib/argon2_probe.py --time-cost 3 --memory-kib 65536 --parallelism 4 \\
        --hash-len 32 --salt-len 16 [pyperf options, e.g. -o FILE, --processes N, --values N]
"""

from __future__ import annotations

import os
import statistics
import subprocess  # nosec B404 - runs this file with the same interpreter
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import pyperf

PASSWORD = "argon2 probe passphrase"
CPU, WALL = "argon2 verify cpu", "argon2 verify wall"
# pyperf's defaults (20 processes, 3 values each) take minutes at 64 MiB per verify, and the bench
# probes four times around its login load; 3 processes of 2 values (after one warm-up) give 6
# values per clock in a few seconds.
PROCESSES, VALUES = 3, 2
PARAMETERS = ("time_cost", "memory_kib", "parallelism", "hash_len", "salt_len")


def _hasher(args):
    from argon2 import PasswordHasher, Type

    return PasswordHasher(time_cost=args.time_cost, memory_cost=args.memory_kib, parallelism=args.parallelism,
                          hash_len=args.hash_len, salt_len=args.salt_len, type=Type.ID)


def _verify_loop(clock):
    """A pyperf time function: ``loops`` verifications timed by ``clock``."""
    def time_func(loops: int, hasher, encoded: str) -> float:
        t0 = clock()
        for _ in range(loops):
            hasher.verify(encoded, PASSWORD)
        return clock() - t0
    return time_func


def _forward_parameters(cmd: list[str], args) -> None:
    """pyperf's hook to give the worker processes this run's argon2 parameters."""
    for name in PARAMETERS:
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]


def shipped_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without GLIBC_TUNABLES: argon2-cffi's own behaviour."""
    return {k: v for k, v in environ.items() if k != "GLIBC_TUNABLES"}


def _argv(policy, output: Path, processes: int, values: int) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--quiet", "--copy-env", "--loops", "1", "--warmups", "1",
            "--processes", str(processes), "--values", str(values), "--output", str(output),
            "--time-cost", str(policy.time_cost), "--memory-kib", str(policy.memory_cost_kib),
            "--parallelism", str(policy.parallelism), "--hash-len", str(policy.hash_len),
            "--salt-len", str(policy.salt_len)]


def run(policy, environ: Mapping[str, str], processes: int = 1, *, pyperf_processes: int = PROCESSES,
        values: int = VALUES) -> list[dict[str, list[float]]]:
    """``processes`` pyperf runs started together in ``environ`` at the policy's argon2 parameters
    (an ``authsvc.core.policy.Argon2Policy``); per run, seconds per verification:
    ``{"cpu": [...], "wall": [...]}``."""
    with tempfile.TemporaryDirectory(prefix="argon2-probe-") as folder:
        outputs = [Path(folder) / f"run{i}.json" for i in range(processes)]
        procs = [subprocess.Popen(_argv(policy, out, pyperf_processes, values),  # nosec B603 - fixed argv, this file
                                  env=dict(environ), stdout=subprocess.DEVNULL) for out in outputs]
        for proc in procs:
            if proc.wait(timeout=600):
                raise RuntimeError(f"argon2 probe (pyperf) exited {proc.returncode}")
        runs = []
        for out in outputs:
            suite = pyperf.BenchmarkSuite.load(str(out))
            runs.append({"cpu": list(suite.get_benchmark(CPU).get_values()),
                         "wall": list(suite.get_benchmark(WALL).get_values())})
        return runs


def one_at_a_time(measurements: list[dict[str, list[float]]], cores: int) -> dict:
    """The issue's ceiling: ``cores`` divided by the median CPU time of one verification, over
    the values of every measurement given (before and after a load, for instance)."""
    cpu = [v for m in measurements for v in m["cpu"]]
    wall = [v for m in measurements for v in m["wall"]]
    median = statistics.median(cpu)
    return {"cpu_ms": median * 1000, "wall_ms": statistics.median(wall) * 1000,
            "cpu_ms_range": [round(min(cpu) * 1000, 1), round(max(cpu) * 1000, 1)],
            "samples": len(cpu), "ceiling_per_s": cores / median}


def side_by_side(per_process: list[dict[str, list[float]]]) -> dict:
    """Verifications per second while every process was verifying: each process contributes one
    over its median wall time per verification (the median leaves out the tail where a process
    that finished first no longer competes)."""
    return {"processes": len(per_process),
            "per_s": sum(1 / statistics.median(p["wall"]) for p in per_process),
            "cpu_ms": statistics.median(v for p in per_process for v in p["cpu"]) * 1000}


def main() -> None:
    runner = pyperf.Runner(processes=PROCESSES, values=VALUES, loops=1, add_cmdline_args=_forward_parameters)
    for name in PARAMETERS:
        runner.argparser.add_argument(f"--{name.replace('_', '-')}", type=int, required=True)
    args = runner.parse_args()
    hasher = _hasher(args)
    encoded = hasher.hash(PASSWORD)
    runner.bench_time_func(CPU, _verify_loop(time.process_time), hasher, encoded)
    runner.bench_time_func(WALL, _verify_loop(time.perf_counter), hasher, encoded)


if __name__ == "__main__":
    main()
