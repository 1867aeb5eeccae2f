"""gunicorn's logs under ``authsvc serve``: one JSON object per line, like every other authsvc line.

gunicorn's own access format writes request data as it arrived, and the path it logs is the
percent-decoded one: ``/x%0A{"event":...}`` would write a line of the client's choosing into the
stream the audit events share. Here every value is JSON-escaped and ASCII-only (a line break, CR,
ESC, NEL or U+2028 becomes a ``\\`` escape), so no request can start a line. gunicorn's error log
(stderr) gets the same shape, so the two streams merged (journald, ``docker logs``) still parse as
one object per line.

The access line never holds the query string (``next=...``) nor cookies; its ``request_id`` joins
it to the audit events of the same request. Neither does the error log: gunicorn says "Invalid
request from ip=...: Invalid HTTP request line: '<the line as sent>'" when it refuses a request,
and that line, or a refused header line, can hold a token or a cookie
(:func:`without_request_data`).

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
INVALID_REQUEST = "Invalid request from ip="  # gunicorn.workers.base.Worker.handle_error's messages
FAILED_REQUEST = "Error handling request "
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


def without_request_data(message: str) -> str:
    """gunicorn's message about a request it refused, without the part of the request it quotes
    (every such message of gunicorn's quotes it with ``%r`` after a ``: ``), and about a request
    that failed, without the target's query; other messages as they are."""
    if message.startswith(FAILED_REQUEST) and "?" in message:
        return message.split("?", 1)[0] + "?(not logged)"
    if not message.startswith(INVALID_REQUEST):
        return message
    quoted = [at for at in (message.find(": '"), message.find(': "')) if at >= 0]
    return f"{message[:min(quoted)]}: (not logged)" if quoted else message


class _WithoutRequestData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = without_request_data(message)
        if shown is not message:
            record.msg, record.args = shown, None
        return True


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
        if not any(isinstance(f, _WithoutRequestData) for f in self.error_log.filters):  # setup runs again on reload
            self.error_log.addFilter(_WithoutRequestData())

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
