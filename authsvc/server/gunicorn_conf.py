"""gunicorn settings module for ``authsvc serve`` (``-c python:authsvc.server.gunicorn_conf``): the hooks
prometheus-client's multiprocess mode needs. Only names gunicorn knows are read from this module."""

from __future__ import annotations

import os
import shutil

from prometheus_client import multiprocess

METRICS_DIR_PREFIX = "authsvc-metrics-"


def child_exit(server, worker) -> None:
    """A worker ended: drop its live gauges (its counters stay, so totals remain whole)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # unset: single-process metrics, nothing to drop
        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics directory ``authsvc serve`` made for this run (and no other)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.basename(path.rstrip("/")).startswith(METRICS_DIR_PREFIX):
        shutil.rmtree(path, ignore_errors=True)
