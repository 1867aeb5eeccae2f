"""Where log lines go (``AUTHSVC_LOG``) and their one format: a JSON object per line.

The ``authsvc`` logger gets exactly one handler per process, whatever the number of
:func:`~authsvc.web.app.create_app` calls (tests make hundreds of apps): :func:`configure` with the
destination already in place does nothing, and a different destination replaces the handler.
Audit events (logger ``authsvc.audit``) arrive already formatted by :func:`authsvc.core.audit.format_event`;
every other ``authsvc`` line (errors, Flask's ``authsvc.web.app``) is wrapped in the same JSON shape.
A filter on the handler stamps the request id on every line.

Destinations: ``stdout`` (default; the container runtime or systemd ships it), ``file:/abs/path``
(created mode 0600, reopened after logrotate moves it), ``syslog`` or ``syslog:/path/to/socket``
(facility authpriv). The ``authsvc`` logger still propagates, so an embedding program's root handlers
(pytest's ``caplog``) see the lines too; authsvc itself installs no root handler.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import stat
import sys
import threading

from authsvc.core.audit import iso_utc
from authsvc.core.config import parse_destination

AUDIT_LOGGER = "authsvc.audit"
MAX_MESSAGE = 2000
MAX_TRACEBACK = 8000


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == AUDIT_LOGGER:
            return record.getMessage()  # already one JSON object, escaped and truncated
        message = record.getMessage()
        line = {"ts": iso_utc(record.created), "level": record.levelname.lower(), "logger": record.name,
                "request_id": getattr(record, "request_id", None),
                "message": message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "...(truncated)"}
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)[-MAX_TRACEBACK:]
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"))


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` (the current request's, else None) on every line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            from flask import g, has_request_context

            record.request_id = g.get("request_id") if has_request_context() else None
        return True


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a line is logged (test runners swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


class PrivateWatchedFileHandler(logging.handlers.WatchedFileHandler):
    """A WatchedFileHandler whose every open creates the file owner-only (ASVS 16.4.2): the first,
    and the reopen after logrotate moves the file away, which otherwise makes the new file with
    open()'s 0666 less the umask (0644: the audit trail readable by every local user). An existing
    file keeps its mode. ``_open`` is the stdlib's one place FileHandler opens its stream (its
    ``reopenIfNeeded`` and ``emit`` call it); test_audit_log.py pins that it still is."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            return open(fd, self.mode, encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise


def _file_handler(path: str) -> logging.Handler:
    return PrivateWatchedFileHandler(path, encoding="utf-8")


def _syslog_handler(path: str) -> logging.Handler:
    # SysLogHandler ignores a missing socket and then drops every line: refuse at start-up instead.
    if not stat.S_ISSOCK(os.stat(path).st_mode):
        raise OSError(0, "not a socket")
    handler = logging.handlers.SysLogHandler(address=path, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV)
    handler.ident = "authsvc: "
    return handler


_lock = threading.Lock()
_current: tuple[tuple[str, str | None], logging.Handler] | None = None


def configure(destination: str) -> logging.Handler:
    """Point the ``authsvc`` logger at ``destination`` (INFO and up). Idempotent per process.

    Raises :class:`authsvc.core.config.ConfigError` when the destination cannot be opened.
    """
    global _current
    where = parse_destination(destination)
    with _lock:
        if _current is not None and _current[0] == where:
            return _current[1]
        kind, target = where
        try:
            handler = StdoutHandler() if kind == "stdout" else (
                _file_handler(target) if kind == "file" else _syslog_handler(target))
        except OSError as exc:
            from authsvc.core.config import ConfigError

            raise ConfigError(f"AUTHSVC_LOG={destination}: cannot log there "
                              f"({exc.strerror or type(exc).__name__}).") from None
        handler.setLevel(logging.INFO)
        handler.setFormatter(JsonLines())
        handler.addFilter(RequestIdFilter())
        log = logging.getLogger("authsvc")
        if _current is not None:
            log.removeHandler(_current[1])
            _current[1].close()
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        _current = (where, handler)
        return handler
