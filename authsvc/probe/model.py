"""What a check is and what it found.

A :class:`Check` is static (its id is the SARIF rule id, its fix is printed under a failure); a
:class:`Finding` is what a judging function returns; a :class:`Result` is one check's finding in
a run.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = "pass"
FAIL = "fail"
NOT_APPLICABLE = "n/a"
STATUSES = (OK, FAIL, NOT_APPLICABLE)


@dataclass(frozen=True)
class Check:
    id: str                   # stable: "cookie.secure"; SARIF rule id
    title: str                # what holds when the check passes
    fix: str                  # what to change when it fails
    asvs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    status: str
    detail: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


def passed(detail: str) -> Finding:
    return Finding(OK, detail)


def failed(detail: str) -> Finding:
    return Finding(FAIL, detail)


def not_applicable(detail: str) -> Finding:
    return Finding(NOT_APPLICABLE, detail)


@dataclass(frozen=True)
class Result:
    check: Check
    finding: Finding
    url: str  # the URL the check was about (SARIF location)

    @property
    def status(self) -> str:
        return self.finding.status


def shown(text: str, limit: int = 160) -> str:
    """Text from the deployment or a hostile sample, safe for a terminal and a log: control and
    format characters escaped (no escape sequences, no forged lines), cut to ``limit``."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
