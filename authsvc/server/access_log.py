"""gunicorn's logs under ``authsvc serve``: one JSON object per line, like every other authsvc line.

gunicorn's own access format writes request data as it arrived, and the path it logs is the
percent-decoded one: ``/x%0A{"event":...}`` would write a line of the client's choosing into the
stream the audit events share. Here every value is JSON-escaped and ASCII-only (a line break, CR,
ESC, NEL or U+2028 becomes a ``\\`` escape), so no request can start a line. gunicorn's error log
(stderr) gets the same shape, so the two streams merged (journald, ``docker logs``) still parse as
one object per line.

The access line never holds the query string (``next=...``) nor cookies; its ``request_id`` joins
it to the audit events of the same request.

:class:`JsonLogger` is given to gunicorn with its documented ``logger_class`` setting; it replaces
only :meth:`access` (the method gunicorn calls once per request) and the formatters of the
handlers gunicorn set up.
"""

from __future__ import annotations

import json
import logging
import time

from gunicorn.glogging import Logger

from authsvc.core.audit import iso_utc
from authsvc.web.logging_setup import JsonLines

ACCESS_LOGGER = "gunicorn.access"
MAX_PATH = 2000


def access_line(*, now: float, client_ip: str | None, method: str | None, path: str | None,
                status: int | str | None, size: int | None, seconds: float, request_id: str | None) -> str:
    """One access-log line: a JSON object, ASCII only, whatever the values hold."""
    if path is not None and len(path) > MAX_PATH:
        path = path[:MAX_PATH] + "...(truncated)"
    line = {"ts": iso_utc(now), "level": "info", "logger": ACCESS_LOGGER, "request_id": request_id,
            "client_ip": client_ip, "method": method, "path": path, "status": status, "bytes": size,
            "seconds": round(seconds, 6)}
    return json.dumps(line, ensure_ascii=True, separators=(",", ":"))


def wsgi_text(value: str | None) -> str | None:
    """A WSGI environ string (bytes as latin-1) shown as the UTF-8 the client most likely meant;
    bytes that are not UTF-8 stay visible as ``\\xNN``."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # not a WSGI string after all: log it as it is (escaped by JSON)
        return value


def _status(status) -> int | str | None:
    text = str(status).split(None, 1)[0] if status is not None else ""
    return int(text) if text.isdigit() else (text or None)


def _request_id(headers) -> str | None:
    items = headers.items() if hasattr(headers, "items") else headers
    for name, value in items or ():
        if name.lower() == "x-request-id":
            return value
    return None


class JsonLogger(Logger):
    """gunicorn's logger with JSON lines (``--logger-class authsvc.server.access_log.JsonLogger``)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(_formatter(log.name))

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log.handlers:  # no access log configured (gunicorn's logger does not propagate)
            return
        sent = getattr(resp, "sent", None)
        self.access_log.info("%s", access_line(
            now=time.time(), client_ip=environ.get("REMOTE_ADDR"), method=wsgi_text(environ.get("REQUEST_METHOD")),
            path=wsgi_text(environ.get("PATH_INFO")), status=_status(getattr(resp, "status", None)),
            size=sent if isinstance(sent, int) else None, seconds=request_time.total_seconds(),
            request_id=_request_id(getattr(resp, "headers", None))))


def _formatter(name: str) -> logging.Formatter:
    # The access line is already JSON; everything gunicorn itself says gets authsvc's line shape.
    return logging.Formatter("%(message)s") if name == ACCESS_LOGGER else JsonLines()
