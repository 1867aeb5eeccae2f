"""Shared by the static security tests: the scan of the real tree, run once per session."""

from __future__ import annotations

import pytest

from tests.security import scan


@pytest.fixture(scope="session")
def real_scan() -> dict[str, scan.ToolResult]:
    """bandit, ruff, astrules and the suppression check over this checkout (pip-audit apart)."""
    return {result.tool: result for result in scan.scan(scan.ROOT, audit=False)}
